"""The data side of reliability: broken links, unreadable files and folders, label spelling, lossy masks."""

from __future__ import annotations

import io
import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from reliability_helpers import deny_read, make_dataset, png_bytes, png_header_only

from samprompt._io import atomic_write, atomic_write_bytes, atomic_write_json
from samprompt.data import audit_dataset, check_labels_against_classes, load_image, load_mask, open_dataset
from samprompt.data.io import lossy_mask_reason
from samprompt.data.labels import case_variants, label_problem
from samprompt.errors import DataError


# ---------------------------------------------------------------------------------------------- links
def _links(root: Path) -> tuple[Path, Path]:
    dangling = root / "benign" / "dangling.png"
    dangling.symlink_to(root / "benign" / "gone.png")
    loop = root / "malignant" / "loop.png"
    loop.symlink_to(loop)
    return dangling, loop


def test_broken_links_are_samples_that_fail_by_name(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", per_class=2)
    dangling, loop = _links(root)
    ds = open_dataset(root)
    assert {"benign/dangling", "malignant/loop"} <= set(ds.ids) and len(ds) == 8  # not silently dropped
    assert len(ds.fingerprint()) == 64  # an unreadable file does not stop the data set
    with pytest.raises(DataError, match=re.escape(f"image file {str(dangling)!r} is a dangling symbolic link")):
        load_image(dangling)
    with pytest.raises(DataError, match=re.escape(f"image file {str(loop)!r} is a symbolic link loop")):
        ds.load_image("malignant/loop")
    report = audit_dataset(ds, workers=1)
    problems = dict(report.problems)
    assert set(problems) == {"benign/dangling", "malignant/loop"}
    assert "dangling symbolic link" in problems["benign/dangling"]
    assert "symbolic link loop" in problems["malignant/loop"]
    assert "Problems: 2" in report.format_text()


def test_a_broken_mask_link_fails_that_sample(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", per_class=1)
    mask = root / "benign" / "benign (1)_mask.png"
    mask.unlink()
    mask.symlink_to(root / "nowhere.png")
    ds = open_dataset(root)
    with pytest.raises(DataError, match="mask file .* is a dangling symbolic link"):
        ds.load_mask("benign/benign (1)")


def test_a_broken_link_in_a_manifest_names_the_line(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", per_class=1)
    (root / "link.png").symlink_to(root / "gone.png")
    csv = root / "m.csv"
    csv.write_text("image,label\nbenign/benign (1).png,benign\nlink.png,benign\n")
    with pytest.raises(DataError, match=r"line 3: image file 'link.png' is a broken symbolic link"):
        open_dataset(csv)


# ---------------------------------------------------------------------------------------------- permissions
def test_an_unreadable_image_or_mask_fails_only_itself(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", per_class=2)
    img, mask = root / "benign" / "benign (1).png", root / "normal" / "normal (2)_mask.png"
    with deny_read(img, mask):
        ds = open_dataset(root)
        assert len(ds) == 6 and len(ds.fingerprint()) == 64
        with pytest.raises(DataError, match=re.escape(f"image file {str(img)!r} cannot be read (permission "
                                                      "denied); fix its permissions")):
            ds.load_image("benign/benign (1)")
        with pytest.raises(DataError, match="mask file .*normal \\(2\\)_mask.png' cannot be read \\(permission"):
            ds.load_mask("normal/normal (2)")
        assert ds.load_image("benign/benign (2)").shape == (64, 80, 3)
        report = audit_dataset(ds, workers=1)
    assert sorted(i for i, _ in report.problems) == ["benign/benign (1)", "normal/normal (2)"]
    assert all("permission denied" in m for _, m in report.problems)


def test_an_unreadable_class_folder_is_a_clear_error(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", per_class=1)
    with deny_read(root / "malignant"), pytest.raises(DataError) as info:
        open_dataset(root)
    msg = str(info.value)
    assert f"class folder {str(root / 'malignant')!r} cannot be listed" in msg
    assert "fix its permissions" in msg and "Errno" not in msg


# ---------------------------------------------------------------------------------------------- labels
def test_class_folders_differing_by_case_are_refused(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", per_class=1)
    other = root / "Benign"
    other.mkdir()
    (other / "x.png").write_bytes(png_bytes(np.zeros((8, 8), np.uint8)))
    with pytest.raises(DataError, match=r"labels 'Benign' \(folder .*\) and 'benign' \(folder .*\) differ only "
                                        r"by case"):
        open_dataset(root)


def test_csv_labels_differing_by_case_or_with_control_characters_are_refused(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", per_class=1)
    csv = root / "m.csv"
    csv.write_text("image,label\nbenign/benign (1).png,benign\nmalignant/malignant (1).png,Benign\n")
    with pytest.raises(DataError, match=r"labels 'Benign' \(line 3\) and 'benign' \(line 2\) differ only by case"):
        open_dataset(csv)
    csv.write_text('image,label\nbenign/benign (1).png,"ben\tign"\n')
    with pytest.raises(DataError, match=r"line 2: label 'ben\\tign' contains a control character"):
        open_dataset(csv)
    csv.write_text("image,label\nbenign/benign (1).png,benign\n")
    with pytest.raises(DataError, match=r"unknown label 'benign' \(did you mean 'Benign'\? labels are case-sens"):
        open_dataset(csv, classes=["Benign", "normal"])


def test_a_class_folder_with_a_control_character_is_refused(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", per_class=1)
    bad = root / "ben\x1bign"
    bad.mkdir()
    (bad / "x.png").write_bytes(png_bytes(np.zeros((8, 8), np.uint8)))
    with pytest.raises(DataError, match=r"contains a control character .* \(the folder name is the label\)"):
        open_dataset(root)


def test_label_helpers() -> None:
    assert label_problem("benign") is None
    assert label_problem("") == "empty label"
    assert "control character" in (label_problem("a\x85b") or "")
    assert "white space" in (label_problem("benign\u00a0") or "")
    assert case_variants(["benign", "Benign", "normal", "BENIGN", "Normal"]) == [
        ["BENIGN", "Benign", "benign"], ["Normal", "normal"]]
    assert case_variants(["a", "b"]) == []


def test_check_labels_against_classes() -> None:
    samples = [("benign", "/d/b1.png"), ("Benign", "/d/B1.png"), ("Benign", "/d/B2.png"), ("cat", "/d/c.png")]
    with pytest.raises(DataError) as info:
        check_labels_against_classes(samples, ("benign", "malignant"), "classifier checkpoint '/m.pt'")
    msg = str(info.value)
    assert "classifier checkpoint '/m.pt' does not know" in msg
    assert "'Benign' (did you mean 'benign'? labels are case-sensitive) on 2 sample(s), e.g. '/d/B1.png'" in msg
    assert "'cat' on 1 sample(s), e.g. '/d/c.png'" in msg and "It knows ['benign', 'malignant']" in msg
    check_labels_against_classes(samples[:1], ("benign", "malignant"), "x")  # all known: no error


# ---------------------------------------------------------------------------------------------- lossy masks
def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=75)
    return buf.getvalue()


def test_a_jpeg_mask_named_png_is_read_with_a_warning_and_audited(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    root = make_dataset(tmp_path / "data", per_class=1)
    mask_file = root / "benign" / "benign (1)_mask.png"
    with Image.open(mask_file) as im:
        truth = np.asarray(im) > 0
    mask_file.write_bytes(_jpeg(truth.astype(np.uint8) * 255))
    with caplog.at_level(logging.WARNING, logger="samprompt.data.io"):
        grown = load_mask(mask_file)
    assert grown.sum() > truth.sum()  # the artefacts count as foreground: why it is worth a warning
    assert [r.getMessage() for r in caplog.records if "JPEG-compressed (named .png)" in r.getMessage()]
    report = audit_dataset(open_dataset(root), workers=1)
    assert [i for i, _ in report.warnings] == ["benign/benign (1)"]
    assert "JPEG-compressed (named .png)" in report.warnings[0][1] and not report.problems
    assert report.to_dict()["warnings"][0]["id"] == "benign/benign (1)"
    assert "Warnings: 1" in report.format_text()


def test_lossy_reason_spares_binary_masks_and_flags_a_faint_halo() -> None:
    binary = np.zeros((20, 20), np.uint8)
    binary[5:15, 5:15] = 255
    assert lossy_mask_reason(Image.fromarray(binary)) is None
    assert lossy_mask_reason(Image.fromarray((binary > 0).astype(np.uint8))) is None  # {0, 1}
    halo = binary.copy()
    halo[4, 5:15] = 3
    halo[15, 5:15] = 250
    reason = lossy_mask_reason(Image.fromarray(halo)) or ""
    assert "holds 4 distinct values, 10 pixels of them non-zero but below 31" in reason


# ---------------------------------------------------------------------------------------------- bombs
def test_the_decompression_bomb_message_quotes_one_limit(tmp_path: Path) -> None:
    for w in (20000, 14000):  # over twice the limit (PIL's error) and between once and twice (its warning)
        p = tmp_path / f"bomb{w}.png"
        p.write_bytes(png_header_only(w, w))
        with pytest.raises(DataError) as info:
            load_image(p)
        msg = str(info.value)
        limit = Image.MAX_IMAGE_PIXELS
        numbers = {int(n) for n in re.findall(r"\d{6,}", msg)}
        assert numbers == {w * w, limit}, msg
        assert f"({w * w} pixels, over the limit of {limit} pixels" in msg


# ---------------------------------------------------------------------------------------------- atomic writes
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_honour_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        a = atomic_write_bytes(tmp_path / "new" / "a.bin", b"x")
        b = atomic_write_json(tmp_path / "b.json", {"k": 1})
        c = atomic_write(tmp_path / "c.pt", lambda p: p.write_bytes(b"torch"))
    finally:
        os.umask(old)
    for p in (a, b, c):
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, (p, oct(p.stat().st_mode))
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o777 & ~umask
    assert b.read_text() == '{\n  "k": 1\n}\n' and c.read_bytes() == b"torch"


def test_an_interrupted_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    p = atomic_write_bytes(tmp_path / "f.txt", b"old")

    def boom(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(p, boom)
    assert p.read_bytes() == b"old" and sorted(x.name for x in tmp_path.iterdir()) == ["f.txt"]
