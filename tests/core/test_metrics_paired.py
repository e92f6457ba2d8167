"""Paired bootstrap and prompt metrics in samprompt.metrics."""

from __future__ import annotations

import numpy as np
import pytest

from samprompt.metrics import bootstrap_ci, paired_bootstrap, points_inside


def test_paired_interval_is_narrower_than_unpaired_and_excludes_zero() -> None:
    rng = np.random.default_rng(0)
    image_difficulty = rng.uniform(0.2, 0.9, size=60)  # most spread is between images
    gt = image_difficulty + rng.normal(0, 0.01, 60)
    cam = image_difficulty - 0.05 + rng.normal(0, 0.01, 60)  # CAM prompts a little worse on every image
    s = paired_bootstrap(cam, gt, seed=1)
    assert s.n == 60 and s.mean_diff == pytest.approx(float((cam - gt).mean()))
    assert s.ci_low < s.mean_diff < s.ci_high < 0  # paired: clearly worse
    lo_c, hi_c = bootstrap_ci(cam, seed=1)
    lo_g, _ = bootstrap_ci(gt, seed=1)
    assert lo_g < hi_c  # unpaired intervals overlap: they cannot tell the difference
    assert (s.ci_high - s.ci_low) < 0.2 * (hi_c - lo_c)


def test_paired_bootstrap_drops_incomplete_pairs_and_checks_lengths() -> None:
    s = paired_bootstrap([0.5, np.nan, 0.7, 0.9], [0.4, 0.3, np.nan, 0.8])
    assert s.n == 2 and s.mean_a == pytest.approx(0.7) and s.mean_b == pytest.approx(0.6)
    assert np.isnan(paired_bootstrap([np.nan], [1.0]).mean_diff)
    with pytest.raises(ValueError, match="paired"):
        paired_bootstrap([1.0, 2.0], [1.0])


def test_points_inside_counts_pixels_with_edge_convention() -> None:
    gt = np.zeros((5, 6), bool)
    gt[1:3, 2:5] = True  # rows 1-2, cols 2-4
    assert points_inside([[2.0, 1.0], [4.99, 2.99], [5.0, 2.5], [1.99, 1.5]], gt) == 0.5
    assert points_inside([[6.0, 5.0]], np.ones((5, 6), bool)) == 1.0  # the far edge counts for the last pixel
    assert np.isnan(points_inside(np.zeros((0, 2)), gt))


def test_summary_reports_the_paired_dice_difference() -> None:
    from samprompt.report.tables import summarize_rows

    rows = []
    for image, (cam, gt) in {"a": (0.5, 0.9), "b": (0.7, 0.8), "c": (0.2, 0.9)}.items():
        for source, d in (("cam", cam), ("gt", gt)):
            rows.append({"image": image, "label": "benign", "strategy": "box", "source": source, "dice": d,
                         "iou": d, "pixel_accuracy": 1.0, "gt_empty": False, "has_prompt": True})
    (row,) = summarize_rows(rows)
    assert row["dice_diff"] == pytest.approx(np.mean([0.5 - 0.9, 0.7 - 0.8, 0.2 - 0.9]))
    assert row["dice_diff_ci_low"] <= row["dice_diff"] <= row["dice_diff_ci_high"] < 0
