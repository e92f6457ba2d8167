from __future__ import annotations

import numpy as np
import pytest

from samprompt import MASKERS, PROMPT_STRATEGIES, ConfigError
from samprompt.prompts.builtin import inside_point, max_point


def _two_blobs() -> tuple[np.ndarray, np.ndarray]:
    cam = np.zeros((40, 60), np.float32)
    cam[5:15, 5:25] = 0.9  # 200 px, weaker mass per px
    cam[25:30, 40:45] = 1.0  # 25 px, strongest
    mask = cam > 0.5
    return mask, cam


def test_threshold_masker_is_strict_and_keeps_largest() -> None:
    _, cam = _two_blobs()
    m = MASKERS.create("threshold", {"value": 0.9})
    out = m(cam)
    assert out.sum() == 25  # 0.9 is not > 0.9; only the small blob survives
    out = MASKERS.create("threshold", {"value": 0.5})(cam)
    assert out.sum() == 200 and out[10, 10] and not out[27, 42]
    assert MASKERS.create("threshold", {"value": 0.5, "keep": "all"})(cam).sum() == 225
    assert MASKERS.create("threshold", {"value": 0.5, "keep": "max_cam"})(cam).sum() == 200


def test_otsu_percentile_fill_holes_min_area() -> None:
    _, cam = _two_blobs()
    assert MASKERS.create("otsu", {"keep": "all"})(cam).sum() == 225
    assert MASKERS.create("percentile", {"q": 95, "keep": "all"})(cam).sum() == 25
    ring = np.zeros((20, 20), np.float32)
    ring[5:15, 5:15] = 1.0
    ring[8:12, 8:12] = 0.0
    assert MASKERS.create("threshold", {"value": 0.5})(ring).sum() == 84
    assert MASKERS.create("threshold", {"value": 0.5, "fill_holes": True})(ring).sum() == 100
    assert not MASKERS.create("threshold", {"value": 0.5, "min_area": 0.3})(ring).any()


def test_maskers_handle_constant_nan_and_bad_shapes() -> None:
    assert not MASKERS.create("otsu")(np.full((8, 8), 0.3, np.float32)).any()
    assert not MASKERS.create("percentile")(np.zeros((8, 8), np.float32)).any()
    nan_cam = np.full((8, 8), np.nan, np.float32)
    nan_cam[2:4, 2:4] = 1.0
    assert MASKERS.create("threshold")(nan_cam).sum() == 4
    with pytest.raises(ValueError, match="cam must be"):
        MASKERS.create("threshold")(np.zeros((3, 3, 3)))
    with pytest.raises(ConfigError, match=r"threshold\.params\.value"):
        MASKERS.create("threshold", {"value": 2})


def test_box_strategy_margin_clipping_and_component_choice() -> None:
    mask, cam = _two_blobs()
    box = PROMPT_STRATEGIES.create("box")(mask, cam)
    assert box.box.tolist() == [5.0, 5.0, 25.0, 15.0] and box.points.shape == (0, 2)
    assert PROMPT_STRATEGIES.create("box", {"margin": 8})(mask, cam).box.tolist() == [0.0, 0.0, 33.0, 23.0]
    assert PROMPT_STRATEGIES.create("box", {"component": "max_cam"})(mask, cam).box.tolist() == [5, 5, 25, 15]
    assert PROMPT_STRATEGIES.create("box", {"component": "all"})(mask, cam).box.tolist() == [5, 5, 45, 30]
    assert PROMPT_STRATEGIES.create("box")(np.zeros((5, 5), bool), np.zeros((5, 5), np.float32)) is None


def test_center_point_can_leave_a_concave_region_but_inside_point_cannot() -> None:
    m = np.zeros((30, 30), bool)
    m[0:30, 0:5] = True  # an L shape: the box centre (15, 15) is outside
    m[25:30, 0:30] = True
    cam = m.astype(np.float32)
    c = PROMPT_STRATEGIES.create("center_point")(m, cam)
    assert c.points.tolist() == [[15.0, 15.0]] and c.point_labels.tolist() == [1]
    assert not m[15, 15]
    p = PROMPT_STRATEGIES.create("inside_point")(m, cam)
    x, y = p.points[0]
    assert m[int(y), int(x)]


def test_max_point_uses_plateau_centroid_not_first_index() -> None:
    cam = np.zeros((20, 20), np.float32)
    cam[4:7, 10:17] = 1.0  # plateau 3 x 7, centre pixel (row 5, col 13)
    mask = cam > 0
    assert max_point(cam, mask).tolist() == [13.5, 5.5]
    cam2 = cam.copy()
    cam2[6, 16] = 1.0001  # single maximum wins
    assert max_point(cam2, mask).tolist() == [16.5, 6.5]
    assert max_point(cam, np.zeros_like(mask)) is None


def test_inside_point_is_distance_peak() -> None:
    m = np.zeros((21, 41), bool)
    m[0:21, 0:41] = True
    assert inside_point(m).tolist() == [20.5, 10.5]


def test_combined_strategies() -> None:
    mask = np.zeros((20, 30), bool)
    mask[4:10, 6:20] = True
    cam = mask.astype(np.float32)
    cam[8, 18] = 1.0
    cam[mask] = 0.5
    cam[8, 18] = 1.0
    bc = PROMPT_STRATEGIES.create("box_center_point", {"margin": 2})(mask, cam)
    assert bc.box.tolist() == [4.0, 2.0, 22.0, 12.0] and bc.points.tolist() == [[13.0, 7.0]]
    bm = PROMPT_STRATEGIES.create("box_max_point")(mask, cam)
    assert bm.box.tolist() == [6.0, 4.0, 20.0, 10.0] and bm.points.tolist() == [[18.5, 8.5]]
    bi = PROMPT_STRATEGIES.create("box_inside_point")(mask, cam)
    assert bi.point_labels.tolist() == [1] and mask[int(bi.points[0, 1]), int(bi.points[0, 0])]


def test_strategy_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="differs"):
        PROMPT_STRATEGIES.create("box")(np.ones((4, 4), bool), np.ones((4, 5), np.float32))


def test_otsu_histogram_path_matches_scikit_image() -> None:
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(0)
    masker = MASKERS.create("otsu", {"keep": "all"})
    for _ in range(5):
        cam = rng.random((60, 80)).astype(np.float32) ** 3
        cam[20:40, 20:40] += 0.5
        cam = np.clip(cam, 0, 1)
        assert np.array_equal(masker(cam), cam > threshold_otsu(cam))


def test_keep_components_validates_mode_even_for_one_component() -> None:
    from samprompt.regions import keep_components

    m = np.zeros((5, 5), bool)
    m[1:3, 1:3] = True
    with pytest.raises(ValueError, match="mode must be"):
        keep_components(m, "biggest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a cam"):
        keep_components(m, "max_cam")
    assert keep_components(m, "largest").sum() == 4
