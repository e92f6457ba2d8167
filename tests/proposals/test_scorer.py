"""Scorer files: busi-v1 as package data, round trips, clear errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from samprompt.errors import ConfigError
from samprompt.prompts import PROMPT_STRATEGIES
from samprompt.proposals import FEATURE_NAMES, REFINED_FEATURE_NAMES, load_scorer, save_scorer


def test_busi_v1_is_package_data_with_provenance() -> None:
    sf = load_scorer("busi-v1")
    assert sf.polarity == "dark" and sf.shadow_penalty == 2.0
    assert sf.stage1.names == FEATURE_NAMES and sf.stage2.names == REFINED_FEATURE_NAMES
    assert sf.stage1.weights[0] == -8.102 and sf.stage2.weights[0] == -1.798
    assert sf.provenance["mask_tuned"] == ["shadow_penalty"] and sf.provenance["seed"] == 0
    from samprompt.prompts.candidate_regions import DEFAULT_WEIGHTS

    assert DEFAULT_WEIGHTS == tuple(sf.stage1.weights.tolist())


def test_round_trip_and_use_by_path(tmp_path: Path) -> None:
    sf = load_scorer("busi-v1")
    path = save_scorer(sf, tmp_path / "s.json")
    again = load_scorer(path)
    for a, b in ((sf.stage1, again.stage1), (sf.stage2, again.stage2)):
        for v in ("weights", "mean", "scale"):
            np.testing.assert_array_equal(getattr(a, v), getattr(b, v))
    strat = PROMPT_STRATEGIES.create("candidates", {"scorer": str(path), "polarity": "bright"})
    assert strat.selector.polarities == ("bright",) and strat.selector.shadow_penalty == 2.0
    assert PROMPT_STRATEGIES.create("candidates", {"scorer": str(path)}).selector.polarities == ("dark",)


def _write(tmp_path: Path, change: dict) -> Path:
    blob = load_scorer("busi-v1").to_json()
    for key, value in change.items():
        if "." in key:
            a, b = key.split(".")
            blob[a][b] = value
        else:
            blob[key] = value
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(blob))
    return p


@pytest.mark.parametrize(("change", "match"), [
    ({"version": 2}, "version 2, this library reads version 1"),
    ({"format": "other"}, "not a samprompt scorer file"),
    ({"stage1.features": [*FEATURE_NAMES[:-1], "cam_other"]},
     r"stage1.features differ .*missing \['cam_rank'\], unknown \['cam_other'\]"),
    ({"stage2.features": list(reversed(REFINED_FEATURE_NAMES))}, "other order"),
    ({"stage1.weights": [1.0, 2.0]}, "stage1: CandidateScorer weights must have 21 entries"),
    ({"polarity": "sideways"}, "polarity 'sideways'"),
])
def test_bad_files_name_the_file_and_the_mismatch(tmp_path: Path, change: dict, match: str) -> None:
    p = _write(tmp_path, change)
    with pytest.raises(ConfigError, match=match) as info:
        load_scorer(p)
    assert str(p) in str(info.value)


def test_missing_file_and_fit_outside_a_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist.*busi-v1"):
        load_scorer(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        load_scorer(tmp_path / "x.json")
    with pytest.raises(ConfigError, match="only works in a run"):
        PROMPT_STRATEGIES.create("candidates", {"scorer": "fit"})
