"""DICOM input: rescale, windowing, MONOCHROME1, multi-frame files, masks, bad files, audit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", reason="DICOM input needs the 'medical' extra (pydicom)")

from medical_helpers import write_dicom

from samprompt.data import audit_dataset, open_dataset
from samprompt.data.medical_geometry import slice_geometry
from samprompt.errors import DataError


def _ramp(h: int = 6, w: int = 8) -> np.ndarray:
    return (np.arange(h * w, dtype=np.int16).reshape(h, w) * 10 - 100).astype(np.int16)


def test_rescale_and_window_give_the_stated_uint8_mapping(tmp_path: Path) -> None:
    raw = _ramp()
    write_dicom(tmp_path / "ct" / "a.dcm", raw, RescaleSlope=2, RescaleIntercept=-50,
                WindowCenter=[100, 40], WindowWidth=[400, 80])  # multi-valued: the first pair is used
    ds = open_dataset(tmp_path)
    img = ds.load_image("ct/a")
    assert img.shape == (6, 8, 3) and img.dtype == np.uint8
    hu = raw.astype(np.float64) * 2 - 50
    expected = np.clip(np.rint((hu - (100 - 200)) * 255 / 400), 0, 255).astype(np.uint8)
    assert np.array_equal(img[:, :, 0], expected)
    assert np.array_equal(img[:, :, 1], img[:, :, 2])
    assert ds.load_mask("ct/a") is None


def test_no_window_uses_min_max_and_monochrome1_is_inverted(tmp_path: Path) -> None:
    raw = _ramp()
    write_dicom(tmp_path / "c" / "m2.dcm", raw)
    write_dicom(tmp_path / "c" / "m1.dcm", raw, PhotometricInterpretation="MONOCHROME1")
    ds = open_dataset(tmp_path)
    m2, m1 = ds.load_image("c/m2")[:, :, 0], ds.load_image("c/m1")[:, :, 0]
    assert m2[0, 0] == 0 and m2[-1, -1] == 255
    assert np.array_equal(m1.astype(int), 255 - m2.astype(int))


def test_multiframe_file_gives_one_image_per_frame_with_its_mask_frame(tmp_path: Path) -> None:
    frames = np.stack([np.full((5, 7), 10 * (k + 1), np.uint8) for k in range(3)])
    frames[:, 0, 0] = 0  # so min..max differs per frame
    masks = np.zeros((3, 5, 7), np.uint8)
    masks[1, 2:4, 3:6] = 1
    write_dicom(tmp_path / "lesion" / "cine.dcm", frames)
    write_dicom(tmp_path / "lesion" / "cine_mask.dcm", masks)
    ds = open_dataset(tmp_path)
    assert ds.ids == ["lesion/cine#f000", "lesion/cine#f001", "lesion/cine#f002"]
    assert {s.group for s in ds} == {"lesion/cine"}  # frames of one file share a split
    for k in range(3):
        assert ds.load_image(k).shape == (5, 7, 3)
        m = ds.load_mask(k)
        assert m is not None and np.array_equal(m, masks[k] != 0)
    geo = slice_geometry(ds[2])
    assert (geo.kind, geo.shape, geo.axis, geo.index) == ("dicom", (7, 5, 3), 2, 2)


def test_mask_with_other_frame_count_is_a_data_error_naming_both_files(tmp_path: Path) -> None:
    write_dicom(tmp_path / "c" / "x.dcm", np.zeros((2, 4, 4), np.uint8))
    write_dicom(tmp_path / "c" / "x_mask.dcm", np.zeros((3, 4, 4), np.uint8))
    ds = open_dataset(tmp_path)
    with pytest.raises(DataError, match=r"x_mask\.dcm.*x\.dcm"):
        ds.load_mask("c/x#f000")


def test_png_mask_of_a_single_frame_dicom(tmp_path: Path) -> None:
    from PIL import Image

    write_dicom(tmp_path / "c" / "y.dcm", np.zeros((4, 6), np.uint8))
    m = np.zeros((4, 6), np.uint8)
    m[1, 2] = 255
    Image.fromarray(m).save(tmp_path / "c" / "y_mask.png")
    got = open_dataset(tmp_path).load_mask("c/y")
    assert got is not None and got.sum() == 1 and got[1, 2]


def test_broken_dicom_is_a_recorded_failure_not_a_crash(tmp_path: Path) -> None:
    write_dicom(tmp_path / "c" / "good.dcm", _ramp())
    (tmp_path / "c" / "bad.dcm").write_bytes(b"not a dicom file at all")
    ds = open_dataset(tmp_path)
    assert ds.ids == ["c/bad", "c/good"]
    with pytest.raises(DataError, match=r"bad\.dcm"):
        ds.load_image("c/bad")
    report = audit_dataset(ds, workers=1)
    assert [i for i, _ in report.problems] == ["c/bad"]
    assert "bad.dcm" in report.problems[0][1]


def test_manifest_and_audit_sizes(tmp_path: Path) -> None:
    write_dicom(tmp_path / "img" / "p1.dcm", np.zeros((2, 6, 9), np.uint8))
    write_dicom(tmp_path / "img" / "p2.dcm", np.ones((5, 4), np.uint8))
    (tmp_path / "m.csv").write_text("image,label\nimg/p1.dcm,a\nimg/p2.dcm,b\n", encoding="utf-8")
    ds = open_dataset(tmp_path / "m.csv")
    assert ds.ids == ["img/p1#f000", "img/p1#f001", "img/p2"]
    d = audit_dataset(ds, workers=1).to_dict()
    assert d["n_samples"] == 3 and d["problems"] == []
    assert d["image_size"]["width"] == {"min": 4, "median": 9, "max": 9}
    assert d["image_size"]["height"] == {"min": 5, "median": 6, "max": 6}
