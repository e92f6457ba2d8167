"""The threshold masker's value chosen from the data without masks (samprompt.maskers.fit)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from samprompt.errors import ConfigError, DataError
from samprompt.maskers.builtin import ThresholdMasker, ThresholdParams
from samprompt.maskers.fit import DEFAULT_GRID, fit_threshold, threshold_agreement


def _blob(cy: float, cx: float, width: float, shape: tuple[int, int] = (60, 80)) -> NDArray[np.float32]:
    """A Gaussian CAM with its maximum 1 at (cy, cx)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2)).astype(np.float32)


def _box_at(cam: NDArray[np.float32], t: float) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(cam > t)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_agreement_is_the_box_iou_of_the_masked_cam_at_each_value() -> None:
    cam = _blob(30, 40, 6.0)
    ref = _box_at(cam, 0.3)  # the reference is the CAM's own box at 0.3
    got = threshold_agreement(cam, ref, grid=[0.3, 0.6, 0.9])
    assert got[0] == pytest.approx(1.0)
    # at 0.6 the box is the one of cam > 0.6, inside the reference: IoU = its area / the reference's area
    b = _box_at(cam, 0.6)
    expected = (b[2] - b[0]) * (b[3] - b[1]) / ((ref[2] - ref[0]) * (ref[3] - ref[1]))
    assert got[1] == pytest.approx(expected) and got[1] > got[2] > 0
    assert threshold_agreement(np.zeros((10, 10), np.float32), (1, 1, 5, 5), grid=[0.5]).tolist() == [0.0]


def test_fit_follows_the_width_of_the_cam_against_the_reference() -> None:
    # the same lesion box (20 x 20 around the peak), a wide CAM and a peaked one: the peaked CAM needs a
    # lower threshold for its box to cover the lesion
    ref = (30, 20, 50, 40)
    wide, peaked = _blob(30, 40, 9.0), _blob(30, 40, 4.0)
    fit_wide = fit_threshold([wide, wide], [ref, ref])
    fit_peaked = fit_threshold([peaked], [ref])
    assert fit_peaked.value < fit_wide.value
    assert fit_peaked.curve[fit_peaked.value] > 0.9 and fit_wide.curve[fit_wide.value] > 0.9
    assert fit_wide.images == 2 and set(fit_wide.curve) == set(DEFAULT_GRID)
    # the chosen value is the one whose mask's box is the reference's (to the grid's step)
    for cam, fit in ((wide, fit_wide), (peaked, fit_peaked)):
        x0, y0, x1, y1 = _box_at(cam, fit.value)
        assert abs(x0 - 30) <= 2 and abs(x1 - 50) <= 2 and abs(y0 - 20) <= 2 and abs(y1 - 40) <= 2


def test_fit_skips_images_without_a_reference_and_uses_the_masker_params() -> None:
    two = np.maximum(_blob(30, 20, 5.0), 0.9 * _blob(30, 60, 5.0))  # two blobs: largest component or all
    ref_left = _box_at(_blob(30, 20, 5.0), 0.5)
    largest = fit_threshold([two, two], [ref_left, None], grid=[0.5])
    every = fit_threshold([two], [ref_left], masker_params={"keep": "all", "value": 0.99}, grid=[0.5])
    assert largest.images == 1 and largest.curve[0.5] == pytest.approx(1.0)
    assert every.curve[0.5] < 0.6  # both blobs' box is twice as wide as the reference
    json_ready = largest.to_json()
    assert json_ready == {"value": 0.5, "images": 1, "curve": {"0.50": pytest.approx(1.0)}}


def test_fit_errors() -> None:
    cam = _blob(30, 40, 6.0)
    with pytest.raises(DataError, match="no image has a reference box"):
        fit_threshold([cam], [None])
    with pytest.raises(ConfigError, match=r"grid values must lie in \[0, 1\)"):
        fit_threshold([cam], [(1, 1, 4, 4)], grid=[0.5, 1.0])
    with pytest.raises(ConfigError, match="at least one"):
        fit_threshold([cam], [(1, 1, 4, 4)], grid=[])
    with pytest.raises(ValueError):
        fit_threshold([cam, cam], [(1, 1, 4, 4)])  # CAMs and references of other lengths


def test_threshold_masker_takes_fit_only_in_a_run_config() -> None:
    assert ThresholdParams(value="fit").value == "fit"
    with pytest.raises(ConfigError, match="'fit' is chosen by a run"):
        ThresholdMasker(value="fit")
    with pytest.raises(ValueError):
        ThresholdParams(value="fitted")
    assert ThresholdMasker(value=0.25)(_blob(30, 40, 6.0)).sum() > 0
