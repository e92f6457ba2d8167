"""The statistics of :func:`~samprompt.proposals.fit.fit_scorer` (private): the logistic models
(multiple-instance, class-contrast attention and instance-level), the pseudo labels of a fit from the
classifier's evidence, and the polarity scores with their resampled margin.

A fit has one of three modes (:data:`Mode`): ``mil`` (a negative class), ``contrast`` (at least two
classes; a negative class counts as one) and ``evidence`` (no negative class, the classifier teaches).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

from samprompt.errors import DataError
from samprompt.proposals._fit_work import _Image
from samprompt.proposals.features import CAM_FEATURES, FEATURE_NAMES, REFINED_FEATURE_NAMES
from samprompt.proposals.scorer import CandidateScorer
from samprompt.regions import box_iou

#: How a stage is fit: ``mil`` (negative class), ``contrast`` (the classes), ``evidence`` (classifier).
Mode = Literal["mil", "contrast", "evidence"]
#: Random starts of the class-contrast model (non-convex); the lowest training loss wins.
CONTRAST_RESTARTS = 8
#: L2 penalties the class-contrast fit chooses from (by held-out class log-likelihood, per polarity).
CONTRAST_L2: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)


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


class _Contrast:
    """A fitted class-contrast attention model (see :func:`_contrast`): standardisation, attention
    weights ``u`` (d,), class weights ``V`` (d, K), biases ``b`` (K,) and the training loss."""

    def __init__(self, mean: NDArray[np.float64], scale: NDArray[np.float64], u: NDArray[np.float64],
                 V: NDArray[np.float64], b: NDArray[np.float64], loss: float) -> None:
        self.mean, self.scale, self.u, self.V, self.b, self.loss = mean, scale, u, V, b, loss

    def scorer(self) -> CandidateScorer:
        """The attention as a candidate scorer (higher = the region the image's class is read from)."""
        w = np.concatenate([[0.0], self.u])
        return CandidateScorer(w, self.mean, self.scale, names=_names(len(w)))

    def loglik(self, bags: Sequence[NDArray[np.float64]], cls: NDArray[np.int64]) -> NDArray[np.float64]:
        """Per image, the log-probability of its class ``cls[k]`` given its regions ``bags[k]``."""
        out = np.empty(len(bags))
        for k, F in enumerate(bags):
            X = ((F - self.mean) / self.scale)[:, 1:]
            s = X @ self.u
            a = np.exp(s - s.max())
            L = (a / a.sum()) @ (X @ self.V) + self.b
            out[k] = float(L[cls[k]] - np.logaddexp.reduce(L))
        return out


def _contrast(bags: Sequence[NDArray[np.float64]], cls: NDArray[np.int64], l2: float,
              restarts: int = CONTRAST_RESTARTS) -> _Contrast:
    """Fit the class-contrast attention model (at least two classes; a negative class may be one).

    Every lesion image shows its lesion, and the lesion is what differs between lesion classes (benign
    and malignant masses differ in shape, margin and echo; the tissue around them does not). So each
    image attends to its regions (``a = softmax(Z @ u)`` over the image's regions) and predicts its class
    from the attended regions (``logits = sum_j a_j (Z_j @ V) + b``, ``V`` of shape (d, K)); the
    class-balanced cross-entropy plus ``l2 * (|u|^2 + |V|^2)`` is minimised with L-BFGS from ``restarts``
    seeded random starts (the model is not convex), keeping the lowest loss. The attention weights ``u``
    are the scorer: the region an image attends to is the one whose appearance tells its class. CAM
    features' attention weights are bounded below by 0 (:func:`_bounds`). Deterministic (fixed seed).

    Args:
        bags: Per image, its regions' features ((n_i, d) with the constant in column 0).
        cls: (N,) class index of each image, 0..K-1 (K >= 2).
        l2: L2 penalty on standardised features.
        restarts: Random starts.
    """
    Z, mean, scale = _standardise(np.concatenate(bags))
    sizes = np.array([len(b) for b in bags])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    bag_of = np.repeat(np.arange(len(bags)), sizes)
    K = max(2, int(cls.max()) + 1)
    counts = np.bincount(cls, minlength=K)
    w_img = 1.0 / (np.count_nonzero(counts) * counts[cls])  # class-balanced: every present class weighs alike
    Y = np.eye(K)[cls]
    X = Z[:, 1:]  # the constant's role is played by the per-class bias b
    d = X.shape[1]

    def loss(p: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        u, V, b = p[:d], p[d:d + d * K].reshape(d, K), p[d + d * K:]
        s = X @ u
        top = np.maximum.reduceat(s, starts)
        e = np.exp(s - top[bag_of])
        a = e / np.add.reduceat(e, starts)[bag_of]
        C = X @ V
        L = np.add.reduceat(a[:, None] * C, starts) + b
        L = L - L.max(axis=1, keepdims=True)
        logp = L - np.log(np.exp(L).sum(axis=1, keepdims=True))
        value = float(-(w_img * (logp * Y).sum(axis=1)).sum()) + l2 * float(u @ u + (V * V).sum())
        dL = w_img[:, None] * (np.exp(logp) - Y)
        g_a = (C * dL[bag_of]).sum(axis=1)
        ds = a * (g_a - np.add.reduceat(a * g_a, starts)[bag_of])
        gu = X.T @ ds + 2 * l2 * u
        gV = X.T @ (a[:, None] * dL[bag_of]) + 2 * l2 * V
        return value, np.concatenate([gu, gV.ravel(), dL.sum(axis=0)])

    full = _bounds(Z)
    bounds = None if full is None else full[1:] + [(None, None)] * (d * K + K)
    rng = np.random.default_rng(0)
    best: Any = None
    for _ in range(max(1, restarts)):
        p0 = np.concatenate([rng.normal(0.0, 0.5, d), rng.normal(0.0, 0.1, d * K), np.zeros(K)])
        if bounds is not None:  # a start inside the bounds
            p0[:d] = np.where([lo is not None for lo, _ in bounds[:d]], np.abs(p0[:d]), p0[:d])
        res = minimize(loss, p0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 1000})
        if best is None or res.fun < best.fun:
            best = res
    x = best.x
    return _Contrast(mean, scale, x[:d], x[d:d + d * K].reshape(d, K), x[d + d * K:], float(best.fun))


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


def _fit_stage(regions: Sequence[_Image | None], y: NDArray[np.bool_], l2: float, mode: Mode,
               cls: NDArray[np.int64] | None = None) -> CandidateScorer:
    """One stage's scorer from each image's regions (``None``: the image has none): multiple-instance
    (``mil``), class-contrast attention (``contrast``, needs ``cls``) or the classifier's evidence."""
    keep = [k for k, r in enumerate(regions) if r is not None]
    if not keep or not y[keep].any():
        raise DataError("fitting prompts: no lesion image has a candidate region")
    if mode == "mil":
        if y[keep].all():
            raise DataError("fitting prompts: no negative image has a candidate region of any polarity")
        return _mil([regions[k].F for k in keep], y[keep], l2)  # type: ignore[union-attr]
    if mode == "contrast":
        if cls is None or len(np.unique(cls[keep])) < 2:
            raise DataError("fitting prompts: the images with candidate regions are all of one class")
        _, codes = np.unique(cls[keep], return_inverse=True)
        return _contrast([regions[k].F for k in keep], codes, l2).scorer()  # type: ignore[union-attr]
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


def _polarity_score(regions: Sequence[_Image | None], y: NDArray[np.bool_], l2: float, mode: Mode,
                    cls: NDArray[np.int64] | None = None) -> tuple[float, NDArray[np.float64], float]:
    """How well a polarity's regions explain the labels: ``(score, values, l2)``. The score is the 2-fold
    held-out class-balanced image log-likelihood of the MIL model (``mil``) or of the class-contrast
    model (``contrast``, at the best L2 penalty of :data:`CONTRAST_L2`, which is returned; otherwise
    ``l2`` is); higher = better, 0 = perfect; or the median best evidence (``evidence``).
    ``values[k]`` is image k's held-out log-likelihood or best evidence (NaN where it has none:
    evidence images without evidence)."""
    keep = [k for k, r in enumerate(regions) if r is not None]
    values = np.full(len(regions), np.nan)
    if mode == "contrast":
        tried = [(*_contrast_score(regions, keep, cls, penalty), penalty) for penalty in CONTRAST_L2]
        return max(tried, key=lambda t: t[0])
    if mode == "mil":  # an image without any region scores -inf (right for a negative image, a miss for a lesion)
        yk = y[keep]
        if not yk.any():
            return 0.0, values, l2
        folds = np.arange(len(keep)) % 2
        out = np.zeros(len(keep))
        for f in (0, 1) if not yk.all() else ():  # all regions in lesion images: they score alike
            tr = [keep[i] for i in np.flatnonzero(folds != f)]
            if y[tr].all() or not y[tr].any():
                return -np.inf, values, l2
            m = _mil([regions[k].F for k in tr], y[tr], l2)  # type: ignore[union-attr]
            te = np.flatnonzero(folds == f)
            out[te] = _bag_scores(m, [regions[keep[i]].F for i in te])  # type: ignore[union-attr]
        empty = np.array([k for k in range(len(regions)) if regions[k] is None], int)
        S = np.concatenate([out, np.full(len(empty), -np.inf)])
        Y = np.concatenate([yk, y[empty]])
        # held-out class-balanced log-likelihood: it separates polarities whose AUCs tie (both 1.0)
        ll = -np.where(Y, np.logaddexp(0.0, -S), np.logaddexp(0.0, S))
        values[np.concatenate([np.asarray(keep, int), empty])] = ll
        return float(0.5 * ll[Y].mean() + 0.5 * (ll[~Y].mean() if (~Y).any() else 0.0)), values, l2
    for k in keep:
        ev = regions[k].evidence  # type: ignore[union-attr]
        if ev is not None:
            values[k] = float(np.max(ev))
    values[[k for k in range(len(regions)) if regions[k] is None]] = 1.0  # no candidate: no evidence
    best = values[~np.isnan(values)]
    return (float(np.median(best)) if best.size else 0.0), values, l2


def _contrast_score(regions: Sequence[_Image | None], keep: Sequence[int], cls: NDArray[np.int64] | None,
                    l2: float) -> tuple[float, NDArray[np.float64]]:
    """:func:`_polarity_score` of the class-contrast mode: 2-fold held-out log-probability of each image's
    class (folds alternate within each class); an image without a region gets the chance level
    ``log(1 / K)``. The score is the mean over classes of the classes' mean values."""
    if cls is None:
        raise ValueError("the contrast mode needs the images' classes")
    codes = np.unique(cls, return_inverse=True)[1]
    K = int(codes.max()) + 1
    values = np.full(len(regions), np.log(1.0 / K))
    kept = np.asarray(keep, int)
    rank = np.zeros(len(kept), int)
    for c in range(K):
        where = np.flatnonzero(codes[kept] == c)
        rank[where] = np.arange(len(where))
    folds = rank % 2
    for f in (0, 1):
        tr, te = kept[folds != f], kept[folds == f]
        if len(np.unique(codes[tr])) < 2 or not len(te):
            return -np.inf, values
        _, tr_codes = np.unique(codes[tr], return_inverse=True)
        m = _contrast([regions[k].F for k in tr], tr_codes, l2)
        present = np.unique(codes[tr])  # the model's classes, in code order
        ok = np.isin(codes[te], present)
        te_codes = np.searchsorted(present, codes[te][ok])
        values[te[ok]] = m.loglik([regions[k].F for k in te[ok]], te_codes)
        values[te[~ok]] = -np.inf  # a class this half did not train on (rare: min_images per class)
    return _class_mean(values, codes), values


def _class_mean(values: NDArray[np.float64], groups: NDArray[np.int64]) -> float:
    """Mean over the groups present of each group's mean value."""
    return float(np.mean([values[groups == g].mean() for g in np.unique(groups)]))


def _polarity_margin(chosen: str, per_image: Mapping[str, NDArray[np.float64]], groups: NDArray[np.int64],
                     loglik: bool, reps: int = 1000) -> dict[str, Any]:
    """How sure the polarity choice is: the chosen polarity's score minus the runner-up's, with a 95 %
    interval from resampling the images (seeded: the same images give the same interval); ``certain``
    when the interval excludes 0. Uses the per-image values of :func:`_polarity_score`: held-out
    log-likelihoods (``loglik``; the score is the mean over ``groups`` (lesion / negative, or the lesion
    classes) of the group means, an image without a region in a polarity counting at the worst finite
    value seen) or best evidence (the median)."""
    vals = {p: np.asarray(v, np.float64) for p, v in per_image.items()}
    finite = np.concatenate([v[np.isfinite(v)] for v in vals.values()])
    floor = float(finite.min()) - 1.0 if finite.size else -1.0

    def stat(v: NDArray[np.float64], idx: NDArray[np.int64]) -> float:
        v, g = v[idx], groups[idx]
        if loglik:
            return _class_mean(np.where(np.isfinite(v), v, floor), g)
        v = v[~np.isnan(v)]
        return float(np.median(v)) if v.size else 0.0

    full = np.arange(len(groups))
    others = [p for p in vals if p != chosen]
    runner = max(others, key=lambda p: stat(vals[p], full))
    diff = stat(vals[chosen], full) - stat(vals[runner], full)
    rng = np.random.default_rng(0)
    boots = []
    for _ in range(reps):
        idx = rng.integers(0, len(groups), len(groups))
        boots.append(stat(vals[chosen], idx) - stat(vals[runner], idx))
    lo, hi = (float(q) for q in np.percentile(boots, [2.5, 97.5]))
    return {"runner_up": runner, "difference": float(diff), "interval": [lo, hi], "certain": bool(lo > 0 or hi < 0)}
