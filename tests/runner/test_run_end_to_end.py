"""End to end: a run folder's contents and values, checked against recomputation from the saved files."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from runner_helpers import fast_config, make_dataset

from samprompt import ConfigError
from samprompt.data import Split, open_dataset
from samprompt.metrics import dice, iou, pixel_accuracy, summarize
from samprompt.regions import box_iou, ellipse_in_box, mask_to_box
from samprompt.runner import load_run_config, run_experiment
from samprompt.runner.outputs import safe_name

STRATEGIES = ["box", "center_point", "box_center_point"]


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "metrics.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _f(v: str) -> float:
    return float(v) if v != "" else math.nan


def test_run_folder_layout(finished_run: tuple[Path, object]) -> None:
    out, res = finished_run
    for name in ("config.json", "manifest.json", "split.json", "classifier.pt", "train_result.json", "metrics.csv",
                 "prompts.jsonl", "failures.jsonl", "names.json", "summary.csv", "summary.md", "report.html"):
        assert (out / name).is_file(), name
    assert res.complete and res.failures == [] and res.done == res.total == 6
    split = json.loads((out / "split.json").read_text())
    assert len(split["test"]) == 6 and len(split["train"]) == 6
    manifest = json.loads((out / "manifest.json").read_text())
    ckpt_sha = hashlib.sha256((out / "classifier.pt").read_bytes()).hexdigest()
    assert manifest["classifier"]["sha256"] == ckpt_sha
    assert manifest["seed"] == 0 and manifest["device"] == "cpu"
    assert manifest["data"]["fingerprint"] == open_dataset(json.loads((out / "config.json").read_text())["data"]["path"]).fingerprint()
    for key in ("python", "torch", "samprompt", "torchcam", "segment-anything"):
        assert key in manifest["versions"]
    assert manifest["started"] <= manifest["finished"]
    assert (out / "failures.jsonl").read_text() == ""
    # no temporary files are left behind by the atomic writes
    assert not [p for p in out.rglob("*.tmp")]


def test_metrics_equal_recomputation_from_saved_masks(finished_run: tuple[Path, object], synth_data: Path) -> None:
    out, _ = finished_run
    ds = open_dataset(synth_data)
    split = Split.load(out / "split.json", ds)
    rows = _rows(out)
    assert len(rows) == 6 * len(STRATEGIES) * 2
    prompts = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert len(prompts) == len(rows)
    by_key = {(p["image"], p["strategy"], p["source"]): p["prompt"] for p in prompts}
    for r in rows:
        sid = r["image"]
        assert r["split"] == "test" and sid in split.test
        gt = ds.load_mask(sid)
        path = out / "masks" / r["strategy"] / r["source"] / f"{safe_name(sid)}.png"
        saved = np.asarray(Image.open(path))
        assert saved.dtype == np.uint8 and set(np.unique(saved)) <= {0, 255}
        pred = saved > 0
        assert _f(r["dice"]) == pytest.approx(dice(pred, gt), abs=1e-6)
        assert _f(r["iou"]) == pytest.approx(iou(pred, gt), abs=1e-6)
        assert _f(r["pixel_accuracy"]) == pytest.approx(pixel_accuracy(pred, gt), abs=1e-6)
        assert _f(r["pred_fraction"]) == pytest.approx(pred.mean(), abs=1e-6)
        prompt = by_key[(sid, r["strategy"], r["source"])]
        assert r["has_prompt"] == ("1" if prompt else "0")
        if gt.any() and prompt and prompt["box"] is not None:
            box = np.array(prompt["box"], np.float32)
            assert _f(r["box_iou"]) == pytest.approx(box_iou(box, mask_to_box(gt)), abs=1e-6)
            prior = ellipse_in_box(box, *gt.shape)
            assert _f(r["box_prior_dice"]) == pytest.approx(dice(prior, gt), abs=1e-6)
        if not gt.any():
            assert r["gt_empty"] == "1" and r["box_iou"] == "" and r["points_inside"] == ""


def test_gt_baseline_on_the_same_images(finished_run: tuple[Path, object]) -> None:
    out, _ = finished_run
    rows = _rows(out)
    for s in STRATEGIES:
        cam = {r["image"] for r in rows if r["strategy"] == s and r["source"] == "cam"}
        gt = {r["image"] for r in rows if r["strategy"] == s and r["source"] == "gt"}
        assert cam == gt and len(cam) == 6
    # a prompt from the ground truth's own box has box IoU 1 with it (margin 0 strategy)
    for r in rows:
        if r["source"] == "gt" and r["strategy"] == "box_center_point" and r["gt_empty"] == "0":
            assert _f(r["box_iou"]) == pytest.approx(1.0) and _f(r["points_inside"]) in (0.0, 1.0)


def test_summary_matches_metrics(finished_run: tuple[Path, object]) -> None:
    out, _ = finished_run
    rows = _rows(out)
    with (out / "summary.csv").open() as f:
        table = list(csv.DictReader(f))
    lesion = [t for t in table if t["group"] == "lesion" and t["class"] == "benign" and t["strategy"] == "box"]
    assert len(lesion) == 1
    vals = [_f(r["dice"]) for r in rows if r["label"] == "benign" and r["strategy"] == "box" and r["source"] == "cam"]
    gts = [_f(r["dice"]) for r in rows if r["label"] == "benign" and r["strategy"] == "box" and r["source"] == "gt"]
    s = summarize(vals, seed=0)
    assert float(lesion[0]["cam_dice"]) == pytest.approx(s.mean, abs=1e-6)
    assert float(lesion[0]["cam_dice_ci_low"]) == pytest.approx(s.ci_low, abs=1e-6)
    if np.mean(gts) > 0:
        assert float(lesion[0]["dice_pct_of_gt"]) == pytest.approx(100 * np.mean(vals) / np.mean(gts), abs=1e-3)
    normal = [t for t in table if t["group"] == "no_lesion" and t["strategy"] == "box"]
    fp = [_f(r["pred_fraction"]) for r in rows if r["label"] == "normal" and r["strategy"] == "box" and r["source"] == "cam"]
    assert float(normal[0]["fp_area"]) == pytest.approx(np.mean(fp), abs=1e-6)
    md = (out / "summary.md").read_text()
    assert "| benign | box |" in md and "False positives" in md


def test_report_is_self_contained(finished_run: tuple[Path, object]) -> None:
    out, _ = finished_run
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") >= 3 + 1 + 2  # panels, histogram, galleries
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert (out / "report.html").stat().st_size < 400_000


def test_same_seed_gives_identical_metrics(synth_data: Path, tmp_path: Path, finished_run: tuple[Path, object]) -> None:
    out, _ = finished_run
    run_experiment(load_run_config(fast_config(synth_data)), tmp_path / "again")
    assert (tmp_path / "again" / "metrics.csv").read_bytes() == (out / "metrics.csv").read_bytes()


def test_safe_output_names_for_unusual_ids(tmp_path: Path) -> None:
    names = {"benign": ["a b (1)", "naïve été", "x..y"], "malignant": ["m1", "..m2x"], "normal": ["n 1", "ñ"]}
    data = make_dataset(tmp_path / "odd", names=names)
    cfg = fast_config(data, split={"fractions": [0.5, 0.0, 0.5], "use": "all"})
    res = run_experiment(load_run_config(cfg), tmp_path / "run")
    out = tmp_path / "run"
    mapping = json.loads((out / "names.json").read_text(encoding="utf-8"))
    assert "benign/naïve été" in mapping and "benign/a b (1)" in mapping
    for stem in mapping.values():
        assert stem.isascii() and "/" not in stem and not stem.startswith(".")
    files = [p for p in out.rglob("*") if p.is_file()]
    assert all(out in p.resolve().parents for p in files)
    assert all(p.name.isascii() for p in files)
    assert res.done == len(mapping)


def test_skip_classes_in_a_run(synth_data: Path, tmp_path: Path, finished_run: tuple[Path, object]) -> None:
    """Images predicted in ``skip_classes`` get empty CAM masks (a miss on lesion images), others are unchanged."""
    base_out, _ = finished_run
    cfg = fast_config(synth_data)
    cfg["pipeline"]["skip_classes"] = ["normal", "benign", "malignant"]  # every image is skipped
    out = tmp_path / "skip"
    run_experiment(load_run_config(cfg), out)
    rows = _rows(out)
    cam_rows = [r for r in rows if r["source"] == "cam"]
    assert cam_rows and all(r["has_prompt"] == "0" and float(r["pred_fraction"]) == 0.0 for r in cam_rows)
    gt_rows = {(r["image"], r["strategy"]): r for r in rows if r["source"] == "gt"}
    base_gt = {(r["image"], r["strategy"]): r for r in _rows(base_out) if r["source"] == "gt"}
    assert gt_rows == base_gt  # the ground-truth baseline is not affected
    records = [json.loads(p.read_text()) for p in (out / "records").rglob("*.json")]
    assert records and all(r["skipped"] for r in records)
    summary = (out / "summary.md").read_text()
    assert "skipped (predicted class in skip_classes" in summary and "normal 2 / 2" in summary

    cfg["pipeline"]["skip_classes"] = ["Normal"]
    with pytest.raises(ConfigError, match=r"pipeline\.skip_classes: unknown class name"):
        run_experiment(load_run_config(cfg), tmp_path / "bad")


def test_workers_and_overlap_change_nothing_and_are_not_part_of_the_identity(
    synth_data: Path, tmp_path: Path, finished_run: tuple[Path, object]
) -> None:
    """``workers`` (read-ahead and PNG-encoding threads), ``pipeline.overlap`` and ``pipeline.prompt_workers``
    (processes) give byte-identical outputs, and a run folder made with other values of them is resumed,
    not refused."""
    base_out, _ = finished_run
    pngs = [p for folder in ("masks", "cams", "pseudo_masks") for p in sorted((base_out / folder).rglob("*.png"))]
    assert len(pngs) > 20
    for name, overlap, prompt_workers in (("serial", False, 0), ("processes", True, 2)):
        cfg = fast_config(synth_data, workers=0)
        cfg["pipeline"].update(overlap=overlap, prompt_workers=prompt_workers)
        assert cfg["batch_size"] > 1  # so that the processes are used
        out = tmp_path / name
        run_experiment(load_run_config(cfg), out)
        assert (out / "metrics.csv").read_bytes() == (base_out / "metrics.csv").read_bytes()
        for p in pngs:
            assert (out / p.relative_to(base_out)).read_bytes() == p.read_bytes()
        assert json.loads((out / "config.json").read_text()) == json.loads((base_out / "config.json").read_text())
    again = run_experiment(load_run_config(fast_config(synth_data, workers=4)), out)  # resumes: nothing to do
    assert again.computed == 0


def test_selftrain_trains_once_and_feeds_the_candidates_strategy(synth_data: Path, tmp_path: Path) -> None:
    """``selftrain``: pseudo masks of the train lesion images, a net saved in the run folder, handed to
    every ``candidates`` strategy as ``agreement_net``; a resumed run reuses the net."""
    cfg = fast_config(synth_data, selftrain={"epochs": 2, "size": 32, "batch_size": 4})
    cfg["pipeline"]["prompts"] = [{"name": "candidates", "params": {"work_size": 48}}, {"name": "box"}]
    out = tmp_path / "st"
    steps: list[str] = []
    res = run_experiment(load_run_config(cfg), out, progress=lambda step, done, total: steps.append(step))
    assert res.complete and not res.failures
    net = out / "selftrain.pt"
    assert net.is_file() and {"pseudo masks", "self-training"} <= set(steps)
    saved = json.loads((out / "manifest.json").read_text())["pipeline"]["prompts"]
    params = {p.get("label") or p["name"]: p.get("params", {}) for p in saved}
    assert params["candidates"]["agreement_net"] == str(net) and params["candidates"]["agreement_weight"] == 8.0
    assert "agreement_net" not in params["box"]
    stamp = net.stat().st_mtime_ns
    (out / "records").joinpath(next(iter(sorted(p.name for p in (out / "records").iterdir())))).unlink()
    again = run_experiment(load_run_config(cfg), out)  # resume: one image again, the net is reused
    assert again.computed == 1 and net.stat().st_mtime_ns == stamp


def test_selftrain_config_errors(synth_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="selftrain needs a prompt strategy that takes a self-training net"):
        load_run_config(fast_config(synth_data, selftrain={}))
    cfg = fast_config(synth_data, selftrain={"empty_classes": ["healthy"], "epochs": 1})
    cfg["pipeline"]["prompts"] = [{"name": "candidates"}]
    with pytest.raises(ConfigError, match=r"selftrain.empty_classes: unknown class name\(s\) \['healthy'\]"):
        run_experiment(load_run_config(cfg), tmp_path / "bad")
