"""Tests of the class-folder and CSV readers, the Dataset model and open_dataset."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samprompt.data import (
    Dataset,
    DatasetImages,
    Sample,
    open_dataset,
    read_class_folders,
    read_manifest,
    sample_id,
)
from samprompt.errors import DataError


# --- class folders ---------------------------------------------------------------------------------
def test_class_folders_read_busi_layout(class_folders: Path) -> None:
    ds = open_dataset(class_folders)
    assert isinstance(ds, Dataset) and len(ds) == 7
    assert ds.classes == ["benign", "malignant", "normal"]
    assert ds.ids == [
        "benign/benign (1)",
        "benign/benign (2)",
        "benign/benign (10)",  # natural order
        "malignant/malignant (1)",
        "malignant/malignant (2)",
        "normal/normal (1)",
        "normal/normal (2)",
    ]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 2, 2] and ds.labels.dtype == np.int64
    assert ds.root == class_folders.absolute() and ds.has_masks
    s = ds[1]
    assert isinstance(s, Sample) and s.label == "benign" and s.group is None
    assert [p.name for p in s.mask_paths] == ["benign (2)_mask.png", "benign (2)_mask_1.png"]
    assert s.image_path == class_folders.absolute() / "benign" / "benign (2).png"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.label = "x"  # type: ignore[misc]


def test_mask_files_are_never_listed_as_images(class_folders: Path) -> None:
    ds = open_dataset(class_folders)
    assert not any("_mask" in s.id or "_mask" in s.image_path.name for s in ds)
    # an orphan mask (no image) is ignored, not promoted to an image
    Image.new("L", (4, 4)).save(class_folders / "benign" / "ghost_mask.png")
    assert len(open_dataset(class_folders)) == 7


def test_loading_is_lazy_and_gives_merged_masks(class_folders: Path, disk_mask) -> None:
    ds = open_dataset(class_folders)
    img = ds.load_image("benign/benign (2)")
    assert img.shape == (60, 80, 3) and img.dtype == np.uint8
    mask = ds.load_mask(1)
    assert mask is not None and mask.shape == (60, 80)
    np.testing.assert_array_equal(mask, disk_mask(80, 60, 20, 20, 5) | disk_mask(80, 60, 60, 40, 4))
    empty = ds.load_mask("normal/normal (1)")
    assert empty is not None and empty.shape == (48, 64) and not empty.any()
    # deleting a file after opening only fails when that sample is loaded
    (class_folders / "malignant" / "malignant (2).png").unlink()
    assert ds.load_image(0).shape == (48, 64, 3)
    with pytest.raises(DataError, match=r"malignant \(2\)\.png"):
        ds.load_image("malignant/malignant (2)")


def test_dataset_images_decode_when_indexed(class_folders: Path) -> None:
    ds = open_dataset(class_folders)
    ids = ["normal/normal (1)", "benign/benign (2)"]
    view = DatasetImages(ds, ids)
    assert len(view) == 2 and view.ids == ids
    np.testing.assert_array_equal(view[1], ds.load_image("benign/benign (2)"))
    assert view[0].shape == (48, 64, 3)
    (class_folders / "benign" / "benign (2).png").unlink()  # nothing was kept: the file is read again
    with pytest.raises(DataError, match=r"benign \(2\)\.png"):
        view[1]


def test_class_folders_without_any_mask(tmp_path: Path, make_image) -> None:
    for k, cls in enumerate(["cat", "dog"]):
        (tmp_path / cls).mkdir()
        Image.fromarray(make_image(k)).save(tmp_path / cls / f"{cls}.jpg")
    (tmp_path / "cat" / "notes.txt").write_text("ignored")
    (tmp_path / "cat" / ".hidden.png").write_bytes(b"")
    ds = open_dataset(tmp_path)
    assert ds.ids == ["cat/cat", "dog/dog"] and not ds.has_masks
    assert ds.load_mask(0) is None and ds.load_image(1).shape == (48, 64, 3)


def test_class_folder_mask_size_mismatch(class_folders: Path) -> None:
    Image.new("L", (10, 10)).save(class_folders / "benign" / "benign (1)_mask.png")
    with pytest.raises(DataError) as ei:
        open_dataset(class_folders).load_mask("benign/benign (1)")
    assert "benign (1)_mask.png" in str(ei.value) and "benign (1).png" in str(ei.value)
    assert "10x10" in str(ei.value) and "64x48" in str(ei.value)


def test_non_ascii_spaces_and_parentheses(tmp_path: Path, make_image) -> None:
    cls = tmp_path / "bénin tumeur"
    cls.mkdir()
    Image.fromarray(make_image(0)).save(cls / "Größe (1) 超音波.png")
    Image.fromarray(np.ones((48, 64), dtype=bool)).save(cls / "Größe (1) 超音波_mask.png")
    ds = open_dataset(tmp_path)
    assert ds.ids == ["bénin tumeur/Größe (1) 超音波"] and ds.classes == ["bénin tumeur"]
    assert ds.load_mask(0).all()  # type: ignore[union-attr]


def test_class_folder_errors(tmp_path: Path, make_image) -> None:
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders with images"):
        open_dataset(tmp_path)
    (tmp_path / "a").mkdir()
    Image.fromarray(make_image(0)).save(tmp_path / "a" / "x.png")
    Image.fromarray(make_image(1)).save(tmp_path / "a" / "x.jpg")
    with pytest.raises(DataError, match=r"'x\.jpg' and 'x\.png'|'x\.png' and 'x\.jpg'"):
        open_dataset(tmp_path)
    (tmp_path / "a" / "x.jpg").unlink()
    with pytest.raises(DataError, match="no class folder 'b'"):
        read_class_folders(tmp_path, classes=["a", "b"])
    assert read_class_folders(tmp_path, classes=["a"]).classes == ["a"]


def test_sample_id_is_safe_and_stable() -> None:
    assert sample_id(os.path.join("benign", "benign (1).png")) == "benign/benign (1)"
    assert sample_id("a/b.c.png") == "a/b.c"
    assert sample_id("e\u0301.png") == "\u00e9"  # NFD -> NFC
    for bad in ("../x.png", "/abs/x.png", "a/line\nbreak.png", ""):
        with pytest.raises(DataError):
            sample_id(bad)


def test_fingerprint_tracks_content_labels_not_mtime(class_folders: Path, tmp_path: Path) -> None:
    fp = open_dataset(class_folders).fingerprint()
    assert len(fp) == 64 and int(fp, 16) >= 0
    copy = tmp_path / "copy"
    shutil.copytree(class_folders, copy)  # new mtimes, same bytes
    assert open_dataset(copy).fingerprint() == fp
    os.utime(copy / "benign" / "benign (1).png", (1, 1))
    assert open_dataset(copy).fingerprint() == fp
    Image.new("L", (64, 48), 7).save(copy / "benign" / "benign (1).png")
    assert open_dataset(copy).fingerprint() != fp
    assert open_dataset(copy).fingerprint(content=False) != open_dataset(copy).fingerprint()


# --- CSV manifest ----------------------------------------------------------------------------------
def _csv_tree(tmp_path: Path, make_image) -> Path:
    (tmp_path / "imgs").mkdir(parents=True)
    for k in range(4):
        Image.fromarray(make_image(k)).save(tmp_path / "imgs" / f"p{k} (x).png")
    Image.fromarray(np.zeros((48, 64), dtype=bool)).save(tmp_path / "imgs" / "m0.png")
    Image.fromarray(np.eye(48, 64, dtype=np.uint8)).save(tmp_path / "imgs" / "m0b.png")
    return tmp_path


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_manifest_reads_labels_masks_and_groups(tmp_path: Path, make_image) -> None:
    root = _csv_tree(tmp_path, make_image)
    csv = _write(
        root / "data.csv",
        "\ufeffImage,Label,mask,group,extra\n"
        "imgs/p0 (x).png,sick,imgs/m0.png; imgs/m0b.png,patient-1,foo\n"
        "\n"
        "imgs/p1 (x).png, healthy ,,patient-1,\n"
        f"{root / 'imgs' / 'p2 (x).png'},sick,,,\n",
    )
    ds = open_dataset(csv)
    assert ds.ids == ["imgs/p0 (x)", "imgs/p1 (x)", "imgs/p2 (x)"] and ds.classes == ["healthy", "sick"]
    assert [s.group for s in ds] == ["patient-1", "patient-1", None] and ds.labels.tolist() == [1, 0, 1]
    assert ds.source == csv.absolute() and ds.root == root.absolute()
    mask = ds.load_mask(0)
    assert mask is not None and mask.sum() == 48  # the eye() diagonal OR an empty mask
    assert ds.load_mask(1) is None


def test_manifest_labels_only_is_enough(tmp_path: Path, make_image) -> None:
    root = _csv_tree(tmp_path, make_image)
    ds = read_manifest(_write(root / "l.csv", "image,label\nimgs/p0 (x).png,a\nimgs/p1 (x).png,b\n"))
    assert len(ds) == 2 and not ds.has_masks


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        ("image,mask\nimgs/p0 (x).png,\n", r"line 1: missing required column 'label'"),
        ("image,label\nimgs/p0 (x).png,\n", r"line 2: empty label"),
        ("image,label\nimgs/p0 (x).png,a\nimgs/p1 (x).png,zebra\n", r"line 3: unknown label 'zebra'"),
        (
            "image,label\nimgs/p0 (x).png,a\nimgs/p1 (x).png,b\n./imgs/p0 (x).png,b\n",
            r"line 4: image '\./imgs/p0 \(x\)\.png' is already listed on line 2",
        ),
        ("image,label\n../outside.png,a\n", r"line 2: image path '\.\./outside\.png' escapes the data root"),
        ("image,label\nimgs/../../outside.png,a\n", r"line 2: .*escapes the data root"),
        ("image,label\n/etc/passwd,a\n", r"line 2: image path '/etc/passwd' escapes the data root"),
        ("image,label,mask\nimgs/p0 (x).png,a,../m.png\n", r"line 2: mask path '\.\./m\.png' escapes"),
        ("image,label\nimgs/missing.png,a\n", r"line 2: image file 'imgs/missing\.png' does not exist"),
        ("image,label,mask\nimgs/p0 (x).png,a,imgs/nomask.png\n", r"line 2: mask file .* does not exist"),
        ("image,label\nimgs/p0 (x).png,a,extra\n", r"line 2: 3 fields but the header has 2"),
        (
            "image,label,mask\nimgs/p0 (x).png,a,imgs/p1 (x).png\nimgs/p1 (x).png,a,\n",
            r"line 3: 'p1 \(x\)\.png' is listed as an image here and as a mask on line 2",
        ),
        ("image,label\n", r"lists no images"),
        ("", r"is empty"),
    ],
    ids=[
        "no-label-column",
        "empty-label",
        "unknown-label",
        "duplicate-row",
        "dotdot",
        "dotdot-inside",
        "absolute-outside",
        "mask-escape",
        "missing-image",
        "missing-mask",
        "extra-field",
        "image-is-mask",
        "no-rows",
        "empty-file",
    ],
)
def test_manifest_errors_name_file_and_line(tmp_path: Path, make_image, body: str, pattern: str) -> None:
    root = _csv_tree(tmp_path / "d", make_image)
    (tmp_path / "outside.png").write_bytes((root / "imgs" / "p0 (x).png").read_bytes())
    csv = _write(root / "bad.csv", body)
    with pytest.raises(DataError, match=pattern) as ei:
        read_manifest(csv, classes=["a", "b"])
    assert "bad.csv" in str(ei.value)


def test_manifest_non_ascii_paths_and_undecodable_file(tmp_path: Path, make_image) -> None:
    (tmp_path / "Ärzte").mkdir()
    Image.fromarray(make_image(0)).save(tmp_path / "Ärzte" / "Bild (1) 画像.png")
    ds = read_manifest(_write(tmp_path / "m.csv", "image,label\nÄrzte/Bild (1) 画像.png,gut\n"))
    assert ds.ids == ["Ärzte/Bild (1) 画像"] and ds.load_image(0).shape == (48, 64, 3)
    (tmp_path / "latin1.csv").write_bytes("image,label\nÄrzte/x.png,gut\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.csv.*cannot be read"):
        read_manifest(tmp_path / "latin1.csv")


def test_open_dataset_rejects_other_files(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="neither a folder"):
        open_dataset(tmp_path / "x.json")


def test_dataset_validates_ids_and_labels(tmp_path: Path) -> None:
    a = Sample("x/a", tmp_path / "x" / "a.png", (), "a")
    with pytest.raises(DataError, match="same sample id 'x/a'"):
        Dataset([a, dataclasses.replace(a, image_path=tmp_path / "x" / "a.jpg")], root=tmp_path)
    with pytest.raises(DataError, match="label 'a', not one of the classes"):
        Dataset([a], root=tmp_path, classes=["b"])
    ds = Dataset([a, dataclasses.replace(a, id="x/b", label="b")], root=tmp_path, classes=["c", "b", "a"])
    assert ds.classes == ["a", "b", "c"] and ds.labels.tolist() == [0, 1]
    assert (
        ds[0:1] == [a] and ds.subset(["x/b"]).ids == ["x/b"] and ds.subset(["x/b"]).classes == ["a", "b", "c"]
    )
    with pytest.raises(DataError, match="no sample with id 'nope'"):
        ds.subset(["nope"])
