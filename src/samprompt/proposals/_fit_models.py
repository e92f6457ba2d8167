"""The statistics of :func:`~samprompt.proposals.fit.fit_scorer` (private): the logistic models
(multiple-instance and instance-level), the pseudo labels of a fit without a negative class, and the
polarity scores with their resampled margin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

from samprompt.errors import DataError
from samprompt.proposals._fit_work import _Image
from samprompt.proposals.features import CAM_FEATURES, FEATURE_NAMES, REFINED_FEATURE_NAMES
from samprompt.proposals.scorer import CandidateScorer
from samprompt.regions import box_iou


def _standardise(X: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    mean[0], scale[0] = 0.0, 1.0
    Z = (X - mean) / scale
    Z[:, 0] = 1.0
    return Z, mean, scale


def _bounds(Z: NDArray[np.float64]) -> list[tuple[float | None, float | None]] | None:
    """L-BFGS-B bounds of the weights on standardised features ``Z``: the CAM features' weights are >= 0,
    the others free (``None`` when no CAM was given).

    More of the classifier's lesion evidence on a region must never make it LESS lesion-like. Unbounded,
    a multiple-instance fit may explain the image labels with the CAM itself (the classifier separates
    the classes already) through negative CAM weights and appearance shortcuts, and then picks regions
    away from the lesion: BUSI val, a plain ResNet18 at seed 1, fitted ``candidates`` Dice 0.007
    unbounded, 0.566 bounded, 0.608 with no CAM features (docs: quality)."""
    if not np.any(Z[:, list(CAM_FEATURES)] != 0):  # no CAM given: nothing to bound (and the same path)
        return None
    return [(0.0, None) if j in CAM_FEATURES else (None, None) for j in range(Z.shape[1])]


def _mil(bags: Sequence[NDArray[np.float64]], y: NDArray[np.bool_], l2: float) -> CandidateScorer:
    """Multiple-instance logistic model: image score = log-sum-exp of its regions' scores (CAM weights
    >= 0, see :func:`_bounds`)."""
    Z, mean, scale = _standardise(np.concatenate(bags))
    starts = np.cumsum([0] + [len(b) for b in bags[:-1]])
    cls_w = np.where(y, 0.5 / max(1, y.sum()), 0.5 / max(1, (~y).sum()))
    bag_of = np.repeat(np.arange(len(bags)), [len(b) for b in bags])

    def loss(w: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        s = Z @ w
        top = np.maximum.reduceat(s, starts)
        e = np.exp(s - top[bag_of])
        tot = np.add.reduceat(e, starts)
        S = top + np.log(tot)
        p = 1.0 / (1.0 + np.exp(-S))
        value = float(np.sum(cls_w * (np.logaddexp(0.0, S) - y * S))) + l2 * float(w[1:] @ w[1:])
        dS = cls_w * (p - y)
        g = Z.T @ (dS[bag_of] * e / tot[bag_of])
        g[1:] += 2 * l2 * w[1:]
        return value, g

    res = minimize(loss, np.zeros(Z.shape[1]), jac=True, method="L-BFGS-B", bounds=_bounds(Z),
                   options={"maxiter": 500})
    return CandidateScorer(res.x, mean, scale, names=_names(Z.shape[1]))


def _instances(X: NDArray[np.float64], y: NDArray[np.bool_], l2: float) -> CandidateScorer:
    """Class-balanced logistic model over single regions (CAM weights >= 0, see :func:`_bounds`)."""
    Z, mean, scale = _standardise(X)
    cls_w = np.where(y, 0.5 / max(1, y.sum()), 0.5 / max(1, (~y).sum()))

    def loss(w: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        s = Z @ w
        p = 1.0 / (1.0 + np.exp(-s))
        value = float(np.sum(cls_w * (np.logaddexp(0.0, s) - y * s))) + l2 * float(w[1:] @ w[1:])
        g = Z.T @ (cls_w * (p - y))
        g[1:] += 2 * l2 * w[1:]
        return value, g

    res = minimize(loss, np.zeros(Z.shape[1]), jac=True, method="L-BFGS-B", bounds=_bounds(Z),
                   options={"maxiter": 500})
    return CandidateScorer(res.x, mean, scale, names=_names(Z.shape[1]))


def _names(n: int) -> tuple[str, ...]:
    return FEATURE_NAMES if n == len(FEATURE_NAMES) else REFINED_FEATURE_NAMES


def _bag_scores(scorer: CandidateScorer, bags: Sequence[NDArray[np.float64]]) -> NDArray[np.float64]:
    return np.array([float(np.logaddexp.reduce(scorer(b))) for b in bags])


def _fit_stage(regions: Sequence[_Image | None], y: NDArray[np.bool_], l2: float, mil: bool) -> CandidateScorer:
    keep = [k for k, r in enumerate(regions) if r is not None]
    if not keep or not y[keep].any():
        raise DataError("fitting prompts: no lesion image has a candidate region")
    if mil:
        if y[keep].all():
            raise DataError("fitting prompts: no negative image has a candidate region of any polarity")
        return _mil([regions[k].F for k in keep], y[keep], l2)  # type: ignore[union-attr]
    X, t = _pseudo_labels([regions[k] for k in keep])  # type: ignore[misc]
    return _instances(X, t, l2)


def _pseudo_labels(regions: Sequence[_Image]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Each image's most evident region (positive) and its regions away from it (negatives)."""
    rows, labels = [], []
    for r in regions:
        if r.evidence is None:
            continue
        j = int(np.argmax(r.evidence))
        if r.evidence[j] <= 1.0:  # the CAM is not concentrated on any region: nothing to learn here
            continue
        rows.append(r.F[j])
        labels.append(True)
        for i, b in enumerate(r.boxes):
            if i != j and b is not None and (box_iou(b, r.boxes[j]) < 0.1 or r.evidence[i] < 0.5 * r.evidence[j]):
                rows.append(r.F[i])
                labels.append(False)
    t = np.array(labels, bool)
    if not t.any() or t.all():
        raise DataError("fitting prompts: the classifier's CAM is not concentrated on any candidate region "
                        "(no evidence to fit from); train a better classifier or add a negative class")
    return np.array(rows), t


def _polarity_score(regions: Sequence[_Image | None], y: NDArray[np.bool_], l2: float, mil: bool
                    ) -> tuple[float, NDArray[np.float64]]:
    """How well a polarity's regions explain the labels: ``(score, values)``. The score is the 2-fold
    held-out class-balanced image log-likelihood of the MIL model (higher = better, 0 = perfect), or the
    median best evidence; ``values[k]`` is image k's held-out log-likelihood (MIL) or best evidence (NaN
    where it has none: no-negative images without evidence)."""
    keep = [k for k, r in enumerate(regions) if r is not None]
    values = np.full(len(regions), np.nan)
    if mil:  # an image without any region scores -inf (right for a negative image, a miss for a lesion)
        yk = y[keep]
        if not yk.any():
            return 0.0, values
        folds = np.arange(len(keep)) % 2
        out = np.zeros(len(keep))
        for f in (0, 1) if not yk.all() else ():  # all regions in lesion images: they score alike
            tr = [keep[i] for i in np.flatnonzero(folds != f)]
            if y[tr].all() or not y[tr].any():
                return -np.inf, values
            m = _mil([regions[k].F for k in tr], y[tr], l2)  # type: ignore[union-attr]
            te = np.flatnonzero(folds == f)
            out[te] = _bag_scores(m, [regions[keep[i]].F for i in te])  # type: ignore[union-attr]
        empty = np.array([k for k in range(len(regions)) if regions[k] is None], int)
        S = np.concatenate([out, np.full(len(empty), -np.inf)])
        Y = np.concatenate([yk, y[empty]])
        # held-out class-balanced log-likelihood: it separates polarities whose AUCs tie (both 1.0)
        ll = -np.where(Y, np.logaddexp(0.0, -S), np.logaddexp(0.0, S))
        values[np.concatenate([np.asarray(keep, int), empty])] = ll
        return float(0.5 * ll[Y].mean() + 0.5 * (ll[~Y].mean() if (~Y).any() else 0.0)), values
    for k in keep:
        ev = regions[k].evidence  # type: ignore[union-attr]
        if ev is not None:
            values[k] = float(np.max(ev))
    values[[k for k in range(len(regions)) if regions[k] is None]] = 1.0  # no candidate: no evidence
    best = values[~np.isnan(values)]
    return (float(np.median(best)) if best.size else 0.0), values


def _polarity_margin(chosen: str, per_image: Mapping[str, NDArray[np.float64]], y: NDArray[np.bool_],
                     mil: bool, reps: int = 1000) -> dict[str, Any]:
    """How sure the polarity choice is: the chosen polarity's score minus the runner-up's, with a 95 %
    interval from resampling the images (seeded: the same images give the same interval); ``certain``
    when the interval excludes 0. Uses the per-image values of :func:`_polarity_score` (an image
    without a region in a polarity counts at the worst finite value seen)."""
    vals = {p: np.asarray(v, np.float64) for p, v in per_image.items()}
    finite = np.concatenate([v[np.isfinite(v)] for v in vals.values()])
    floor = float(finite.min()) - 1.0 if finite.size else -1.0

    def stat(v: NDArray[np.float64], idx: NDArray[np.int64]) -> float:
        v, yy = v[idx], y[idx]
        if mil:
            v = np.where(np.isfinite(v), v, floor)
            return float(0.5 * v[yy].mean() + 0.5 * (v[~yy].mean() if (~yy).any() else 0.0)) if yy.any() else 0.0
        v = v[~np.isnan(v)]
        return float(np.median(v)) if v.size else 0.0

    full = np.arange(len(y))
    others = [p for p in vals if p != chosen]
    runner = max(others, key=lambda p: stat(vals[p], full))
    diff = stat(vals[chosen], full) - stat(vals[runner], full)
    rng = np.random.default_rng(0)
    boots = []
    for _ in range(reps):
        idx = rng.integers(0, len(y), len(y))
        boots.append(stat(vals[chosen], idx) - stat(vals[runner], idx))
    lo, hi = (float(q) for q in np.percentile(boots, [2.5, 97.5]))
    return {"runner_up": runner, "difference": float(diff), "interval": [lo, hi], "certain": bool(lo > 0 or hi < 0)}
