"""NIfTI export: label volumes on the inputs' voxel grid (shape, affine), slices where they came from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from samprompt.export import RunOutputs, export_run
from samprompt.runner.outputs import read_png
from samprompt.runner.records import mask_path

nib = pytest.importorskip("nibabel", reason="NIfTI export needs the 'medical' extra (nibabel)")


def test_label_volumes_align_with_the_input_volumes(nifti_run: Path, tmp_path: Path) -> None:
    out = export_run(nifti_run, "nifti", tmp_path / "labels", "box")
    index = json.loads((out / "index.json").read_text(encoding="utf-8"))
    run = RunOutputs(nifti_run)
    assert len(run.images) == 32 and len(index["files"]) == 8
    by_file: dict[str, list[str]] = {}
    for im in run.images:
        by_file.setdefault(im.id.split("#")[0], []).append(im.id)
    for name, entry in index["files"].items():
        src = nib.load(entry["source"])
        lab = nib.load(str(out / name))
        assert lab.shape == src.shape == (40, 32, 4)
        assert np.allclose(lab.affine, src.affine)
        assert entry["axis"] == 2 and entry["slices"] == [0, 1, 2, 3]
        data = np.asarray(lab.dataobj)
        assert data.dtype == np.uint8
        for sid in by_file[entry["id"]]:
            k = int(sid.rsplit("#z", 1)[1])
            expected = read_png(mask_path(nifti_run, "box", "cam", sid)) > 0  # (H, W) = (32, 40)
            assert np.array_equal(data[:, :, k] == 1, expected.T)
    assert any(np.asarray(nib.load(str(out / n)).dataobj).any() for n in index["files"])


def test_dicom_inputs_get_the_affine_of_their_position_tags(dicom_run: Path, tmp_path: Path) -> None:
    out = export_run(dicom_run, "nifti", tmp_path / "labels", "box")
    index = json.loads((out / "index.json").read_text(encoding="utf-8"))
    run = RunOutputs(dicom_run)
    assert len(run.images) == 24 and len(index["files"]) == 8
    # DICOM LPS -> NIfTI RAS: voxel i (column) 0.7 mm along -x, j (row) 0.5 mm along -y, k (frame) 2 mm along z
    expected = np.array([[-0.7, 0, 0, -10], [0, -0.5, 0, -20], [0, 0, 2, 30], [0, 0, 0, 1]])
    written = 0
    for name, entry in index["files"].items():
        lab = nib.load(str(out / name))
        assert lab.shape == (44, 36, 3) and np.allclose(lab.affine, expected)
        assert nib.aff2axcodes(lab.affine) == ("L", "P", "S")
        data = np.asarray(lab.dataobj)
        for f in entry["slices"]:
            sid = f"{entry['id']}#f{f:03d}"
            assert np.array_equal(data[:, :, f] == 1, read_png(mask_path(dicom_run, "box", "cam", sid)).T > 0)
            written += 1
    assert written == 24
