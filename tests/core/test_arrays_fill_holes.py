"""``samprompt._arrays.fill_holes``: the same mask as ``scipy.ndimage.binary_fill_holes``, faster."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from samprompt._arrays import fill_holes


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
