"""NIfTI input: slices along an axis, masks slice by slice, windowing, geometry, bad files, splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

nib = pytest.importorskip("nibabel", reason="NIfTI input needs the 'medical' extra (nibabel)")

from samprompt.data import audit_dataset, make_split, open_dataset
from samprompt.data.medical_geometry import slice_geometry
from samprompt.errors import DataError

AFFINE = np.array([[0.0, 0.0, -2.0, 10.0], [0.5, 0.0, 0.0, -3.0], [0.0, 0.7, 0.0, 4.0], [0, 0, 0, 1.0]])


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _volume(shape: tuple[int, ...] = (5, 4, 3)) -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)


def test_volume_slices_and_their_masks(tmp_path: Path) -> None:
    vol = _volume()
    seg = np.zeros(vol.shape, np.uint8)
    seg[1:3, 2, 1] = 1
    write_nifti(tmp_path / "lesion" / "v.nii.gz", vol)
    write_nifti(tmp_path / "lesion" / "v_mask.nii.gz", seg)
    ds = open_dataset(tmp_path)
    assert ds.ids == ["lesion/v#z000", "lesion/v#z001", "lesion/v#z002"]
    for k in range(3):
        img = ds.load_image(k)
        plane = vol[:, :, k].T  # rows = voxel axis 1, columns = voxel axis 0
        assert img.shape == (4, 5, 3)
        expected = np.rint((plane - plane.min()) * 255 / (plane.max() - plane.min())).astype(np.uint8)
        assert np.array_equal(img[:, :, 0], expected)
        m = ds.load_mask(k)
        assert m is not None and np.array_equal(m, seg[:, :, k].T != 0)
    assert int(ds.load_mask(1).sum()) == 2  # type: ignore[union-attr]
    geo = slice_geometry(ds[1])
    assert (geo.kind, geo.shape, geo.axis, geo.index) == ("nifti", (5, 4, 3), 2, 1)
    assert np.allclose(np.array(geo.affine), AFFINE) and geo.axcodes == ("A", "S", "L")  # voxel i -> +y, j -> +z, k -> -x


def test_manifest_axis_column_and_cal_window(tmp_path: Path) -> None:
    vol = _volume((3, 4, 2))
    img = nib.Nifti1Image(vol, AFFINE)
    img.header["cal_min"], img.header["cal_max"] = 0.0, 10.0
    (tmp_path / "d").mkdir()
    nib.save(img, str(tmp_path / "d" / "a.nii"))
    (tmp_path / "m.csv").write_text("image,label,axis\nd/a.nii,x,X\n", encoding="utf-8")
    ds = open_dataset(tmp_path / "m.csv")
    assert ds.ids == ["d/a#x000", "d/a#x001", "d/a#x002"]
    got = ds.load_image("d/a#x001")[:, :, 0]
    plane = vol[1, :, :].T  # (2, 4): rows = voxel axis 2, columns = voxel axis 1
    assert got.shape == (2, 4)
    assert np.array_equal(got, np.clip(np.rint(plane * 25.5), 0, 255).astype(np.uint8))


def test_bad_axis_names_the_file(tmp_path: Path) -> None:
    write_nifti(tmp_path / "d" / "a.nii.gz", _volume())
    (tmp_path / "m.csv").write_text("image,label,axis\nd/a.nii.gz,x,w\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"a\.nii\.gz.*'w'"):
        open_dataset(tmp_path / "m.csv")


def test_2d_file_is_one_image(tmp_path: Path) -> None:
    write_nifti(tmp_path / "c" / "flat.nii.gz", _volume((6, 3)))
    ds = open_dataset(tmp_path)
    assert ds.ids == ["c/flat"] and ds.load_image(0).shape == (3, 6, 3)


def test_mask_volume_of_another_shape_is_a_data_error(tmp_path: Path) -> None:
    write_nifti(tmp_path / "c" / "v.nii.gz", _volume())
    write_nifti(tmp_path / "c" / "v_mask.nii.gz", np.zeros((5, 4, 2), np.uint8))
    ds = open_dataset(tmp_path)
    with pytest.raises(DataError, match=r"v_mask\.nii\.gz.*v\.nii\.gz.*\(5, 4, 2\)"):
        ds.load_mask(0)
    report = audit_dataset(ds, workers=1)
    assert len(report.problems) == 3 and "v_mask.nii.gz" in report.problems[0][1]


def test_corrupt_file_is_a_recorded_failure(tmp_path: Path) -> None:
    write_nifti(tmp_path / "c" / "ok.nii.gz", _volume((4, 4, 2)))
    (tmp_path / "c" / "broken.nii.gz").write_bytes(b"\x1f\x8b garbage")
    ds = open_dataset(tmp_path)
    assert ds.ids == ["c/broken", "c/ok#z000", "c/ok#z001"]
    with pytest.raises(DataError, match=r"broken\.nii\.gz"):
        ds.load_image("c/broken")
    report = audit_dataset(ds, workers=1)
    assert [i for i, _ in report.problems] == ["c/broken"]
    assert report.n_samples == 3


def test_slices_of_one_volume_stay_in_one_split(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        for k in range(4):
            write_nifti(tmp_path / cls / f"p{k}.nii.gz", _volume((4, 4, 3)) + 100 * k + (cls == "b"))
    ds = open_dataset(tmp_path)
    split = make_split(ds, seed=0, fractions=(0.5, 0.0, 0.5))
    for sample in ds:
        same_file = [s.id for s in ds if s.image_path == sample.image_path]
        where = {name for name in ("train", "test") for i in same_file if i in split.ids(name)}
        assert len(where) == 1, (sample.id, where)


def test_gz_cache_rereads_a_changed_file(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "c" / "v.nii.gz", _volume((4, 4, 3)))
    ds = open_dataset(tmp_path)
    first = ds.load_image("c/v#z001")
    write_nifti(path, _volume((4, 4, 3))[::-1].copy() * 2 + 7, affine=np.eye(4))  # other bytes, other size
    second = open_dataset(tmp_path).load_image("c/v#z001")
    expected = (_volume((4, 4, 3))[::-1] * 2 + 7)[:, :, 1].T
    expected = np.rint((expected - expected.min()) * 255 / (expected.max() - expected.min())).astype(np.uint8)
    assert np.array_equal(second[:, :, 0], expected) and not np.array_equal(first, second)


def test_cli_audit_counts_slices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from samprompt.cli import main

    write_nifti(tmp_path / "a" / "v.nii.gz", _volume((6, 5, 2)))
    write_nifti(tmp_path / "a" / "v_mask.nii.gz", np.ones((6, 5, 2), np.uint8))
    write_nifti(tmp_path / "b" / "w.nii", _volume((6, 5, 3)))
    assert main(["--no-progress", "audit", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_samples"] == 5 and report["problems"] == []
    assert report["counts"]["a"]["images"] == 2 and report["counts"]["a"]["with_mask"] == 2
    assert report["image_size"]["width"] == {"min": 6, "median": 6, "max": 6}
    assert report["image_size"]["height"] == {"min": 5, "median": 5, "max": 5}
