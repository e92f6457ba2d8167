"""Tests of samprompt.data.io: every image and mask mode, size checks and unreadable files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samprompt.data.io import image_size, load_image, load_mask
from samprompt.errors import DataError


def _grey() -> np.ndarray:
    return np.arange(12 * 10, dtype=np.uint8).reshape(10, 12) * 2  # values 0..238


def test_rgb_image_round_trips(tmp_path: Path, make_image) -> None:
    arr = make_image(3)
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, arr)


def test_greyscale_l_is_repeated_over_three_channels(tmp_path: Path) -> None:
    Image.fromarray(_grey(), mode="L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (10, 12, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], _grey())


def test_mode_1_gives_0_and_255(tmp_path: Path) -> None:
    bits = np.zeros((5, 7), dtype=bool)
    bits[1:3, 2:6] = True
    Image.fromarray(bits).save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode == "1"
    out = load_image(tmp_path / "b.png")
    assert set(np.unique(out).tolist()) == {0, 255}
    np.testing.assert_array_equal(out[:, :, 1] == 255, bits)


def test_rgba_and_la_drop_alpha_without_compositing(tmp_path: Path, make_image) -> None:
    rgb = make_image(1)
    alpha = np.zeros(rgb.shape[:2], dtype=np.uint8)  # fully transparent: colours must survive
    Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), rgb)
    Image.fromarray(np.dstack([_grey(), np.zeros_like(_grey())]), mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(load_image(tmp_path / "la.png")[:, :, 2], _grey())


def test_palette_image_looks_up_colours(tmp_path: Path) -> None:
    idx = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette([10, 20, 30, 200, 100, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    im.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    assert out[0, 0].tolist() == [10, 20, 30]
    assert out[0, 1].tolist() == [200, 100, 0] and out[1, 1].tolist() == [200, 100, 0]
    assert out[1, 0].tolist() == [0, 0, 255]


def test_16_bit_is_scaled_by_its_own_max(tmp_path: Path) -> None:
    vals = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)  # 12-bit data in a 16-bit PNG
    Image.fromarray(vals).save(tmp_path / "s.png")
    assert Image.open(tmp_path / "s.png").mode == "I;16"
    out = load_image(tmp_path / "s.png")
    assert out[:, :, 0].tolist() == [[0, 64], [128, 255]]  # round(v * 255 / 4000)


def test_16_bit_within_8_bit_range_is_unchanged(tmp_path: Path) -> None:
    vals = np.array([[0, 17], [200, 255]], dtype=np.uint16)
    Image.fromarray(vals).save(tmp_path / "s.png")
    assert load_image(tmp_path / "s.png")[:, :, 2].tolist() == [[0, 17], [200, 255]]


def test_32_bit_int_and_float_tiff(tmp_path: Path) -> None:
    Image.fromarray(np.array([[-5, 100], [300, 600]], dtype=np.int32)).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    assert load_image(tmp_path / "i.tif")[:, :, 0].tolist() == [[0, 42], [128, 255]]
    Image.fromarray(np.array([[np.nan, 1.4], [99.6, 255.0]], dtype=np.float32)).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    assert load_image(tmp_path / "f.tif")[:, :, 1].tolist() == [[0, 1], [100, 255]]


@pytest.mark.parametrize(
    ("encode", "mode"),
    [
        (lambda m: Image.fromarray(m), "1"),
        (lambda m: Image.fromarray(m.astype(np.uint8), mode="L"), "L"),  # {0, 1}
        (lambda m: Image.fromarray(m.astype(np.uint8) * 255, mode="L"), "L"),  # {0, 255}
        (lambda m: Image.fromarray(np.dstack([m.astype(np.uint8) * 255] * 3), mode="RGB"), "RGB"),
        (
            lambda m: Image.fromarray(
                np.dstack([np.zeros(m.shape, np.uint8), m.astype(np.uint8) * 9, np.zeros(m.shape, np.uint8)]),
                mode="RGB",
            ),
            "RGB",
        ),  # green only
        (
            lambda m: Image.fromarray(
                np.dstack([m.astype(np.uint8) * 255] * 3 + [np.full(m.shape, 255, np.uint8)]), mode="RGBA"
            ),
            "RGBA",
        ),  # like BUSI's two RGBA masks
        (lambda m: Image.fromarray(m.astype(np.uint16) * 40000), "I;16"),
    ],
)
def test_mask_modes_give_the_same_bool_mask(tmp_path: Path, disk_mask, encode, mode) -> None:
    m = disk_mask(30, 20, 10, 8, 5)
    img = encode(m)
    img.save(tmp_path / "m.png")
    assert Image.open(tmp_path / "m.png").mode == mode
    out = load_mask(tmp_path / "m.png")
    assert out.dtype == np.bool_ and out.shape == (20, 30)
    np.testing.assert_array_equal(out, m)


def test_rgba_mask_uses_colour_and_transparent_pixels_are_background(tmp_path: Path) -> None:
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 255, 255, 255)  # white, opaque -> foreground
    rgba[0, 1] = (255, 255, 255, 0)  # white, transparent -> background
    rgba[0, 2] = (0, 0, 0, 255)  # black, opaque -> background (alpha alone is not enough)
    rgba[1, 0] = (0, 0, 7, 128)  # dim blue, half transparent -> foreground
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "m.png")
    assert load_mask(tmp_path / "m.png").tolist() == [[True, False, False], [True, False, False]]


def test_palette_mask_uses_colours(tmp_path: Path) -> None:
    im = Image.fromarray(np.array([[0, 1, 2]], dtype=np.uint8), mode="P")
    im.putpalette([0, 0, 0, 255, 255, 255, 0, 0, 0] + [0] * (256 * 3 - 9))  # index 2 is black too
    im.save(tmp_path / "p.png")
    assert load_mask(tmp_path / "p.png").tolist() == [[False, True, False]]


def test_several_mask_files_merge_by_or(tmp_path: Path, disk_mask) -> None:
    a, b = disk_mask(30, 20, 8, 8, 4), disk_mask(30, 20, 22, 12, 5)
    Image.fromarray(a).save(tmp_path / "x_mask.png")
    Image.fromarray(b.astype(np.uint8) * 255).save(tmp_path / "x_mask_1.png")
    out = load_mask([tmp_path / "x_mask.png", tmp_path / "x_mask_1.png"])
    np.testing.assert_array_equal(out, a | b)
    assert int(out.sum()) == int(a.sum()) + int(b.sum())  # disjoint disks


def test_mask_size_mismatch_names_both_files_and_sizes(tmp_path: Path, make_image) -> None:
    Image.fromarray(make_image(0, 64, 48)).save(tmp_path / "img.png")
    Image.new("L", (50, 48)).save(tmp_path / "img_mask.png")
    with pytest.raises(DataError) as ei:
        load_mask(tmp_path / "img_mask.png", image_path=tmp_path / "img.png")
    msg = str(ei.value)
    assert "img_mask.png" in msg and "img.png'" in msg and "50x48" in msg and "64x48" in msg


def test_mask_files_of_different_sizes_are_rejected(tmp_path: Path) -> None:
    Image.new("L", (10, 10)).save(tmp_path / "a.png")
    Image.new("L", (10, 11)).save(tmp_path / "b.png")
    with pytest.raises(DataError, match=r"b\.png.*10x11.*a\.png.*10x10"):
        load_mask([tmp_path / "a.png", tmp_path / "b.png"])


def test_image_size_reads_the_header(tmp_path: Path, make_image) -> None:
    Image.fromarray(make_image(0, 33, 21)).save(tmp_path / "a.png")
    assert image_size(tmp_path / "a.png") == (33, 21)


@pytest.mark.parametrize("case", ["missing", "empty", "not_image", "truncated"])
def test_unreadable_files_raise_data_error_naming_the_file(tmp_path: Path, make_image, case: str) -> None:
    p = tmp_path / "bad (1) é.png"
    if case == "empty":
        p.write_bytes(b"")
    elif case == "not_image":
        p.write_text("this is a CSV, not a PNG\n1,2,3\n")
    elif case == "truncated":
        Image.fromarray(make_image(0, 200, 150)).save(tmp_path / "full.png")
        data = (tmp_path / "full.png").read_bytes()
        p.write_bytes(data[: len(data) // 2])
    for loader in (load_image, load_mask):
        with pytest.raises(DataError) as ei:
            loader(p)
        assert "bad (1) é.png" in str(ei.value)
    if case == "empty":
        assert "0 bytes" in str(ei.value)


@pytest.mark.parametrize(
    ("width", "height"), [(20, 20), (13, 10)]
)  # over 2x the limit (error), over 1x (warning)
def test_decompression_bomb_is_a_data_error_not_a_warning(tmp_path: Path, monkeypatch, width, height) -> None:
    Image.new("L", (width, height)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any leaked warning fails the test
        with pytest.raises(DataError, match=r"bomb\.png.*too large"):
            load_image(tmp_path / "bomb.png")
        with pytest.raises(DataError, match=r"bomb\.png"):
            image_size(tmp_path / "bomb.png")
