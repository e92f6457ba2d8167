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
    assert sf.provenance["mask_tuned"] == ["shadow_penalty", "agreement_weight"] and sf.provenance["seed"] == 0
    assert sf.agreement_weight == 8.0  # the self-training agreement weight is file data too
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


def test_agreement_weight_round_trip_and_bad_values(tmp_path: Path) -> None:
    sf = load_scorer("busi-v1")
    blob = sf.to_json()
    assert blob["agreement_weight"] == 8.0
    none = dict(blob)
    del none["agreement_weight"]
    p = tmp_path / "none.json"
    p.write_text(json.dumps(none))
    assert load_scorer(p).agreement_weight is None
    assert "agreement_weight" not in load_scorer(p).to_json()
    save_scorer(load_scorer(p), tmp_path / "again.json")
    assert "agreement_weight" not in json.loads((tmp_path / "again.json").read_text())
    for bad in (-1, "8", True):
        q = tmp_path / "bad.json"
        q.write_text(json.dumps({**blob, "agreement_weight": bad}))
        with pytest.raises(ConfigError, match=r"bad\.json.*agreement_weight must be a finite number >= 0"):
            load_scorer(q)


def test_candidates_needs_a_weight_when_the_file_has_none(tmp_path: Path) -> None:
    from samprompt.classifiers.selftrain import SelfTrainNet, save_selftrain_net
    from samprompt.prompts.candidates import CandidatePromptStrategy

    blob = load_scorer("busi-v1").to_json()
    del blob["agreement_weight"]
    p = tmp_path / "fitted.json"
    p.write_text(json.dumps(blob))
    net = save_selftrain_net(SelfTrainNet(), tmp_path / "st.pt", size=32)
    with pytest.raises(ConfigError, match=r"candidates\.agreement_weight: the scorer file .*fitted\.json"):
        CandidatePromptStrategy(scorer=str(p), agreement_net=net)
    s = CandidatePromptStrategy(scorer=str(p), agreement_net=net, agreement_weight=2.5)
    assert s.agreement_weight == 2.5 and s.selector.agreement_weight == 2.5
    d = CandidatePromptStrategy(agreement_net=net)  # busi-v1: its file's 8, recorded in the params
    assert d.agreement_weight == 8.0 and d.params.agreement_weight == 8.0
    assert CandidatePromptStrategy(scorer=str(p)).agreement_weight is None  # no net: no weight needed
