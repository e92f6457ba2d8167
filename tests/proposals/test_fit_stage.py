"""The run's ``fit`` stage and ``samprompt fit-prompts``: train split, image labels only, reused on resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from samprompt.data import Dataset, make_split, open_dataset
from samprompt.errors import DataError
from samprompt.runner.fitting import LabelsOnly, fit_on_dataset

from .scenes import scene


def _data(root: Path, per_class: int = 6) -> Path:
    """Bright lesions (benign / malignant) and lesion-free normal images, each with a mask file."""
    for c, cls in enumerate(("benign", "malignant", "normal")):
        (root / cls).mkdir(parents=True)
        for k in range(per_class):
            img, mask = scene("bright", 1000 * c + k, lesion=cls != "normal")
            Image.fromarray(img).save(root / cls / f"{cls} ({k}).png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / cls / f"{cls} ({k})_mask.png")
    return root


def _run_config(data: Path, name: str, prompts: list[dict[str, Any]], *, fractions: tuple[float, ...] = (0.75, 0.0, 0.25),
                value: float | str = 0.5, **extra: Any) -> dict[str, Any]:
    """A fast run config over ``_data``: tiny CNN, one epoch, ``fit.min_images`` 4, masker ``value``."""
    return {
        "name": name, "data": {"path": str(data)},
        "split": {"fractions": list(fractions), "use": "test"},
        "classifier": {"task": "multiclass", "train": {
            "arch": "tiny_cnn", "epochs": 1, "batch_size": 4, "patience": None,
            "preprocessing": {"input_size": 32}, "device": "cpu"}},
        "device": "cpu", "batch_size": 3, "target": ["benign", "malignant"],
        "pipeline": {"cam": {"name": "gradcam"}, "masker": {"name": "threshold", "params": {"value": value}},
                     "prompts": prompts, "segmenter": {"name": "classical", "params": {"work_size": 48}}},
        "fit": {"min_images": 4},
        "report": {"panels": 1, "gallery": 1, "thumb": 64},
        **extra,
    }


@pytest.fixture
def no_masks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every image file opened; reading a mask raises."""
    opened: list[str] = []
    real_open = Image.open

    def spy(fp: Any, *a: Any, **k: Any) -> Any:
        opened.append(str(fp))
        if "_mask" in str(fp):
            raise AssertionError(f"a mask was opened: {fp}")
        return real_open(fp, *a, **k)

    def refuse(self: Dataset, i: Any) -> None:
        raise AssertionError(f"load_mask({i!r}) was called")

    monkeypatch.setattr(Image, "open", spy)
    monkeypatch.setattr(Dataset, "load_mask", refuse)
    return opened


def test_fit_on_dataset_never_opens_a_mask(tmp_path: Path, no_masks: list[str]) -> None:
    ds = open_dataset(_data(tmp_path / "d"))
    sf = fit_on_dataset(ds, ds.ids, negative_classes=["normal", "absent"], min_images=4,
                        provenance={"seed": 1})
    assert no_masks and not any("_mask" in p for p in no_masks)
    assert sf.polarity == "bright"
    assert sf.provenance["negative_classes"] == ["normal"] and sf.provenance["images"] == 18
    assert sf.provenance["fit"]["masks_used"] is False
    view = LabelsOnly(ds, ds.ids[:2])
    with pytest.raises(DataError, match="image labels only"):
        view.load_mask(0)


def test_fit_on_dataset_contrasts_the_lesion_classes_without_a_negative_class(tmp_path: Path,
                                                                           no_masks: list[str]) -> None:
    # no normal class and no classifier: benign (oval) against malignant (flat) lesions, class names only
    root = tmp_path / "d"
    for cls, flat in (("benign", False), ("malignant", True)):
        (root / cls).mkdir(parents=True)
        for k in range(10):
            img, mask = scene("bright", 50 * flat + k, flat=flat)
            Image.fromarray(img).save(root / cls / f"{cls} ({k}).png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / cls / f"{cls} ({k})_mask.png")
    ds = open_dataset(root)
    sf = fit_on_dataset(ds, ds.ids, negative_classes=["normal"])
    assert not any("_mask" in p for p in no_masks)
    assert sf.polarity == "bright" and sf.provenance["fit"]["method"].startswith("class-contrast")
    with pytest.raises(DataError, match="needs the classifier's CAMs"):  # evidence asked for, no classifier
        fit_on_dataset(ds, ds.ids, learner="evidence")


def test_cap_per_class_draws_at_most_n_of_each_class_in_order() -> None:
    from samprompt.errors import ConfigError
    from samprompt.runner.fitting import cap_per_class

    ids = [f"i{k}" for k in range(13)]
    labels = ["a"] * 10 + ["b"] * 3
    got = cap_per_class(ids, labels, 4, seed=0)
    assert len(got) == 7 and got[-3:] == ["i10", "i11", "i12"]  # b has fewer than 4: all of them
    assert got == sorted(got, key=ids.index)  # the given order
    assert sum(i in ids[:10] for i in got) == 4
    assert cap_per_class(ids, labels, 4, seed=0) == got  # the same draw for the same seed
    assert {tuple(cap_per_class(ids, labels, 4, seed=s)) for s in range(5)} != {tuple(got)}  # other seeds differ
    assert cap_per_class(ids, labels, 10, seed=0) == ids
    with pytest.raises(ConfigError, match="at least 1"):
        cap_per_class(ids, labels, 0, seed=0)
    with pytest.raises(ConfigError, match="13 ids but 2 labels"):
        cap_per_class(ids, labels[:2], 3, seed=0)


def test_fit_on_dataset_with_max_images_fits_on_the_capped_images(tmp_path: Path, no_masks: list[str]) -> None:
    ds = open_dataset(_data(tmp_path / "d", per_class=8))
    sf = fit_on_dataset(ds, ds.ids, negative_classes=["normal"], min_images=4, max_images=5, seed=3)
    prov = sf.provenance
    assert prov["images"] == 15 and prov["images_offered"] == 24 and prov["max_images"] == 5
    assert prov["fit"]["lesion_images"] == 10 and prov["fit"]["negative_images"] == 5
    assert sf.polarity == "bright" and not any("_mask" in p for p in no_masks)


def test_fit_on_dataset_says_how_many_images_it_needs(tmp_path: Path) -> None:
    ds = open_dataset(_data(tmp_path / "d", per_class=3))
    with pytest.raises(DataError, match="at least 8 lesion images, got 6"):
        fit_on_dataset(ds, ds.ids, negative_classes=["normal"])


def test_run_stage_fits_on_train_writes_the_file_and_reuses_it(tmp_path: Path) -> None:
    from samprompt.runner import load_run_config, run_experiment

    data = _data(tmp_path / "d", per_class=8)
    cfg = _run_config(data, "fit", [{"name": "candidates", "params": {"scorer": "fit", "work_size": 64}},
                                    {"name": "candidates", "label": "busi", "params": {"work_size": 64}}],
                      report={"panels": 2, "gallery": 1, "thumb": 64})
    out = tmp_path / "run"
    run_experiment(load_run_config(cfg), out)
    scorer = out / "scorer.json"
    blob = json.loads(scorer.read_text())
    assert blob["polarity"] == "bright" and blob["provenance"]["split"]["part"] == "train"
    assert blob["provenance"]["images"] == 18  # 75 % of 24: the train part only
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["scorer"]["path"] == str(scorer)
    used = {s.get("label") or s["name"]: s["params"] for s in manifest["pipeline"]["prompts"]}
    assert used["candidates"]["scorer"] == str(scorer) and used["busi"].get("scorer", "busi-v1") == "busi-v1"
    stamp = scorer.stat().st_mtime_ns
    run_experiment(load_run_config(cfg), out)  # resume: reused
    assert scorer.stat().st_mtime_ns == stamp
    summary = (out / "summary.md").read_text()
    assert "WARNING label-only fit" not in summary
    # how the scorer was learnt (12 + 6 train images: below fit.contrast_min_images, multiple-instance)
    assert ("- label-only fit (scorer.json): multiple-instance logistic (image labels), polarity bright, 12 lesion + 6 "
            "negative train images, ") in summary
    # a polarity the labels do not decide is flagged in the summary (here made so by hand)
    blob["provenance"]["fit"]["polarity_margin"] = {"runner_up": "dark", "difference": 0.1, "interval": [-0.2, 0.4],
                                                     "certain": False}
    scorer.write_text(json.dumps(blob))
    run_experiment(load_run_config(cfg), out)
    summary = (out / "summary.md").read_text()
    assert "WARNING label-only fit: polarity bright chosen over dark on" in summary and "[-0.2, 0.4]" in summary
    # a MIL fit whose model of both polarities scored lower says so
    blob["provenance"]["fit"]["polarity_margin"]["both_score"] = -0.9
    scorer.write_text(json.dumps(blob))
    run_experiment(load_run_config(cfg), out)
    assert ("polarity bright chosen over dark (a model of both polarities scored lower) on 12 + 6 images"
            in (out / "summary.md").read_text())
    # ... and so is the MIL fit's use of both polarities
    blob["polarity"] = "both"
    blob["provenance"]["fit"]["polarity_margin"]["by_score"] = "bright"
    scorer.write_text(json.dumps(blob))
    run_experiment(load_run_config(cfg), out)
    summary = (out / "summary.md").read_text()
    assert ("WARNING label-only fit: the labels do not decide between dark and bright on 12 + 6 images (95 % "
            "interval of the difference [-0.2, 0.4] includes 0), and a model of both scored higher, so the fit "
            "used both polarities (bright by score alone)") in summary
    # a change of the fit's settings recomputes from the fit stage on, keeping the classifier
    ckpt = (out / "classifier.pt").stat().st_mtime_ns
    run_experiment(load_run_config({**cfg, "fit": {"min_images": 4, "polarity": "dark"}}), out)
    blob = json.loads(scorer.read_text())
    assert blob["polarity"] == "dark" and blob["provenance"]["fit"]["cam_features"] is False
    assert (out / "classifier.pt").stat().st_mtime_ns == ckpt
    # fit.cam_features reaches the fit (and is a fit-stage change)
    run_experiment(load_run_config({**cfg, "fit": {"min_images": 4, "polarity": "dark", "cam_features": True}}), out)
    assert json.loads(scorer.read_text())["provenance"]["fit"]["cam_features"] is True
    assert (out / "classifier.pt").stat().st_mtime_ns == ckpt
    # fit.max_images reaches the fit, drawn with the run's seed
    run_experiment(load_run_config({**cfg, "fit": {"min_images": 4, "max_images": 4}}), out)
    prov = json.loads(scorer.read_text())["provenance"]
    assert prov["images"] == 12 and prov["images_offered"] == 18 and prov["max_images"] == 4
    assert (out / "classifier.pt").stat().st_mtime_ns == ckpt


def test_cli_fit_prompts(tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
    from samprompt.cli import main
    from samprompt.testing import save_tiny_classifier_checkpoint

    data = _data(tmp_path / "d", per_class=5)
    ds = open_dataset(data)
    make_split(ds, seed=0, fractions=(1.0, 0.0, 0.0)).save(tmp_path / "split.json")
    ckpt = save_tiny_classifier_checkpoint(tmp_path / "c.pt", class_names=["benign", "malignant", "normal"])
    out = tmp_path / "scorer.json"
    opened = request.getfixturevalue("no_masks")  # from here on, reading a mask fails the test
    rc = main(["--no-progress", "fit-prompts", str(data), "--split", str(tmp_path / "split.json"),
               "--checkpoint", str(ckpt), "--out", str(out), "--negative", "normal", "--min-images", "4"])
    assert rc == 0, capsys.readouterr().err
    blob = json.loads(out.read_text())
    assert blob["polarity"] == "bright" and blob["provenance"]["fit"]["cam_features"] is False
    assert "polarity bright" in capsys.readouterr().out
    assert opened and not any("_mask" in p for p in opened)
    rc = main(["--no-progress", "fit-prompts", str(data), "--split", str(tmp_path / "split.json"),
               "--checkpoint", str(ckpt), "--out", str(out), "--negative", "normal", "--min-images", "4",
               "--cam-features"])
    assert rc == 0 and json.loads(out.read_text())["provenance"]["fit"]["cam_features"] is True
    capsys.readouterr()
    rc = main(["--no-progress", "fit-prompts", str(data), "--split", str(tmp_path / "split.json"),
               "--checkpoint", str(ckpt), "--out", str(out), "--negative", "normal"])
    assert rc == 2 and "at least 8 images of the negative class, got 5" in capsys.readouterr().err


def test_fit_max_images_below_min_images_is_refused_at_the_door(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from samprompt.cli import main
    from samprompt.proposals.fit import CONTRAST_MAX_IMAGES
    from samprompt.runner.config import FitSpec

    assert FitSpec().contrast_max_images == CONTRAST_MAX_IMAGES == 500
    with pytest.raises(ValueError, match=r"contrast_max_images \(10\) must be at least min_images and "
                                         r"contrast_min_images \(20\)"):
        FitSpec(contrast_max_images=10)
    assert FitSpec(contrast_max_images=10, contrast_min_images=None).contrast_max_images == 10
    assert FitSpec(contrast_max_images=None).contrast_max_images is None
    from samprompt.errors import ConfigError
    from samprompt.runner.fitting import fit_on_dataset

    with pytest.raises(ConfigError, match=r"contrast_max_images \(10\) must be at least .* \(20\)"):
        fit_on_dataset(object(), ["never read"], contrast_max_images=10)  # type: ignore[arg-type]  # before any image

    with pytest.raises(ValueError, match=r"max_images \(4\) must be at least min_images \(8\)"):
        FitSpec(max_images=4)
    assert FitSpec(max_images=4, min_images=4).max_images == 4
    rc = main(["--no-progress", "fit-prompts", str(tmp_path / "absent"), "--split", str(tmp_path / "s.json"),
               "--out", str(tmp_path / "o.json"), "--max-images", "3"])
    assert rc == 2 and "--max-images (3) must be at least --min-images (8)" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_fit_section_needs_a_strategy_that_uses_it(tmp_path: Path) -> None:
    from samprompt.errors import ConfigError
    from samprompt.runner import load_run_config
    from samprompt.runner.stages import changed_stage

    data = _data(tmp_path / "d", per_class=1)
    base = {"data": {"path": str(data)}, "classifier": {"task": "multiclass"},
            "pipeline": {"prompts": [{"name": "candidates"}]}}
    with pytest.raises(ConfigError, match="fit needs a prompt strategy with scorer: fit"):
        load_run_config({**base, "fit": {}})
    fitted = {**base, "pipeline": {"prompts": [{"name": "candidates", "params": {"scorer": "fit"}}]}}
    a = load_run_config(fitted).identity()
    b = load_run_config({**fitted, "fit": {"polarity": "bright"}}).identity()
    assert changed_stage(a, b)[0] == "fit"
    c = load_run_config({**fitted, "pipeline": {**fitted["pipeline"], "cam": {"name": "scorecam"}}}).identity()
    assert changed_stage(a, c)[0] == "fit"  # the CAM is the fit's evidence
    d = load_run_config({**base, "pipeline": {**base["pipeline"], "cam": {"name": "scorecam"}}}).identity()
    assert changed_stage(load_run_config(base).identity(), d)[0] == "images"  # no fit: as before


def test_selftrain_with_a_fitted_scorer(tmp_path: Path) -> None:
    """Self-training with ``scorer: fit``: the door asks for the agreement weight (a fitted file has none);
    given it, the fit stage runs first, the self-training pseudo masks come from the fitted scorer, and
    a change of the fit's settings recomputes the self-training net too (it depends on the fit)."""
    from samprompt.errors import ConfigError
    from samprompt.runner import load_run_config, run_experiment

    data = _data(tmp_path / "d", per_class=8)
    cfg = _run_config(data, "fit-st", [{"name": "candidates", "params": {"scorer": "fit", "work_size": 64}}],
                      limit=2, selftrain={"epochs": 1, "size": 32, "batch_size": 4})
    with pytest.raises(ConfigError, match=r"selftrain\.weight must be given.*'candidates'.*fitted scorer"):
        load_run_config(cfg)
    cfg["selftrain"]["weight"] = 3.0
    out = tmp_path / "run"
    run_experiment(load_run_config(cfg), out)
    net, scorer = out / "selftrain.pt", out / "scorer.json"
    assert net.is_file() and scorer.is_file() and net.stat().st_mtime_ns >= scorer.stat().st_mtime_ns
    used = json.loads((out / "manifest.json").read_text())["pipeline"]["prompts"][0]["params"]
    assert used["agreement_net"] == str(net) and used["agreement_weight"] == 3.0 and used["scorer"] == str(scorer)
    stamp = net.stat().st_mtime_ns
    run_experiment(load_run_config({**cfg, "fit": {"min_images": 4, "polarity": "dark"}}), out)
    assert json.loads(scorer.read_text())["polarity"] == "dark" and net.stat().st_mtime_ns != stamp


def test_run_fits_the_masker_threshold_on_val_without_masks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from samprompt.runner import fitting, load_run_config, run_experiment

    data = _data(tmp_path / "d", per_class=8)
    cfg = _run_config(data, "thr", [{"name": "box"}], fractions=(0.5, 0.25, 0.25), value="fit")
    seen: list[int] = []
    real = fitting.LabelsOnly

    def spy(dataset: Any, ids: Any) -> Any:  # every image the fits read, read without masks
        seen.append(len(ids))
        return real(dataset, ids)

    monkeypatch.setattr(fitting, "LabelsOnly", spy)
    out = tmp_path / "run"
    run_experiment(load_run_config(cfg), out)
    blob = json.loads((out / "threshold.json").read_text())
    lesion_val = [i for i in json.loads((out / "split.json").read_text())["val"] if not i.startswith("normal/")]
    assert blob["part"] == "val" and blob["lesion_images"] == len(lesion_val) == 4 and 0 < blob["images"] <= 4
    assert blob["value"] in [round(0.05 * k, 2) for k in range(1, 20)] and len(blob["curve"]) == 19
    assert blob["curve"][f"{blob['value']:.2f}"] == max(blob["curve"].values())
    assert blob["identity"]["scorer_sha256"] and blob["identity"]["masker"] == {}
    assert seen[-1] == 4  # the threshold fit's view: the val lesion images, through LabelsOnly
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["threshold"]["value"] == blob["value"]
    assert manifest["pipeline"]["masker"]["params"]["value"] == blob["value"]  # the pipeline used the number
    assert (out / "scorer.json").exists()  # the reference regions' scorer, fitted though no prompt names it
    assert f"(fitted: {blob['value']:.2f} on {blob['images']} val lesion images" in (out / "summary.md").read_text()
    stamp = (out / "threshold.json").stat().st_mtime_ns
    run_experiment(load_run_config(cfg), out)  # resume: reused
    assert (out / "threshold.json").stat().st_mtime_ns == stamp
    # another masker setting: the threshold is fitted again for it
    cfg["pipeline"]["masker"]["params"]["keep"] = "all"
    run_experiment(load_run_config(cfg), out)
    assert json.loads((out / "threshold.json").read_text())["identity"]["masker"] == {"keep": "all"}


def test_fitted_threshold_config_errors(tmp_path: Path) -> None:
    from samprompt.errors import ConfigError
    from samprompt.runner import load_run_config

    base = {"name": "t", "data": {"path": str(tmp_path)}, "classifier": {"checkpoint": str(tmp_path / "c.pt")},
            "pipeline": {"masker": {"name": "threshold", "params": {"value": "fit"}}, "prompts": [{"name": "box"}]}}
    with pytest.raises(ConfigError, match="fit.cam_features to false"):
        load_run_config({**base, "fit": {"cam_features": True}})
    assert load_run_config({**base, "fit": {"min_images": 4}}).fits_threshold  # a fit section is allowed
    with pytest.raises(ConfigError, match="pipeline.masker.params.value"):
        load_run_config({**base, "pipeline": {"masker": {"name": "threshold", "params": {"value": "fitt"}},
                                              "prompts": [{"name": "box"}]}})
