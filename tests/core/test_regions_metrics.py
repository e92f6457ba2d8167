from __future__ import annotations

import math

import numpy as np
import pytest

from samprompt.metrics import bootstrap_ci, dice, iou, pixel_accuracy, summarize
from samprompt.regions import bbox_slices, box_iou, clip_box, ellipse_in_box, keep_components, mask_to_box


def test_mask_to_box_uses_pixel_edges() -> None:
    m = np.zeros((10, 20), bool)
    m[5, 3] = True
    assert mask_to_box(m).tolist() == [3.0, 5.0, 4.0, 6.0]
    m[7:9, 10:15] = True
    assert mask_to_box(m).tolist() == [3.0, 5.0, 15.0, 9.0]
    assert mask_to_box(np.zeros((3, 3), bool)) is None


def test_keep_components_modes() -> None:
    m = np.zeros((10, 10), bool)
    m[0:2, 0:2] = True  # 4 px
    m[5:8, 5:8] = True  # 9 px
    cam = np.zeros((10, 10), np.float32)
    cam[0:2, 0:2] = 1.0
    assert keep_components(m, "largest").sum() == 9
    assert keep_components(m, "all").sum() == 13
    assert keep_components(m, "max_cam", cam=cam).sum() == 4
    assert keep_components(m, "all", min_area=5).sum() == 9
    assert not keep_components(m, "largest", min_area=10).any()


def test_box_iou_and_clip() -> None:
    assert box_iou(np.array([0, 0, 2, 2]), np.array([1, 1, 3, 3])) == pytest.approx(1 / 7)
    assert box_iou(None, np.array([0, 0, 1, 1])) == 0.0
    assert clip_box(np.array([-5, 8, 30, 2]), width=20, height=10).tolist() == [0.0, 2.0, 20.0, 8.0]


def test_ellipse_in_box_area_close_to_pi_ab() -> None:
    e = ellipse_in_box(np.array([10, 20, 110, 60]), 100, 200)
    assert abs(e.sum() - math.pi * 50 * 20) / (math.pi * 50 * 20) < 0.01
    assert e[40, 60] and not e[20, 10]
    assert not ellipse_in_box(np.array([5, 5, 5, 9]), 10, 10).any()


def test_metrics_real_values_and_empty_conventions() -> None:
    a = np.zeros((4, 4), bool)
    a[:2] = True  # 8 px
    b = np.zeros((4, 4), bool)
    b[1:3] = True  # 8 px, overlap 4
    assert dice(a, b) == pytest.approx(0.5)
    assert iou(a, b) == pytest.approx(4 / 12)
    assert pixel_accuracy(a, b) == pytest.approx(8 / 16)
    empty = np.zeros((4, 4), bool)
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0
    assert math.isnan(dice(empty, empty, empty_value=float("nan")))
    assert dice(a, empty) == 0.0 and iou(empty, a) == 0.0
    batch = dice(np.stack([a, a, empty]), np.stack([b, a, empty]))
    assert batch.tolist() == pytest.approx([0.5, 1.0, 1.0])
    with pytest.raises(ValueError, match="shape"):
        dice(a, np.zeros((3, 4), bool))


def test_summarize_and_bootstrap() -> None:
    s = summarize([0.2, 0.4, 0.6, float("nan")])
    assert s.n == 3 and s.mean == pytest.approx(0.4) and s.std == pytest.approx(0.2)
    assert s.ci_low <= 0.4 <= s.ci_high and s.ci_low >= 0.2 and s.ci_high <= 0.6
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    assert bootstrap_ci([0.3]) == (0.3, 0.3)
    assert summarize([]).n == 0


def test_overlap_equals_the_three_metrics() -> None:
    from samprompt.metrics import overlap

    rng = np.random.default_rng(3)
    for _ in range(30):
        a, b = rng.random((2, 17, 23)) < rng.random(2)[:, None, None]
        assert overlap(a, b) == (dice(a, b), iou(a, b), pixel_accuracy(a, b))
    empty = np.zeros((4, 4), bool)
    assert overlap(empty, empty) == (1.0, 1.0, 1.0)
    assert overlap(empty, empty, empty_value=0.5)[:2] == (0.5, 0.5)
    with pytest.raises(ValueError, match="one \\(H, W\\) pair"):
        overlap(np.zeros((2, 4, 4), bool), np.zeros((2, 4, 4), bool))


def test_shared_components_computes_each_selection_once_and_only_inside_the_block() -> None:
    from samprompt.regions import shared_components

    m = np.zeros((10, 12), bool)
    m[0:2, 0:2] = True  # 4 px, most CAM
    m[5:8, 5:9] = True  # 12 px
    cam = np.zeros((10, 12), np.float32)
    cam[0:2, 0:2] = 1.0
    writeable = m.copy()
    m.flags.writeable = cam.flags.writeable = False
    assert keep_components(m) is not keep_components(m)  # no memo outside a block
    with shared_components():
        assert keep_components(writeable) is not keep_components(writeable)  # it could change: no memo
        writeable[:] = False
        assert not keep_components(writeable).any()
        largest = keep_components(m, "largest")
        assert keep_components(m, "largest") is largest and not largest.flags.writeable
        assert largest.sum() == 12 and keep_components(m, "max_cam", cam=cam).sum() == 4
        assert keep_components(m, "largest", min_area=13).sum() == 0  # min_area is part of the key
        same = m.view()
        same.flags.writeable = False
        assert keep_components(same, "largest") is not largest  # matched by identity, not value
        assert bbox_slices(m) is bbox_slices(m) and bbox_slices(writeable) is None
        with shared_components():  # nested: the same memo
            assert keep_components(m, "largest") is largest
        with pytest.raises(ValueError, match="read-only"):
            largest[0, 0] = True
    assert keep_components(m, "largest").flags.writeable
