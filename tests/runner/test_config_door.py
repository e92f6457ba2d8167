"""The door of a run: a bad run config is reported before any data is decoded, any model trained or
anything written, with every problem named by its full config path (issue: validated at the door)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from runner_helpers import fast_config

from samprompt.cli import main
from samprompt.config import MAX_CONFIG_DEPTH, load_config_file
from samprompt.errors import ConfigError
from samprompt.runner import load_run_config
from samprompt.runner.check import check_run

Mutation = Callable[[dict[str, Any], Path], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(cfg: dict[str, Any], _: Path) -> None:
        node: Any = cfg
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(parts[-1])] = value
        else:
            node[parts[-1]] = value
    return mutate


def _drop(key: str) -> Mutation:
    return lambda cfg, _: cfg.pop(key)


def _missing_file(path: str) -> Mutation:
    return lambda cfg, tmp: _set(path, str(tmp / "no-such-file.bin"))(cfg, tmp)


def _garbage_checkpoint(cfg: dict[str, Any], tmp: Path) -> None:
    bad = tmp / "garbage.pt"
    bad.write_bytes(b"this is not a checkpoint")
    cfg["classifier"] = {"checkpoint": str(bad)}


def _sam_without_file(cfg: dict[str, Any], tmp: Path) -> None:
    cfg["pipeline"]["segmenter"] = {"name": "sam", "params": {"model_type": "vit_b",
                                                               "checkpoint": str(tmp / "sam_vit_b.pth")}}


def _selftrain_unknown_class(cfg: dict[str, Any], _: Path) -> None:
    cfg["pipeline"]["prompts"].append({"name": "candidates"})
    cfg["selftrain"] = {"empty_classes": ["healthy"]}


def _fit_with(cfg: dict[str, Any], fit: dict[str, Any]) -> None:
    cfg["pipeline"]["prompts"].append({"name": "candidates", "params": {"scorer": "fit"}})
    cfg["fit"] = fit


# (case id, mutation, text the message must contain -- the config path first)
CASES: list[tuple[str, Mutation, tuple[str, ...]]] = [
    ("unknown top key", _set("colour", "blue"), ("colour: unknown key",)),
    ("misspelled top key", _set("nmae", "x"), ("nmae: unknown key; did you mean 'name'?",)),
    ("name with a slash", _set("name", "a/b"), ("name:", "plain folder name")),
    ("data missing", _drop("data"), ("data: required key is missing",)),
    ("data path missing", _missing_file("data.path"), ("no-such-file.bin", "does not exist")),
    ("data key misspelled", _set("data.pathh", "x"), ("data.pathh: unknown key; did you mean 'path'?",)),
    ("data class unknown", _set("data.classes", ["benign", "tumour"]), ("data.classes:", "'tumour'")),
    ("split fractions sum", _set("split.fractions", [0.5, 0.5, 0.5]), ("split.fractions:", "summing to 1")),
    ("split fraction negative", _set("split.fractions", [-1, 1, 1]), ("split.fractions:",)),
    ("split use unknown", _set("split.use", "validation"), ("split.use:",)),
    ("split seed negative", _set("split.seed", -1), ("split.seed:",)),
    ("split file missing", _missing_file("split.file"), ("split.file: file not found",)),
    ("split conflicting", _set("split.conflicting", "keep"), ("split.conflicting:",)),
    ("seed negative", _set("seed", -1), ("seed: Input should be greater than or equal to 0",)),
    ("seed 10^29", _set("seed", 10**29), ("seed:",)),
    ("seed 2^32", _set("seed", 2**32), ("seed: Input should be less than 4294967296",)),
    ("seed a word", _set("seed", "abc"), ("seed:",)),
    ("batch size 0", _set("batch_size", 0), ("batch_size:",)),
    ("batch size 1e29", _set("batch_size", 1e29), ("batch_size: number too large",)),
    ("workers negative", _set("workers", -1), ("workers:",)),
    ("workers a million", _set("workers", 10**6), ("workers:",)),
    ("limit 0", _set("limit", 0), ("limit:",)),
    ("device gpu", _set("device", "gpu"), ("device:",)),
    ("device cuda:7", _set("device", "cuda:7"), ("device:", "CUDA")),
    ("train key misspelled", _set("classifier.train.epochz", 3),
     ("classifier.train.epochz: unknown key; did you mean 'epochs'?",)),
    ("train epochs 0", _set("classifier.train.epochs", 0), ("classifier.train.epochs:",)),
    ("train batch 1e29", _set("classifier.train.batch_size", 1e29), ("classifier.train.batch_size:",)),
    ("train lr negative", _set("classifier.train.lr", -1), ("classifier.train.lr:",)),
    ("train lr NaN", _set("classifier.train.lr", float("nan")), ("classifier.train.lr:",)),
    ("input size 1e29", _set("classifier.train.preprocessing.input_size", 10**29),
     ("classifier.train.preprocessing.input_size:",)),
    ("input size 4", _set("classifier.train.preprocessing.input_size", 4),
     ("classifier.train.preprocessing.input_size:",)),
    ("train seed negative", _set("classifier.train.seed", -5), ("classifier.train.seed:",)),
    ("train device tpu", _set("classifier.train.device", "tpu"), ("classifier.train.device:",)),
    ("task unknown", _set("classifier.task", "ternary"), ("classifier.task:",)),
    ("binary negative not in data", lambda c, t: (_set("classifier.task", "binary")(c, t),
                                                  _set("classifier.negative", "healthy")(c, t)),
     ("classifier.negative:", "'healthy'")),
    ("checkpoint missing", _missing_file("classifier.checkpoint"), ("classifier.checkpoint: file not found",)),
    ("checkpoint garbage", _garbage_checkpoint, ("garbage.pt", "not a PyTorch file")),
    ("CAM unknown", _set("pipeline.cam.name", "gradcamm"),
     ("pipeline.cam.name:", "Did you mean 'gradcam'?")),
    ("CAM param misspelled", _set("pipeline.cam.params", {"target_layr": "layer4"}),
     ("pipeline.cam.params.target_layr: unknown key; did you mean 'target_layer'?",)),
    ("masker value 2", _set("pipeline.masker.params.value", 2), ("pipeline.masker.params.value:",)),
    ("masker params misspelled", _set("pipeline.masker.parms", {}),
     ("pipeline.masker.parms: unknown key; did you mean 'params'?",)),
    ("no prompts", _set("pipeline.prompts", []), ("pipeline.prompts:",)),
    ("prompt param misspelled", _set("pipeline.prompts.0.params", {"margni": 5}),
     ("pipeline.prompts.0.params.margni: unknown key; did you mean 'margin'?",)),
    ("prompt unknown", _set("pipeline.prompts.1.name", "centre_point"),
     ("pipeline.prompts.1.name:", "Did you mean 'center_point'?")),
    ("prompt label twice", _set("pipeline.prompts", [{"name": "box"}, {"name": "box"}]),
     ("pipeline:", "labels must be unique")),
    ("segmenter unknown", _set("pipeline.segmenter.name", "sma"), ("pipeline.segmenter.name:", "'sam'")),
    ("segmenter checkpoint missing", _sam_without_file, ("pipeline.segmenter.params.checkpoint: file not found",)),
    ("segmenter model type", _set("pipeline.segmenter", {"name": "sam", "params": {"model_type": "vit_x"}}),
     ("pipeline.segmenter.params.model_type:",)),
    ("segmenter param type", _set("pipeline.segmenter.params.work_size", "big"),
     ("pipeline.segmenter.params.work_size:",)),
    ("prompt workers negative", _set("pipeline.prompt_workers", -1), ("pipeline.prompt_workers:",)),
    ("skip class unknown", _set("pipeline.skip_classes", ["tumour"]), ("pipeline.skip_classes:", "'tumour'")),
    ("pipeline classifier set", _set("pipeline.classifier", {"name": "resnet18"}),
     ("pipeline.classifier must be unset",)),
    ("target empty list", _set("target", []), ("target:",)),
    ("target unknown class", _set("target", ["tumour"]), ("target:", "'tumour'")),
    ("target unknown word", _set("target", "labels"), ("target",)),
    ("report thumb 10", _set("report.thumb", 10), ("report.thumb:",)),
    ("report confidence 1.5", _set("report.confidence", 1.5), ("report.confidence:",)),
    ("selftrain without candidates", _set("selftrain", {}), ("selftrain needs a prompt strategy that takes a self-training net",)),
    ("selftrain class unknown", _selftrain_unknown_class, ("selftrain.empty_classes:", "'healthy'")),
    ("selftrain keep 0", _set("selftrain", {"keep": 0}), ("selftrain.keep:",)),
    ("overlap not a bool", _set("pipeline.overlap", "sometimes"), ("pipeline.overlap:",)),
    ("lesion head, negative class unknown", lambda c, t: (_set("classifier.train.lesion_head", 1.0)(c, t),
                                                          _set("classifier.train.negative_classes", ["healthy"])(c, t)),
     ("classifier.train.negative_classes:", "at least one negative class", "'healthy'")),
    ("lesion head, every class negative", lambda c, t: (
        _set("classifier.train.lesion_head", 1.0)(c, t),
        _set("classifier.train.negative_classes", ["benign", "malignant", "normal"])(c, t)),
     ("classifier.train.negative_classes:", "every class of the task")),
    ("lesion head weight negative", _set("classifier.train.lesion_head", -1), ("classifier.train.lesion_head:",)),
    ("lesion CAM without a lesion head", _set("pipeline.cam.params", {"head": "lesion"}),
     ("pipeline.cam.params.head:", "no lesion head")),
    ("CAM head unknown", _set("pipeline.cam.params", {"head": "lesions"}), ("pipeline.cam.params.head:",)),
    ("fit learner mil without a negative class", lambda c, t: _fit_with(c, {"learner": "mil",
                                                                           "negative_classes": ["healthy"]}),
     ("fit.learner:", "mil needs a negative class", "'healthy'")),
    ("fit learner evidence with a negative class", lambda c, t: _fit_with(c, {"learner": "evidence"}),
     ("fit.learner:", "without a negative class", "'normal'")),
    ("fit learner unknown", lambda c, t: _fit_with(c, {"learner": "attention"}), ("fit.learner:",)),
    ("guide weight negative", _set("classifier.train.guide_weight", -1), ("classifier.train.guide_weight:",)),
    ("guide cover without the guidance term", _set("classifier.train.guide_cover", 1.0),
     ("classifier.train.guide_cover:", "guide_weight > 0")),
    ("guided training with CAM features", lambda c, t: (_set("classifier.train.guide_weight", 2.0)(c, t),
                                                        _fit_with(c, {"cam_features": True})),
     ("classifier.train.guide_weight:", "fit.cam_features")),
    ("guided training with the evidence learner", lambda c, t: (_set("classifier.train.guide_weight", 2.0)(c, t),
                                                                _fit_with(c, {"learner": "evidence"})),
     ("classifier.train.guide_weight:", "cannot be evidence")),
    ("guided training on one class without a negative", lambda c, t: (
        _set("classifier.train.guide_weight", 2.0)(c, t), _set("data.classes", ["benign"])(c, t)),
     ("classifier.train.guide_weight:", "one class ['benign']")),
]


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything is trained or any image decoded."""
    from samprompt.data import datasets
    from samprompt.runner import stages

    def forbidden(*_: Any, **__: Any) -> Any:
        raise AssertionError("the door let a bad config through to training or image decoding")

    monkeypatch.setattr(stages, "train_classifier", forbidden)
    monkeypatch.setattr(datasets.Dataset, "load_image", forbidden)


@pytest.mark.parametrize(("case", "mutate", "needles"), CASES, ids=[c[0] for c in CASES])
def test_bad_config_fails_at_the_door(case: str, mutate: Mutation, needles: tuple[str, ...], synth_data: Path,
                                      tmp_path: Path, no_training: None,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg = copy.deepcopy(fast_config(synth_data))
    mutate(cfg, tmp_path)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(cfg))
    out = tmp_path / "out"
    code = main(["--no-progress", "run", str(path), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    for needle in needles:
        assert needle in err, (case, needle, err)
    assert "internal error" not in err and "Traceback" not in err
    assert not out.exists(), "nothing may be written for a bad config"


def test_all_problems_are_reported_at_once(synth_data: Path, tmp_path: Path) -> None:
    cfg = fast_config(synth_data, seed=-1, workers=10**6)
    cfg["classifier"]["train"]["epochz"] = 3
    cfg["pipeline"]["prompts"][0]["params"] = {"margni": 5}
    cfg["pipeline"]["segmenter"]["name"] = "sma"
    with pytest.raises(ConfigError) as info:
        load_run_config(cfg)
    paths = [p for p, _ in info.value.problems]
    assert sorted(paths) == sorted(["seed", "workers", "classifier.train.epochz", "pipeline.prompts.0.params.margni",
                                    "pipeline.segmenter.name"])
    assert "5 problems" in str(info.value)
    # a missing checkpoint comes in the same list as the structural problems
    cfg = fast_config(synth_data, seed=-1)
    cfg["pipeline"]["segmenter"] = {"name": "sam", "params": {"checkpoint": str(tmp_path / "sam_vit_b.pth")}}
    with pytest.raises(ConfigError) as info:
        load_run_config(cfg)
    assert [p for p, _ in info.value.problems] == ["seed", "pipeline.segmenter.params.checkpoint"]
    # and the file-system checks, also all at once
    cfg = fast_config(synth_data, target=["tumour"])
    cfg["data"]["classes"] = ["benign", "malignant", "healthy"]
    cfg["split"]["file"] = str(tmp_path / "none.json")
    problems = dict(check_run(load_run_config(cfg)))
    assert set(problems) == {"data.classes", "split.file", "target"}


def test_checkpoint_classes_are_checked_against_the_data(synth_data: Path, finished_run: tuple[Path, Any],
                                                         tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth_data, data)
    (data / "benign").rename(data / "Benign")  # a case variant the checkpoint does not know
    cfg = load_run_config(fast_config(data, classifier={"checkpoint": str(finished_run[0] / "classifier.pt")}))
    problems = check_run(cfg)
    assert [p for p, _ in problems] == ["classifier.checkpoint"]
    assert "'Benign' (did you mean 'benign'? labels are case-sensitive)" in problems[0][1]


def test_check_flag_validates_only(synth_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(fast_config(synth_data)))
    out = tmp_path / "out"
    assert main(["--no-progress", "run", str(path), "--check", "--out", str(out)]) == 0
    assert "no problem found" in capsys.readouterr().out and not out.exists()
    assert main(["--no-progress", "run", "--preset", "paper", str(synth_data), "--check", "--out", str(out)]) == 0
    assert "run(s) checked" in capsys.readouterr().out and not out.exists()
    assert main(["--no-progress", "run", "--preset", "paper", str(synth_data), "--check",
                 "--set", "pipeline.prompts.0.params.margni=5"]) == 2
    assert "pipeline.prompts.0.params.margni: unknown key" in capsys.readouterr().err


BOMB = """\
a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
"""


def test_yaml_anchors_and_aliases_are_refused(tmp_path: Path) -> None:
    pytest.importorskip("yaml", reason="YAML configs need PyYAML")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    with pytest.raises(ConfigError, match=r"bomb\.yaml, line 1: YAML anchor &a is not allowed"):
        load_config_file(bomb)
    alias = tmp_path / "alias.yaml"
    alias.write_text("name: x\nseg: {params: {checkpoint: a}}\nother: *missing\n")
    with pytest.raises(ConfigError, match=r"alias\.yaml.*line 3: YAML alias \*missing"):
        load_config_file(alias)
    plain = tmp_path / "plain.yaml"
    plain.write_text("name: x\npipeline: {prompts: [{name: box}]}\n")
    assert load_config_file(plain) == {"name": "x", "pipeline": {"prompts": [{"name": "box"}]}}


def test_oversized_and_over_deep_files_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"description": "x" * (2 << 20)}))
    with pytest.raises(ConfigError, match=r"big\.json is \d+ bytes; the limit"):
        load_config_file(big)
    deep = tmp_path / "deep.json"
    deep.write_text("{\"a\": " * (MAX_CONFIG_DEPTH + 5) + "1" + "}" * (MAX_CONFIG_DEPTH + 5))
    with pytest.raises(ConfigError, match="nests deeper"):
        load_config_file(deep)


def test_the_busi_credit_follows_the_bundled_sample_not_a_path_substring(tmp_path: Path) -> None:
    import shutil

    from samprompt.sample import is_sample, sample_path

    assert is_sample(sample_path()) and is_sample(str(sample_path()) + "/")
    copy_named_busi = tmp_path / "BUSI_copy"
    shutil.copytree(sample_path(), copy_named_busi)
    assert not is_sample(copy_named_busi)  # a folder merely named like BUSI is not detected as BUSI
