"""The fast paths of ``samprompt._arrays``: ``fill_holes`` gives ``scipy.ndimage.binary_fill_holes``'s mask, and
``as_grey`` of a uint8 image the float32 channel mean / 255 bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from samprompt._arrays import as_grey, as_image, fill_holes


def test_fills_an_enclosed_hole_and_keeps_a_bay_open() -> None:
    m = np.zeros((7, 9), bool)
    m[1:6, 1:6] = True
    m[3, 3] = False  # enclosed: filled
    m[1:6, 6:8] = True
    m[2:5, 7] = False  # a bay: column 8 (background) joins it to the array's edge
    out = fill_holes(m)
    assert out[3, 3]
    assert not out[3, 7]  # joined to the edge by background
    assert np.array_equal(out, ndi.binary_fill_holes(m))


def test_diagonal_gap_does_not_open_a_hole() -> None:
    # background joined to the outside only diagonally is a hole (4-connectivity, as scipy's default)
    m = np.array([[1, 1, 1, 0],
                  [1, 0, 1, 1],
                  [1, 1, 1, 1]], bool)
    out = fill_holes(m)
    assert out[1, 1] and not out[0, 3]
    assert np.array_equal(out, ndi.binary_fill_holes(m))


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (6, 1), (3, 3)])
@pytest.mark.parametrize("value", [False, True])
def test_flat_masks(shape: tuple[int, int], value: bool) -> None:
    m = np.full(shape, value)
    assert np.array_equal(fill_holes(m), ndi.binary_fill_holes(m))


def test_random_masks_match_scipy() -> None:
    rng = np.random.default_rng(3)
    for k in range(300):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        if k % 3:
            m = ndi.gaussian_filter(rng.random((h, w)), float(rng.uniform(0.5, 3))) > float(rng.uniform(0.3, 0.7))
        else:
            m = rng.random((h, w)) < float(rng.uniform(0.2, 0.8))
        assert np.array_equal(fill_holes(m), ndi.binary_fill_holes(m)), (k, h, w)


def test_input_is_not_modified() -> None:
    m = np.ones((5, 5), bool)
    m[2, 2] = False
    before = m.copy()
    fill_holes(m)
    assert np.array_equal(m, before)


def _reference_grey(image: np.ndarray) -> np.ndarray:
    return as_image(image).astype(np.float32).mean(axis=2) / 255.0


def test_as_grey_equals_the_float32_channel_mean_for_every_channel_sum() -> None:
    s = np.arange(766)  # every possible sum of three uint8 channels
    rgb = np.stack([np.minimum(s, 255), np.clip(s - 255, 0, 255), np.clip(s - 510, 0, 255)], -1).astype(np.uint8)
    got = as_grey(rgb[None])
    assert got.dtype == np.float32
    assert np.array_equal(got, _reference_grey(rgb[None]))
    assert got[0, 765] == np.float32(1.0) and got[0, 0] == 0.0
    assert abs(float(got[0, 300]) - 100 / 255) < 1e-6


@pytest.mark.parametrize("shape", [(40, 50), (40, 50, 3), (40, 50, 4), (40, 50, 1)])
def test_as_grey_uint8_layouts(shape: tuple[int, ...]) -> None:
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    got = as_grey(img)
    assert got.shape == (40, 50) and got.dtype == np.float32
    assert np.array_equal(got, _reference_grey(img))


def test_as_grey_float_grey_is_kept_and_bad_shapes_fail() -> None:
    g = np.linspace(0, 1, 12, dtype=np.float64).reshape(3, 4)
    assert np.array_equal(as_grey(g), g.astype(np.float32))
    with pytest.raises(ValueError, match="image"):
        as_grey(np.zeros((4, 5, 2), np.uint8))
