"""RunConfig validation, file loading, overrides, presets and safe output names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from runner_helpers import fast_config

from samprompt.errors import ConfigError
from samprompt.runner import (
    PRESETS,
    RunConfig,
    apply_overrides,
    load_run_config,
    preset,
    preset_names,
    run_experiment,
)
from samprompt.runner.outputs import atomic_write_text, inside, safe_name
from samprompt.runner.presets import sample_data_path, segmenter_spec


def test_unknown_keys_name_their_location(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"classifier\.train\.epochz"):
        load_run_config({"data": {"path": "x"}, "classifier": {"train": {"epochz": 3}}})
    with pytest.raises(ConfigError, match=r"pipeline\.prompts\.0\.nam"):
        load_run_config({"data": {"path": "x"}, "pipeline": {"prompts": [{"nam": "box"}]}})
    with pytest.raises(ConfigError, match="pipeline.classifier must be unset"):
        load_run_config({"data": {"path": "x"}, "pipeline": {"classifier": {"checkpoint": "c.pt"}}})
    with pytest.raises(ConfigError, match="name"):
        load_run_config({"data": {"path": "x"}, "name": "../up"})


def test_run_seed_and_device_flow_into_training() -> None:
    cfg = load_run_config({"data": {"path": "x"}, "seed": 7, "device": "cpu"})
    assert cfg.classifier.train.seed == 7 and cfg.classifier.train.device == "cpu" and cfg.split_seed == 7
    explicit = load_run_config({"data": {"path": "x"}, "seed": 7, "classifier": {"train": {"seed": 1}}})
    assert explicit.classifier.train.seed == 1
    # the resolved config round-trips to the same identity
    again = RunConfig.model_validate(cfg.identity() | {"limit": None})
    assert again.identity() == cfg.identity()


def test_yaml_file_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    f = tmp_path / "cfg" / "run.yaml"
    f.write_text("data: {path: ../data}\nsplit: {file: splits/s.json}\nlimit: 3\n", encoding="utf-8")
    cfg = load_run_config(f)
    assert cfg.data.path == (tmp_path / "cfg" / ".." / "data").absolute()
    assert cfg.split.file == (tmp_path / "cfg" / "splits" / "s.json").absolute() and cfg.limit == 3
    assert "limit" not in cfg.identity()


def test_overrides() -> None:
    d = {"a": {"b": 1}, "l": [{"x": 1}, {"x": 2}]}
    out = apply_overrides(d, ["a.b=2", "l.1.x=5", "new.key=[1, 2]", "s=hello"])
    assert out == {"a": {"b": 2}, "l": [{"x": 1}, {"x": 5}], "new": {"key": [1, 2]}, "s": "hello"}
    assert d["a"]["b"] == 1  # the input is not modified
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides(d, ["nothing"])
    with pytest.raises(ConfigError, match="l.7"):
        apply_overrides(d, ["l.7.x=1"])


def test_target_list_must_name_classifier_classes(synth_data: Path, tmp_path: Path) -> None:
    cfg = load_run_config(fast_config(synth_data, target=["benign", "tumour"], limit=1))
    with pytest.raises(ConfigError, match=r"target.*tumour"):
        run_experiment(cfg, tmp_path / "r")


def test_lesion_target_is_every_class_but_the_negative_ones(synth_data: Path, tmp_path: Path) -> None:
    """``target: lesion`` = the classes not in ``fit.negative_classes`` summed (BUSI: benign + malignant);
    ``predicted`` when no class is a negative one; refused at the door when every class is."""
    from samprompt.runner.check import check_run
    from samprompt.runner.stages import resolve_targets

    cfg = load_run_config(fast_config(synth_data, target="lesion"))
    assert cfg.target_classes(["benign", "malignant", "normal"]) == ["benign", "malignant"]
    assert cfg.target_classes(["cyst", "normal", "tumour"]) == ["cyst", "tumour"]
    assert cfg.target_classes(["melanoma", "naevus"]) is None  # no negative class: per image
    info = type("Info", (), {"class_names": ["benign", "malignant", "normal"]})()
    assert resolve_targets(cfg, info, ["normal", "benign"]) == [(0, 1), (0, 1)]  # type: ignore[arg-type]
    info2 = type("Info", (), {"class_names": ["melanoma", "naevus"]})()
    assert resolve_targets(cfg, info2, ["naevus"]) == ["predicted"]  # type: ignore[arg-type]
    other = load_run_config(fast_config(synth_data, target="lesion", fit={"negative_classes": ["benign"]},
                                        pipeline={**fast_config(synth_data)["pipeline"],
                                                  "prompts": [{"name": "candidates", "params": {"scorer": "fit"}}]}))
    assert other.target_classes(["benign", "malignant", "normal"]) == ["malignant", "normal"]
    with pytest.raises(ConfigError, match=r"target: lesion: every class of the classifier \['normal'\]"):
        cfg.target_classes(["normal"])
    # at the door, against the data's classes (the synthetic data: benign, malignant, normal)
    assert check_run(cfg) == []
    only_normal = load_run_config(fast_config(synth_data, target="lesion",
                                              fit={"negative_classes": ["benign", "malignant", "normal"]},
                                              pipeline={**fast_config(synth_data)["pipeline"],
                                                        "prompts": [{"name": "candidates",
                                                                     "params": {"scorer": "fit"}}]}))
    problems = check_run(only_normal)
    assert [p[0] for p in problems] == ["target"] and "every class" in problems[0][1]


def test_presets_build_valid_configs(tmp_path: Path) -> None:
    assert {"paper", "demo"} <= set(preset_names())
    runs = preset("paper", tmp_path, overrides=["classifier.train.epochs=2"])
    assert [r.name for r in runs] == [r["name"] for r in PRESETS["paper"]["runs"]]
    cfgs = [r.config(tmp_path / "out") for r in runs]
    r18, r18pp, r34 = cfgs
    assert r18.classifier.train.arch == "resnet18" and r18.classifier.train.epochs == 2
    assert r18.pipeline.masker.params["value"] == 0.8 and r34.pipeline.masker.params["value"] == 0.6
    assert r34.classifier.task == "binary" and r34.classifier.train.arch == "resnet34"
    assert r18pp.pipeline.cam.name == "gradcampp"
    assert r18pp.classifier.checkpoint == tmp_path / "out" / "resnet18-gradcam" / "classifier.pt"
    assert {p.name for p in r18.pipeline.prompts} == {"box", "center_point", "max_point", "box_center_point",
                                                      "box_max_point"}
    assert all(p.params.get("margin", 5) == 5 for p in r18.pipeline.prompts)
    with pytest.raises(ConfigError, match=r"pipeline\.segmenter\.params\.checkpoint: file not found"):
        preset("paper", tmp_path, segmenter=segmenter_spec("sam", tmp_path / "sam.pth", "vit_l"))
    (tmp_path / "sam.pth").write_bytes(b"")  # a checkpoint named in a config must exist (read when built)
    sam = preset("paper", tmp_path, segmenter=segmenter_spec("sam", tmp_path / "sam.pth", "vit_l"))
    seg = sam[0].config(tmp_path).pipeline.segmenter
    assert seg.name == "sam" and seg.params == {"checkpoint": str(tmp_path / "sam.pth"), "model_type": "vit_l",
                                                "multimask": False}
    with pytest.raises(ConfigError, match="available: best, demo, guided, paper"):
        preset("nope")


def _class_folders(root: Path, classes: list[str]) -> Path:
    from PIL import Image

    for c in classes:
        (root / c).mkdir(parents=True)
        for k in range(2):
            Image.new("L", (8, 8), 40 * k).save(root / c / f"{c} ({k}).png")
    return root


def test_best_preset_adds_the_guided_cam_run_where_the_fit_can_guide(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``best`` runs the guided recipe (the ``guided`` preset's training and CAM on ``best``'s split) as a
    third run when the label-only fit can make guides (a negative class, or two classes), and leaves it out
    with a warning on one-class data, where the door would refuse it."""
    with_normal = _class_folders(tmp_path / "a", ["benign", "malignant", "normal"])
    runs = preset("best", with_normal)
    assert [r.name for r in runs] == ["paper-resnet18-gradcam", "candidates", "guided-cam"]
    cfg = runs[2].config(tmp_path / "out")
    (guided,) = preset("guided", with_normal)
    ref = guided.config(tmp_path / "out")
    assert cfg.classifier.train == ref.classifier.train and cfg.pipeline.cam == ref.pipeline.cam
    assert cfg.classifier.train.knobs().guide_weight == 4.0 and cfg.fits_threshold
    assert cfg.split.fractions == runs[0].config(tmp_path / "out").split.fractions  # best's test images
    assert [p.name for p in cfg.pipeline.prompts] == ["box", "center_point", "max_point", "box_center_point",
                                                      "box_max_point"]
    assert "needs" not in runs[2].data  # a preset key, not a config key
    # the guided recipe's guides stay multiple-instance ones (as measured); best's own fit takes the default
    assert cfg.fit is not None and cfg.fit.contrast_min_images is None
    assert ref.fit is not None and ref.fit.contrast_min_images is None
    best_fit = runs[1].config(tmp_path / "out").fit
    assert best_fit is not None and best_fit.contrast_min_images == 20 and best_fit.learner == "auto"
    assert best_fit.contrast_max_images == 500 and runs[1].config(tmp_path / "out").pipeline.prompt_workers == 2
    two = _class_folders(tmp_path / "b", ["benign", "malignant"])  # class contrast can guide
    assert [r.name for r in preset("best", two)][-1] == "guided-cam"
    one = _class_folders(tmp_path / "c", ["lesion"])
    with caplog.at_level("WARNING", logger="samprompt.runner.presets"):
        names = [r.name for r in preset("best", one)]
    assert names == ["paper-resnet18-gradcam", "candidates"]
    assert "run 'guided-cam' left out" in caplog.text and "one class ['lesion']" in caplog.text


def test_demo_preset_uses_the_bundled_sample() -> None:
    (run,) = preset("demo")
    cfg = run.config(Path.cwd())
    assert cfg.data.path == sample_data_path()
    from samprompt.data import open_dataset

    ds = open_dataset(cfg.data.path)
    assert len(ds) == 60 and ds.classes == ["benign", "malignant", "normal"]
    assert "benign/benign (433)" not in ds.ids and "malignant/malignant (145)" not in ds.ids
    total = sum(p.stat().st_size for p in cfg.data.path.rglob("*") if p.is_file())
    assert total < 2_000_000


@pytest.mark.parametrize("image_id", ["../evil", "a b (1)", "naïve/été", "/abs/path", "..", ".", "x/../../y",
                                      "con", "日本語", "a" * 300, ""])
def test_safe_name_examples(image_id: str, tmp_path: Path) -> None:
    stem = safe_name(image_id)
    assert stem.isascii() and "/" not in stem and "\\" not in stem and not stem.startswith(".")
    assert len(stem) <= 71
    p = inside(tmp_path, tmp_path / "masks" / f"{stem}.png")
    assert tmp_path.resolve() in p.parents


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=40), st.text(min_size=0, max_size=40))
def test_safe_name_is_safe_and_injective(a: str, b: str) -> None:
    sa, sb = safe_name(a), safe_name(b)
    assert all(c.isalnum() or c in "._-" for c in sa) and not sa.startswith(".")
    assert (sa == sb) == (a == b)


def test_inside_rejects_escapes_and_atomic_write_leaves_no_temp(tmp_path: Path) -> None:
    from samprompt.errors import DataError

    with pytest.raises(DataError, match="outside the run folder"):
        inside(tmp_path / "run", tmp_path / "run" / ".." / "evil.png")
    atomic_write_text(tmp_path / "run" / "a.json", json.dumps({"x": 1}))
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["a.json"]


def test_scorer_files_are_checked_at_the_door(synth_data: Path, tmp_path: Path) -> None:
    """A missing scorer file, or (self-training without ``selftrain.weight``) one without an agreement
    weight, is reported by the door with its config path, before any training."""
    from samprompt.proposals.scorer import load_scorer
    from samprompt.runner.check import check_run

    base = fast_config(synth_data)

    def with_prompts(prompts: list[dict[str, object]], **extra: object) -> list[tuple[str, str]]:
        return check_run(load_run_config({**base, **extra, "pipeline": {**base["pipeline"], "prompts": prompts}}))

    missing = with_prompts([{"name": "box"}, {"name": "candidates", "params": {"scorer": str(tmp_path / "no.json")}}])
    assert [p[0] for p in missing] == ["pipeline.prompts.1.params.scorer"] and "does not exist" in missing[0][1]
    blob = load_scorer("busi-v1").to_json()
    del blob["agreement_weight"]  # like a fitted file
    (tmp_path / "fitted.json").write_text(json.dumps(blob))
    own = {"name": "candidates", "params": {"scorer": str(tmp_path / "fitted.json")}}
    assert with_prompts([own]) == []  # no self-training: no weight needed
    problems = with_prompts([own, {"name": "candidates", "label": "shipped"}], selftrain={})
    assert [p[0] for p in problems] == ["pipeline.prompts.0.params.agreement_weight"]
    assert "carries no agreement weight" in problems[0][1]
    weighted = {"name": "candidates", "params": {**own["params"], "agreement_weight": 2.0}}  # type: ignore[dict-item]
    assert with_prompts([weighted], selftrain={}) == []
    assert with_prompts([own], selftrain={"weight": 4.0}) == []
