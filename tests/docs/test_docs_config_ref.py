"""The generated run-config reference (docs/_ext/samprompt_config_ref.py): every key, type, default, range."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "docs" / "_ext"))

import samprompt_config_ref as ref

from samprompt import MASKERS
from samprompt.runner.config import RunConfig


def _leaves(model: Any, prefix: str = "") -> set[str]:
    """Every key path of a model, by pydantic's own field list (independent of the generator's walk)."""
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(prefix + name)
        for suffix, sub in ref._models_in(field.annotation):
            keys |= _leaves(sub, f"{prefix}{name}{suffix}.")
    return keys


def test_every_key_of_the_run_config_has_a_row() -> None:
    rows = {r[0]: r for r in ref.model_rows(RunConfig)}
    assert set(rows) == _leaves(RunConfig)
    assert set(RunConfig.model_fields) <= set(rows)
    assert {"split.fractions", "pipeline.prompts[].params", "report.thumb", "data.path"} <= set(rows)
    assert rows["batch_size"][1:4] == ("int", "``8``", ">= 1, <= 4096")
    assert rows["workers"][3] == ">= 0, <= 256"
    assert rows["seed"][3] == ">= 0, < 4294967296"
    assert rows["data.path"][2] == "**required**"
    assert rows["classifier.train.augmentation.hflip"][3] == ">= 0.0, <= 1.0"
    assert rows["split.use"][1] == "'train' | 'val' | 'test' | 'all'"
    assert all(rows[k][4] for k in RunConfig.model_fields)  # each top-level key is described


def test_component_params_rows_include_inherited_keys_and_docs() -> None:
    cls = MASKERS.get("threshold")
    rows = {r[0]: r for r in ref.model_rows(cls.Params, "m.", owner=cls)}
    assert set(rows) == {"m.keep", "m.fill_holes", "m.min_area", "m.value"}
    assert rows["m.value"][2:4] == ("``0.5``", ">= 0.0, <= 1.0")
    assert rows["m.keep"][4].startswith("Which connected components")


def test_short_member_references_become_literals() -> None:
    assert ref._cell("see :meth:`embed_batch` and :class:`~samprompt.Prompt`") == (
        "see ``embed_batch`` and :class:`~samprompt.Prompt`"
    )
