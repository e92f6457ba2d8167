"""Per-image scores: one row per image × strategy × prompt source (``cam`` or ``gt``).

Columns of a row (and of ``metrics.csv``), see :data:`METRIC_COLUMNS`:

* ``dice``, ``iou``, ``pixel_accuracy`` — segmentation vs the ground truth (:mod:`samprompt.metrics`;
  both masks empty = 1.0). Empty (NaN) when the image has no ground-truth mask.
* ``box_iou`` — IoU of the prompt's box with the ground-truth mask's bounding box.
* ``points_inside`` — fraction of the prompt's positive points that fall inside the lesion.
* ``box_prior_dice`` — Dice of the ellipse inscribed in the prompt's box vs the ground truth (what the box
  alone is worth, :func:`samprompt.regions.ellipse_in_box`).
* ``n_points``, ``score`` (the segmenter's predicted quality), ``has_prompt``, ``pred_fraction`` (fraction
  of the image predicted as foreground; on images without a lesion it is the false-positive area).
* ``gt_empty`` — the ground-truth mask has no foreground (e.g. a normal image).

The three prompt-geometry columns are NaN where they do not apply: without a lesion, or for a strategy
that makes no box (``box_iou``, ``box_prior_dice``) or no point (``points_inside``). An image for which no
prompt could be made is a MISS, never skipped: its mask is empty (Dice 0 where a lesion exists) and every
geometry column that applies to the strategy is 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from samprompt.metrics import dice, overlap, points_inside
from samprompt.prompts.base import Emits, Prompt, PromptStrategy
from samprompt.regions import box_iou, ellipse_in_box, mask_to_box

__all__ = ["METRIC_COLUMNS", "StrategyKind", "score_row", "strategy_kind"]

#: Column order of ``metrics.csv``.
METRIC_COLUMNS: tuple[str, ...] = (
    "image", "label", "split", "strategy", "source", "predicted", "dice", "iou", "pixel_accuracy",
    "box_iou", "points_inside", "n_points", "box_prior_dice", "score", "has_prompt", "pred_fraction",
    "gt_empty",
)

_NAN = float("nan")


@dataclass(frozen=True)
class StrategyKind:
    """Whether a strategy's prompts carry a box and/or positive points."""

    has_box: bool
    has_points: bool


def strategy_kind(strategy: PromptStrategy) -> StrategyKind:
    """What a strategy's prompts carry, read from its declaration :attr:`PromptStrategy.emits`.

    Used to score a missing prompt as a miss on exactly the geometry columns the strategy would have
    filled. Nothing is run: a strategy that does not declare ``emits`` counts as making both (with a
    deprecation warning when its class was defined).
    """
    emits = strategy.emits
    return StrategyKind(Emits.BOX in emits, Emits.POINTS in emits)


def score_row(
    *,
    prompt: Prompt | None,
    mask: NDArray[np.bool_],
    score: float,
    gt: NDArray[np.bool_] | None,
    kind: StrategyKind,
) -> dict[str, Any]:
    """The metric columns of one image × strategy × source (see the module docstring).

    Args:
        prompt: The prompt (original-image pixels), or ``None`` when none could be made.
        mask: (H, W) bool segmentation.
        score: The segmenter's score.
        gt: (H, W) bool ground truth, or ``None`` when the image has none.
        kind: What the strategy makes (:func:`strategy_kind`).
    """
    has_prompt = prompt is not None
    n_points = 0 if prompt is None else int((prompt.point_labels == 1).sum())
    row: dict[str, Any] = {
        "dice": _NAN, "iou": _NAN, "pixel_accuracy": _NAN, "box_iou": _NAN, "points_inside": _NAN,
        "n_points": n_points, "box_prior_dice": _NAN, "score": float(score) if has_prompt else 0.0,
        "has_prompt": has_prompt, "pred_fraction": np.count_nonzero(mask) / mask.size, "gt_empty": None,
    }
    if gt is None:
        return row
    row["dice"], row["iou"], row["pixel_accuracy"] = overlap(mask, gt)
    lesion = bool(gt.any())
    row["gt_empty"] = not lesion
    if not lesion:
        return row
    gt_box = mask_to_box(gt)
    H, W = gt.shape
    if prompt is None:
        if kind.has_box:
            row["box_iou"] = row["box_prior_dice"] = 0.0
        if kind.has_points:
            row["points_inside"] = 0.0
        return row
    if prompt.box is not None:
        row["box_iou"] = box_iou(prompt.box, gt_box)
        row["box_prior_dice"] = float(dice(ellipse_in_box(prompt.box, H, W), gt))
    row["points_inside"] = points_inside(prompt.points[prompt.point_labels == 1], gt)  # positive points
    return row

