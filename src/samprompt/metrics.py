"""Segmentation metrics (Dice, IoU, pixel accuracy) and their aggregation per class.

Conventions:

* Inputs are bool masks of identical shape, (H, W) for one pair or (K, H, W) for K pairs (vectorised).
* **Empty masks**: when BOTH prediction and ground truth are empty, Dice and IoU are ``1.0`` (a correct
  "nothing there", e.g. a normal image) — pass ``empty_value`` to choose otherwise (``float("nan")``
  excludes such pairs from means). When only one is empty, Dice and IoU are ``0.0``.
* Pixel accuracy is the fraction of pixels where prediction equals ground truth (always defined).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "PairedSummary",
    "Summary",
    "bootstrap_ci",
    "dice",
    "iou",
    "overlap",
    "paired_bootstrap",
    "pixel_accuracy",
    "points_inside",
    "summarize",
]


def _pair(pred: Any, target: Any) -> tuple[NDArray[np.bool_], NDArray[np.bool_], bool]:
    p, t = np.asarray(pred, dtype=bool), np.asarray(target, dtype=bool)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from ground-truth shape {t.shape}")
    if p.ndim not in (2, 3):
        raise ValueError(f"masks must be (H, W) or (K, H, W), got shape {p.shape}")
    single = p.ndim == 2
    return (p[None], t[None], single) if single else (p, t, single)


def _counts(p: NDArray[np.bool_], t: NDArray[np.bool_]) -> tuple[NDArray[np.int64], ...]:
    k = p.shape[0]
    pf, tf = p.reshape(k, -1), t.reshape(k, -1)
    inter = np.count_nonzero(pf & tf, axis=1)
    return inter, np.count_nonzero(pf, axis=1), np.count_nonzero(tf, axis=1)


def dice(pred: Any, target: Any, empty_value: float = 1.0) -> float | NDArray[np.float64]:
    """Dice coefficient ``2 |P ∩ T| / (|P| + |T|)``.

    Args:
        pred: (H, W) or (K, H, W) bool prediction.
        target: Ground truth of the same shape.
        empty_value: Value when both masks are empty.

    Returns:
        A float for (H, W) inputs, a (K,) float64 array for (K, H, W) inputs.

    Example:
        >>> import numpy as np
        >>> a = np.zeros((4, 4), bool); a[:2] = True
        >>> b = np.zeros((4, 4), bool); b[1:3] = True
        >>> round(dice(a, b), 3)
        0.5
    """
    p, t, single = _pair(pred, target)
    inter, sp, st = _counts(p, t)
    denom = sp + st
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(denom > 0, 2.0 * inter / np.maximum(denom, 1), empty_value)
    return float(out[0]) if single else out


def iou(pred: Any, target: Any, empty_value: float = 1.0) -> float | NDArray[np.float64]:
    """Intersection over union ``|P ∩ T| / |P ∪ T|`` (Jaccard); shapes and conventions as :func:`dice`."""
    p, t, single = _pair(pred, target)
    inter, sp, st = _counts(p, t)
    union = sp + st - inter
    out = np.where(union > 0, inter / np.maximum(union, 1), empty_value)
    return float(out[0]) if single else out


def pixel_accuracy(pred: Any, target: Any) -> float | NDArray[np.float64]:
    """Fraction of pixels where prediction equals ground truth; shapes as :func:`dice`."""
    p, t, single = _pair(pred, target)
    k = p.shape[0]
    out = np.count_nonzero((p == t).reshape(k, -1), axis=1) / float(p[0].size)
    return float(out[0]) if single else out


def overlap(pred: Any, target: Any, empty_value: float = 1.0) -> tuple[float, float, float]:
    """Dice, IoU and pixel accuracy of one (H, W) pair from ONE set of counts.

    The same values as :func:`dice`, :func:`iou` and :func:`pixel_accuracy` (same conventions) at about a
    third of their combined cost; the runner scores every mask with it.

    Example:
        >>> a = np.zeros((4, 4), bool); a[:2] = True
        >>> b = np.zeros((4, 4), bool); b[1:3] = True
        >>> tuple(round(v, 3) for v in overlap(a, b))
        (0.5, 0.333, 0.5)
    """
    p, t, single = _pair(pred, target)
    if not single:
        raise ValueError(f"overlap takes one (H, W) pair, got shape {p.shape}")
    inter, sp, st = _counts(p, t)
    denom, union = sp + st, sp + st - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(denom > 0, 2.0 * inter / np.maximum(denom, 1), empty_value)
    j = np.where(union > 0, inter / np.maximum(union, 1), empty_value)
    acc = (p[0].size - union + inter) / float(p[0].size)
    return float(d[0]), float(j[0]), float(acc[0])


def bootstrap_ci(
    values: Sequence[float] | NDArray[np.floating],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (NaN values ignored).

    Returns:
        ``(low, high)``; ``(nan, nan)`` for no values, ``(v, v)`` for a single value.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (float("nan"), float("nan"))
    if v.size == 1:
        return (float(v[0]), float(v[0]))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_resamples, v.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


@dataclass(frozen=True)
class Summary:
    """Aggregate of one metric over a group of images.

    Attributes:
        n: Number of finite values.
        mean: Mean (NaN when ``n == 0``).
        std: Sample standard deviation (ddof=1; 0 for ``n == 1``; NaN when ``n == 0``).
        ci_low: Lower bound of the bootstrap interval of the mean.
        ci_high: Upper bound of the bootstrap interval of the mean.
    """

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, float | int]:
        """Plain-dict form."""
        return asdict(self)


def summarize(values: Sequence[float] | NDArray[np.floating], *, confidence: float = 0.95, seed: int = 0) -> Summary:
    """Mean, std, n and bootstrap interval of ``values`` (NaN values are ignored).

    Example:
        >>> s = summarize([0.5, 0.7, 0.9])
        >>> s.n, round(s.mean, 2), round(s.std, 2)
        (3, 0.7, 0.2)
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        nan = float("nan")
        return Summary(0, nan, nan, nan, nan)
    lo, hi = bootstrap_ci(v, confidence=confidence, seed=seed)
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return Summary(int(v.size), float(v.mean()), std, lo, hi)


@dataclass(frozen=True)
class PairedSummary:
    """Paired comparison of two measurements of the same images (e.g. CAM- vs ground-truth-prompt Dice).

    Attributes:
        n: Number of images where both values are finite.
        mean_a: Mean of ``a`` over those images.
        mean_b: Mean of ``b`` over those images.
        mean_diff: Mean of ``a - b``.
        ci_low: Lower bound of the paired bootstrap interval of ``mean_diff``.
        ci_high: Upper bound of that interval.
    """

    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float


def paired_bootstrap(
    a: Sequence[float] | NDArray[np.floating],
    b: Sequence[float] | NDArray[np.floating],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> PairedSummary:
    """Percentile bootstrap interval of ``mean(a - b)``, resampling IMAGES (pairs), not values.

    Pairing matters: the two interval of two unpaired means overlap far more often than the interval of
    their paired difference, because most of the spread is between images, not between prompts.

    Args:
        a: (N,) values of the first measurement, one per image.
        b: (N,) values of the second measurement, same images, same order.
        confidence: Level of the interval.
        n_resamples: Bootstrap resamples.
        seed: Seed of the resampling.

    Returns:
        A :class:`PairedSummary`; pairs with a NaN on either side are left out (``n`` counts the rest);
        all NaN when no pair is left.

    Raises:
        ValueError: If ``a`` and ``b`` differ in length.

    Example:
        >>> s = paired_bootstrap([0.8, 0.6, 0.7], [0.9, 0.7, 0.8])
        >>> s.n, round(s.mean_diff, 3), (round(s.ci_low, 3), round(s.ci_high, 3))
        (3, -0.1, (-0.1, -0.1))
    """
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"paired_bootstrap: a has {x.size} values and b {y.size}; they must be paired")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size == 0:
        nan = float("nan")
        return PairedSummary(0, nan, nan, nan, nan, nan)
    lo, hi = bootstrap_ci(x - y, confidence=confidence, n_resamples=n_resamples, seed=seed)
    return PairedSummary(int(x.size), float(x.mean()), float(y.mean()), float((x - y).mean()), lo, hi)


def points_inside(points: Any, gt: Any) -> float:
    """Fraction of ``points`` that fall on a foreground pixel of ``gt`` (a prompt metric).

    Args:
        points: (N, 2) float, x then y, original-image pixels (pixel ``(col, row)`` covers
            ``[col, col + 1) x [row, row + 1)``); points on the far edge count for the last pixel.
        gt: (H, W) bool ground truth.

    Returns:
        The fraction in [0, 1]; NaN when there is no point.

    Example:
        >>> gt = np.zeros((4, 4), bool); gt[1:3, 1:3] = True
        >>> points_inside([[1.5, 1.5], [3.5, 0.5]], gt)
        0.5
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    mask = np.asarray(gt, dtype=bool)
    if pts.shape[0] == 0:
        return float("nan")
    h, w = mask.shape
    cols = np.clip(np.floor(pts[:, 0]).astype(np.int64), 0, w - 1)
    rows = np.clip(np.floor(pts[:, 1]).astype(np.int64), 0, h - 1)
    return float(mask[rows, cols].mean())
