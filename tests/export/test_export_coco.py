"""COCO export: RLE annotations decode to the run's masks bit for bit; categories, files, options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from samprompt.errors import ConfigError, DataError
from samprompt.export import RunOutputs, export_run
from samprompt.runner.outputs import read_png
from samprompt.runner.records import mask_path

mask_api = pytest.importorskip("pycocotools.mask", reason="COCO export needs the 'coco' extra (pycocotools)")
# pycocotools' decode calls np.array(copy=False) on its own object: numpy 2 warns, the result is right
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _decode(ann: dict) -> np.ndarray:
    rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode("ascii")}
    return mask_api.decode(rle).astype(bool)


@pytest.mark.parametrize("strategy", [None, "center_point"])
def test_rle_decodes_to_the_run_masks_bit_for_bit(png_run: Path, tmp_path: Path, strategy: str | None) -> None:
    path = export_run(png_run, "coco", tmp_path / "coco", strategy)
    doc = json.loads(path.read_text(encoding="utf-8"))
    run = RunOutputs(png_run)
    chosen = strategy or run.strategies[0]
    assert chosen == (strategy or "box") and doc["info"]["strategy"] == chosen
    assert [c["name"] for c in doc["categories"]] == ["benign", "malignant", "normal"]
    by_image = {a["image_id"]: a for a in doc["annotations"]}
    assert len(doc["images"]) == len(run.images) == 6
    non_empty = 0
    for info, im in zip(doc["images"], run.images, strict=True):
        assert info["samprompt_id"] == im.id and info["file_name"] == im.id + ".png"
        assert (info["height"], info["width"]) == (64, 80)
        expected = read_png(mask_path(png_run, chosen, "cam", im.id)) > 0
        if not expected.any():
            assert info["id"] not in by_image
            continue
        non_empty += 1
        ann = by_image[info["id"]]
        got = _decode(ann)
        assert got.dtype == bool and np.array_equal(got, expected)
        assert ann["area"] == int(expected.sum())
        ys, xs = np.nonzero(expected)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        cat = doc["categories"][ann["category_id"] - 1]["name"]
        assert cat == im.label
    assert non_empty >= 2 and len(doc["annotations"]) == non_empty


def test_gt_source_and_bad_options(png_run: Path, tmp_path: Path) -> None:
    doc = json.loads(export_run(png_run, "coco", tmp_path, source="gt").read_text(encoding="utf-8"))
    assert doc["info"]["source"] == "gt"
    with pytest.raises(ConfigError, match=r"'nope'.*\['box', 'center_point', 'box_center_point'\]"):
        export_run(png_run, "coco", tmp_path, "nope")
    with pytest.raises(ConfigError, match="'voc'"):
        export_run(png_run, "voc", tmp_path)
    with pytest.raises(DataError, match="not a run folder"):
        export_run(tmp_path / "missing", "coco", tmp_path)


def test_cli_export(png_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from samprompt.cli import main

    assert main(["export", str(png_run), "--format", "coco", "--out", str(tmp_path), "--strategy", "box"]) == 0
    assert (tmp_path / "annotations.json").is_file()
    assert "annotations.json" in capsys.readouterr().out
    assert main(["export", str(png_run), "--format", "nifti", "--out", str(tmp_path / "n")]) == 2
    err = capsys.readouterr().err
    assert "NIfTI or DICOM inputs" in err and ".png" in err
