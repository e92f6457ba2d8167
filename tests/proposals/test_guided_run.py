"""A guided training in a run and on the command line (issue 19): the label-only fit runs BEFORE the
classifier, its regions guide the CAM, no mask is opened, and the config's door refuses what cannot work."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from samprompt.data import make_split, open_dataset
from samprompt.errors import ConfigError

from .scenes import scene
from .test_fit_stage import _data


def _config(data: Path, **train: Any) -> dict[str, Any]:
    return {
        "name": "guided", "data": {"path": str(data)},
        "split": {"fractions": [0.75, 0.0, 0.25], "use": "test"}, "limit": 2,
        "classifier": {"task": "multiclass", "train": {
            "arch": "tiny_cnn", "epochs": 1, "batch_size": 4, "patience": None,
            "preprocessing": {"input_size": 32}, "device": "cpu", "guide_weight": 2.0, **train}},
        "device": "cpu", "batch_size": 2, "target": ["benign", "malignant"],
        "pipeline": {"cam": {"name": "gradcam"}, "masker": {"name": "threshold", "params": {"value": 0.5}},
                     "prompts": [{"name": "candidates", "params": {"scorer": "fit", "work_size": 64}}],
                     "segmenter": {"name": "classical", "params": {"work_size": 48}}},
        "fit": {"min_images": 4},
        "report": {"panels": 1, "gallery": 1, "thumb": 64},
    }


def test_guided_run_fits_first_guides_the_training_and_reuses_the_fit(tmp_path: Path) -> None:
    from samprompt.classifiers import read_info
    from samprompt.runner import load_run_config, run_experiment

    data = _data(tmp_path / "d", per_class=8)
    out = tmp_path / "run"
    run_experiment(load_run_config(_config(data)), out)
    scorer = out / "scorer.json"
    blob = json.loads(scorer.read_text())
    prov = blob["provenance"]
    assert blob["polarity"] == "bright" and prov["before_training"] is True and prov["classifier_sha256"] is None
    assert prov["images"] == 18 and prov["split"]["part"] == "train"
    result = json.loads((out / "train_result.json").read_text())
    guides = result["guides"]
    assert guides["scorer"] == str(scorer) and guides["images"] == 18
    assert guides["lesion_images"] == 12 and 0 < guides["with_guide"] <= 12  # the normal images get none
    info, _ = read_info(out / "classifier.pt")
    assert (info.train_config or {})["guide_weight"] == 2.0  # the checkpoint records the knob
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["scorer"]["sha256"] == guides["scorer_sha256"]  # the fit stage reused the file
    # a change of the CAM keeps the fit (a guided training's fit reads no CAM) and the classifier
    stamp = (scorer.stat().st_mtime_ns, (out / "classifier.pt").stat().st_mtime_ns)
    run_experiment(load_run_config({**_config(data), "pipeline": {**_config(data)["pipeline"],
                                                                  "cam": {"name": "gradcampp"}}}), out)
    assert (scorer.stat().st_mtime_ns, (out / "classifier.pt").stat().st_mtime_ns) == stamp
    # a change of the fit's settings changes the guides, so it retrains the classifier (with --force)
    with pytest.raises(ConfigError, match="fit.polarity"):
        run_experiment(load_run_config({**_config(data), "fit": {"min_images": 4, "polarity": "dark"}}), out)
    # guide_keep: the same fit's most confident half of the regions guide the training
    half = tmp_path / "half"
    run_experiment(load_run_config(_config(data, guide_keep=0.5)), half)
    kept = json.loads((half / "train_result.json").read_text())["guides"]
    assert kept["keep"] == 0.5 and guides["keep"] == 1.0
    assert kept["with_guide"] == math.ceil(0.5 * guides["with_guide"])


def test_guided_run_asks_the_data_for_no_mask_before_the_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from samprompt.data import Dataset
    from samprompt.runner import load_run_config, run_experiment, stages

    data = _data(tmp_path / "d", per_class=8)
    seen: list[str] = []
    decoded: dict[Any, int] = {}
    real_train, real_load = stages.train_classifier, Dataset.load_image

    def refuse(self: Dataset, i: Any) -> None:
        raise AssertionError(f"load_mask({i!r}) was called before the classifier was trained")

    def load(self: Dataset, i: Any) -> Any:
        decoded[i] = decoded.get(i, 0) + 1
        return real_load(self, i)

    def train(*a: Any, **k: Any) -> Any:
        seen.append("train")
        # before the training, each train image is decoded by the readability check, the fit's two passes,
        # its guide and (a few) the fit's colour test: the fit does not check them again
        assert len(decoded) == 18 and max(decoded.values()) <= 5
        assert k["guides"] is not None and any(g is not None for g in k["guides"])
        monkeypatch.undo()  # from here on masks may be read (the scoring of the images)
        return real_train(*a, **k)

    monkeypatch.setattr(Dataset, "load_mask", refuse)
    monkeypatch.setattr(Dataset, "load_image", load)
    monkeypatch.setattr(stages, "train_classifier", train)
    run_experiment(load_run_config(_config(data)), tmp_path / "run")
    assert seen == ["train"]


@pytest.mark.parametrize(("change", "message"), [
    ({"classifier": {"checkpoint": "c.pt", "train": {"guide_weight": 1.0}}}, "with classifier.checkpoint nothing"),
    ({"fit": {"cam_features": True}}, "fit.cam_features"),
    ({"fit": {"learner": "evidence"}}, "fit.learner cannot be evidence"),
    ({"classifier": {"train": {"arch": "tiny_cnn", "guide_keep": 0.5}}}, "guide_keep: only a guided training"),
])
def test_guided_config_errors(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    from samprompt.runner import load_run_config

    cfg = _config(tmp_path)
    for k, v in change.items():
        cfg[k] = {**cfg[k], **v} if k == "fit" else v
    with pytest.raises(ConfigError, match=message):
        load_run_config(cfg)


def test_guided_door_needs_labels_the_fit_can_learn_from_without_a_classifier(tmp_path: Path) -> None:
    from samprompt.runner import load_run_config
    from samprompt.runner.check import check_run

    root = tmp_path / "one"
    (root / "benign").mkdir(parents=True)
    for k in range(3):
        img, mask = scene("bright", k)
        Image.fromarray(img).save(root / "benign" / f"benign ({k}).png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "benign" / f"benign ({k})_mask.png")
    problems = check_run(load_run_config(_config(root)))
    assert any(p == "classifier.train.guide_weight" and "one class ['benign']" in m for p, m in problems), problems
    prior = _config(_data(tmp_path / "d", per_class=2))
    prior["fit"] = {"prior": "busi-v1", "negative_classes": []}
    problems = check_run(load_run_config(prior))
    assert any(p == "classifier.train.guide_weight" and "fit.prior is set" in m for p, m in problems), problems


def test_cli_fit_prompts_without_a_classifier_then_a_guided_training(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from samprompt.classifiers import read_info
    from samprompt.cli import main

    data = _data(tmp_path / "d", per_class=8)
    make_split(open_dataset(data), seed=0, fractions=(0.75, 0.25, 0.0)).save(tmp_path / "split.json")
    scorer = tmp_path / "scorer.json"
    rc = main(["--no-progress", "fit-prompts", str(data), "--split", str(tmp_path / "split.json"), "--out",
               str(scorer), "--negative", "normal", "--min-images", "4"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads(scorer.read_text())["provenance"]["classifier"] is None
    # 6 train images per class: below --contrast-min-images (20), multiple-instance learning; at 4, contrast
    assert json.loads(scorer.read_text())["provenance"]["fit"]["method"].startswith("multiple-instance")
    rc = main(["--no-progress", "fit-prompts", str(data), "--split", str(tmp_path / "split.json"), "--out",
               str(tmp_path / "c.json"), "--negative", "normal", "--min-images", "4", "--contrast-min-images", "4"])
    assert rc == 0, capsys.readouterr().err
    prov = json.loads((tmp_path / "c.json").read_text())["provenance"]
    assert prov["fit"]["method"].startswith("class-contrast")
    assert prov["images"] == prov["images_offered"] == 18 and prov["contrast_max_images"] == 500  # 6 a class: all
    # class contrast reads at most --contrast-max-images per class (drawn with --seed); MIL is not capped
    rc = main(["--no-progress", "fit-prompts", str(data), "--split", str(tmp_path / "split.json"), "--out",
               str(tmp_path / "c.json"), "--negative", "normal", "--min-images", "4", "--contrast-min-images", "4",
               "--contrast-max-images", "5"])
    assert rc == 0, capsys.readouterr().err
    prov = json.loads((tmp_path / "c.json").read_text())["provenance"]
    assert prov["images"] == 15 and prov["contrast_max_images"] == 5 and prov["images_offered"] == 18
    assert json.loads(scorer.read_text())["provenance"]["images"] == 18  # the MIL fit above: all of them
    rc = main(["--no-progress", "fit-prompts", str(data), "--split", str(tmp_path / "split.json"), "--out",
               str(tmp_path / "c.json"), "--negative", "normal", "--contrast-max-images", "10"])
    assert rc == 2 and "--contrast-max-images (10) must be 0 (all images) or at least" in capsys.readouterr().err
    rc = main(["--no-progress", "fit-prompts", str(data), "--split", str(tmp_path / "split.json"), "--out",
               str(tmp_path / "c.json"), "--negative", "normal", "--contrast-min-images", "1"])
    assert rc == 2 and "--contrast-min-images: must be 2 or more, got 1" in capsys.readouterr().err
    # in a worker process: the same scorer
    rc = main(["--no-progress", "fit-prompts", str(data), "--split", str(tmp_path / "split.json"), "--out",
               str(tmp_path / "w1.json"), "--negative", "normal", "--min-images", "4", "--workers", "1"])
    assert rc == 0, capsys.readouterr().err
    one, other = json.loads(scorer.read_text()), json.loads((tmp_path / "w1.json").read_text())
    assert one["stage1"] == other["stage1"] and one["stage2"] == other["stage2"]
    rc = main(["--no-progress", "fit-prompts", str(data), "--split", str(tmp_path / "split.json"), "--out",
               str(tmp_path / "w1.json"), "--negative", "normal", "--workers", "-1"])
    assert rc == 2 and "--workers: must be 0 or more, got -1" in capsys.readouterr().err
    rc = main(["--no-progress", "fit-prompts", str(data), "--split", str(tmp_path / "split.json"), "--out",
               str(scorer), "--cam-features"])
    assert rc == 2 and "--checkpoint: --cam-features" in capsys.readouterr().err
    base = ["--no-progress", "train", str(data), "--split", str(tmp_path / "split.json"), "--arch", "tiny_cnn",
            "--epochs", "1", "--input-size", "32", "--device", "cpu", "--guide-scorer", str(scorer)]
    rc = main([*base, "--out", str(tmp_path / "off")])
    assert rc == 2 and "guidance term is off" in capsys.readouterr().err
    rc = main([*base, "--out", str(tmp_path / "on"), "--set", "guide_weight=2"])
    assert rc == 0, capsys.readouterr().err
    info, _ = read_info(tmp_path / "on" / "classifier.pt")
    assert (info.train_config or {})["guide_weight"] == 2.0
    assert json.loads((tmp_path / "on" / "train_result.json").read_text())["guide_scorer"] == str(scorer)
    # guide_keep reaches the guides of samprompt train too
    from samprompt import proposals

    seen: list[float] = []
    real = proposals.guide_masks

    def spy(*a: Any, **k: Any) -> Any:
        seen.append(k["keep"])
        return real(*a, **k)

    monkeypatch.setattr(proposals, "guide_masks", spy)
    rc = main([*base, "--out", str(tmp_path / "half"), "--set", "guide_weight=2", "--set", "guide_keep=0.5"])
    assert rc == 0, capsys.readouterr().err
    assert seen == [0.5]


def test_guided_run_refuses_before_training_when_the_labels_need_the_classifier(tmp_path: Path) -> None:
    from samprompt.proposals.fit import resolve_learner
    from samprompt.runner import load_run_config, run_experiment

    assert resolve_learner([True] * 8 + [False] * 8) == "mil"
    assert resolve_learner([True] * 16, ["a"] * 8 + ["b"] * 8) == "contrast"
    assert resolve_learner([True] * 11, ["a"] * 8 + ["b"] * 3) == "evidence"
    assert resolve_learner([True] * 16, ["a"] * 8 + ["b"] * 8, prior=True) == "evidence"
    with pytest.raises(ConfigError, match="contrast impossible"):
        resolve_learner([True] * 11, ["a"] * 8 + ["b"] * 3, "contrast")
    root = tmp_path / "d"  # two lesion classes, no negative class; malignant has too few train images
    for cls, n in (("benign", 12), ("malignant", 3)):
        (root / cls).mkdir(parents=True)
        for k in range(n):
            img, mask = scene("bright", 40 * (cls == "malignant") + k)
            Image.fromarray(img).save(root / cls / f"{cls} ({k}).png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / cls / f"{cls} ({k})_mask.png")
    cfg = _config(root)
    cfg["split"] = {"fractions": [1.0, 0.0, 0.0], "use": "train"}
    with pytest.raises(ConfigError, match="guide_weight: .*need its evidence"):
        run_experiment(load_run_config(cfg), tmp_path / "run")
    assert not (tmp_path / "run" / "classifier.pt").exists() and not (tmp_path / "run" / "scorer.json").exists()


def test_guided_preset_runs_the_paper_prompts_on_a_guided_cam_with_a_fitted_threshold(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from samprompt.cli import main
    from samprompt.runner import preset

    (run,) = preset("guided", tmp_path)
    cfg = run.config(tmp_path)
    train = cfg.classifier.train
    assert train.knobs().guide_weight == 4.0 and train.knobs().guide_cover == 2.0 and train.epochs == 12
    assert cfg.fits_threshold and cfg.pipeline.cam.params["scales"] == [1.5]
    assert {p.label or p.name for p in cfg.pipeline.prompts} >= {"box", "center_point", "label_only"}
    data = _data(tmp_path / "d", per_class=10)
    fast = ["--set", "classifier.train.arch=tiny_cnn", "--set", "classifier.train.epochs=1",
            "--set", "classifier.train.preprocessing.input_size=32", "--set", "fit.min_images=4",
            "--set", "limit=2", "--set", "device=cpu", "--set", "classifier.train.device=cpu"]
    rc = main(["--no-progress", "run", "--preset", "guided", str(data), "--out", str(tmp_path / "out"), *fast])
    assert rc == 0, capsys.readouterr().err
    folder = tmp_path / "out" / "guided"
    assert json.loads((folder / "train_result.json").read_text())["guides"]["with_guide"] > 0
    threshold = json.loads((folder / "threshold.json").read_text())
    assert threshold["part"] == "val" and 0.0 < threshold["value"] < 1.0
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["pipeline"]["masker"]["params"]["value"] == threshold["value"]
