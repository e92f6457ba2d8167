"""nnU-Net v2 raw data set from a run: layout, dataset.json, images and pseudo labels."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samprompt.data import open_dataset
from samprompt.errors import ConfigError
from samprompt.export import RunOutputs, export_run
from samprompt.runner.outputs import read_png
from samprompt.runner.records import mask_path


def test_layout_dataset_json_and_labels(png_run: Path, tmp_path: Path) -> None:
    out = export_run(png_run, "nnunet", tmp_path / "Dataset501_Pseudo", "box_center_point")
    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    run = RunOutputs(png_run)
    assert meta["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    assert meta["labels"] == {"background": 0, "lesion": 1}
    assert meta["numTraining"] == len(run.images) == 6 and meta["file_ending"] == ".png"
    ds = open_dataset(run.config["data"]["path"])
    cases = json.loads((out / "cases.json").read_text(encoding="utf-8"))
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == sorted(f"{c}_0000.png" for c in cases)
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == sorted(f"{c}.png" for c in cases)
    for im in run.images:
        image = np.asarray(Image.open(out / "imagesTr" / f"{im.stem}_0000.png"))
        assert image.shape == (64, 80, 3) and np.array_equal(image, ds.load_image(im.id))
        lab = np.asarray(Image.open(out / "labelsTr" / f"{im.stem}.png"))
        expected = read_png(mask_path(png_run, "box_center_point", "cam", im.id)) > 0
        assert lab.dtype == np.uint8 and set(np.unique(lab)) <= {0, 1}
        assert np.array_equal(lab == 1, expected)
        assert cases[im.stem] == {"id": im.id, "label": im.label, "split": "test"}


def test_labels_per_class(png_run: Path, tmp_path: Path) -> None:
    out = export_run(png_run, "nnunet", tmp_path / "Dataset502_X", labels="class")
    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert meta["labels"] == {"background": 0, "benign": 1, "malignant": 2, "normal": 3}
    run = RunOutputs(png_run)
    seen = set()
    for im in run.images:
        lab = np.asarray(Image.open(out / "labelsTr" / f"{im.stem}.png"))
        values = set(np.unique(lab).tolist()) - {0}
        assert values <= {meta["labels"][im.label]}
        seen |= values
    assert {1, 2} <= seen


def test_missing_optional_packages_are_config_errors(png_run: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(ConfigError, match=r"pycocotools.*samprompt\[coco\]"):
        export_run(png_run, "coco", tmp_path)
    with pytest.raises(ConfigError, match=r"nibabel.*samprompt\[medical\]"):
        export_run(png_run, "nifti", tmp_path)
