"""Candidate lesion regions of an image: proposal, features, labels-only scoring and refinement.

The machinery behind the ``candidates`` prompt strategy (:mod:`samprompt.prompts.candidates`); see that
module for the method and ``docs/quality.md`` for how the default scorers were fit (image labels only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi
from skimage.filters import threshold_multiotsu, threshold_otsu
from skimage.transform import resize

from samprompt._arrays import as_image
from samprompt.prompts.base import Prompt
from samprompt.regions import mask_to_box

__all__ = [
    "CAM_FEATURES",
    "DEFAULT_MEAN",
    "DEFAULT_SCALE",
    "DEFAULT_WEIGHTS",
    "FEATURE_NAMES",
    "REFINED_DEFAULT_MEAN",
    "REFINED_DEFAULT_SCALE",
    "REFINED_DEFAULT_WEIGHTS",
    "REFINED_FEATURE_NAMES",
    "Candidate",
    "CandidateScorer",
    "cam_features",
    "candidate_features",
    "propose_candidates",
    "refine_candidates",
    "under_smaller_region",
]


#: Names of the entries of :func:`candidate_features`, in order (index 0 is the constant 1).
FEATURE_NAMES: tuple[str, ...] = (
    "bias", "log_area", "log_area_sq", "solidity", "extent", "aspect", "cx_dev", "cy", "cy_sq",
    "border_touch", "border_dist", "contrast", "contrast_z", "local_contrast", "mean_int", "below_above",
    "n_thresholds", "cam_mean", "cam_max", "cam_mass", "cam_rank",
)
#: Indices of the CAM features (filled by :func:`cam_features`; zero without a CAM).
CAM_FEATURES: tuple[int, ...] = tuple(range(FEATURE_NAMES.index("cam_mean"), len(FEATURE_NAMES)))

#: Features of a REFINED candidate (:func:`refine_candidates`): :data:`FEATURE_NAMES` computed on the
#: refined region (``n_thresholds`` = log of how many of the top-k refined regions agree with it, IoU >
#: 0.6), then: the first-stage score and ``1 / (1 + rank)``, the polar segmenter's confidence, IoU of the
#: refined region with its candidate, mean gradient magnitude on the refined boundary, intensity spread
#: inside, brightness below the region minus beside it (posterior enhancement / shadowing), log area
#: growth.
REFINED_FEATURE_NAMES: tuple[str, ...] = FEATURE_NAMES + (
    "stage1_score", "stage1_rank", "polar_score", "stability", "edge", "homogeneity", "posterior_side", "growth",
)

#: Default scorer: a logistic multiple-instance model over :data:`FEATURE_NAMES`, on features standardised
#: with :data:`DEFAULT_MEAN` / :data:`DEFAULT_SCALE`, fit on the BUSI train split (samprompt split, seed 0)
#: with IMAGE LABELS ONLY (lesion vs normal image; an image's score is the log-sum-exp of its candidates'
#: scores), L2 = 1e-3 chosen by validation image-level AUC (labels only). Image features only: the CAM
#: weights are 0 because the CAM features of a from-scratch classifier did not help (docs/quality.md).
DEFAULT_WEIGHTS: tuple[float, ...] = (
    -8.102, 1.007, -0.6664, 0.7941, 0.804, -1.362, -0.2243, -0.3693, -0.8301, -1.357, 0.5307, 0.4924, 1.371, -0.1034, -1.079, 0.0259, 0.33, 0, 0, 0, 0,
)
DEFAULT_MEAN: tuple[float, ...] | None = (
    0, -4.285, 20.42, 0.8019, 0.5818, 0.66, 0.2521, 0.5063, 0.3324, 0.702, 0.07132, 0.4052, -4.435e-18, 0.5385, 0.6846, -0.3891, 0.07519, 0, 0, 0, 0,
)
DEFAULT_SCALE: tuple[float, ...] | None = (
    1, 1.435, 11.17, 0.145, 0.1449, 1.005, 0.1533, 0.2757, 0.2861, 0.8525, 0.09459, 0.3299, 1, 0.3351, 0.3819, 0.665, 0.2396, 1, 1, 1, 1,
)

#: Default second-stage scorer over :data:`REFINED_FEATURE_NAMES` (see :func:`refine_candidates`): the same
#: labels-only multiple-instance logistic model, fit on the refined top-k regions of the BUSI train split
#: (lesion vs normal image labels only), L2 = 1e-2 chosen by validation image-level AUC (labels only); CAM
#: weights 0. ``benchmarks/quality_prompts.py eval2`` prints them.
REFINED_DEFAULT_WEIGHTS: tuple[float, ...] = (
    -1.798, 0.1855, -0.1526, 0.07286, -0.155, -0.08341, 0.01743, -0.009583, -0.09537, -0.101, -0.03107, 0.3063, 0.2564, 0.03949, -0.151, -0.1207, 0.2054, 0.0, 0.0, 0.0, 0.0, 0.8221, 0.2913, 0.3705, 0.07294, 0.5087, 0.08222, 0.3466, 0.04085,
)
REFINED_DEFAULT_MEAN: tuple[float, ...] | None = (
    0.0, -2.716, 9.544, 0.9578, 0.777, 0.3439, 0.142, 0.442, 0.2318, 0.5339, 0.09735, 0.8604, -1.813e-17, 0.5856, 0.6582, -0.6991, 0.672, 0.0, 0.0, 0.0, 0.0, -1.889, 0.4083, 0.4794, 0.6463, 0.9661, 0.4644, 0.02548, 0.3535,
)
REFINED_DEFAULT_SCALE: tuple[float, ...] | None = (
    1.0, 1.471, 8.75, 0.01826, 0.05362, 0.3876, 0.1201, 0.1907, 0.1794, 0.8866, 0.09911, 0.4156, 1.0, 0.4209, 0.2847, 0.9466, 0.5648, 1.0, 1.0, 1.0, 1.0, 2.426, 0.2861, 0.1532, 0.1343, 0.5302, 0.2027, 0.5659, 0.239,
)


@dataclass(frozen=True, eq=False)
class Candidate:
    """One candidate region.

    Attributes:
        mask: (h, w) bool at the WORKING resolution (see ``scale``).
        scale: ``(sy, sx)`` working pixels per original pixel.
        hits: How many thresholds produced (nearly) this region.
    """

    mask: NDArray[np.bool_]
    scale: tuple[float, float]
    hits: int = 1

    def box(self) -> NDArray[np.float32]:
        """Bounding box in ORIGINAL pixels (pixel edges)."""
        b = mask_to_box(self.mask)
        if b is None:
            raise ValueError("a candidate's mask is empty")
        sy, sx = self.scale
        return np.array([b[0] / sx, b[1] / sy, b[2] / sx, b[3] / sy], np.float32)

    def full_mask(self, shape: tuple[int, int]) -> NDArray[np.bool_]:
        """The region at the original (H, W)."""
        scaled: NDArray[np.float64] = resize(self.mask.astype(np.float32), shape, order=1)
        return scaled > 0.5


def _grey(image: Any) -> NDArray[np.float32]:
    arr = np.asarray(image)
    if arr.ndim == 2 and arr.dtype != np.uint8:
        return arr.astype(np.float32)
    grey: NDArray[np.float32] = as_image(arr).astype(np.float32).mean(axis=2) / 255.0
    return grey


class _Work:
    """One image prepared once for all stages: its grey version at full size (``grey``), the smoothed
    working copy (``small``, what :func:`propose_candidates`, :func:`candidate_features` and
    :func:`refine_candidates` each used to recompute) and its local-darkness maps (``local``)."""

    def __init__(self, image: Any, sigma: float, *, work_size: int = 128,
                 shape: tuple[int, int] | None = None) -> None:
        self.grey = _grey(image)
        H, W = self.grey.shape
        if shape is None:
            s = min(1.0, work_size / max(H, W))
            shape = (max(8, round(H * s)), max(8, round(W * s)))
        # anti-aliasing is a no-op unless the image is shrunk (its Gaussian width is then 0)
        small = resize(self.grey, shape, order=1, anti_aliasing=True).astype(np.float32)
        self.small = ndi.gaussian_filter(small, sigma) if sigma > 0 else small
        self.sigma = sigma
        self.scale = (shape[0] / H, shape[1] / W)
        self._local: dict[float, NDArray[np.float32]] = {}

    def local(self, width: float) -> NDArray[np.float32]:
        """``small`` minus its blur of width ``width`` x its long side (dark = negative)."""
        if width not in self._local:
            self._local[width] = self.small - ndi.gaussian_filter(self.small, width * max(self.small.shape))
        return self._local[width]


def _iou(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    inter = np.count_nonzero(a & b)
    return inter / max(1, int(np.count_nonzero(a | b)))


def _crop_around(mask: NDArray[np.bool_], pad: int) -> tuple[slice, slice]:
    """The bounding box of ``mask`` grown by ``pad`` pixels, clipped to the array."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (slice(max(0, ys[0] - pad), min(h, ys[-1] + 1 + pad)),
            slice(max(0, xs[0] - pad), min(w, xs[-1] + 1 + pad)))


def _fill_holes(region: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """``ndi.binary_fill_holes`` of a non-empty mask, computed on its box plus a 1-pixel frame (the same
    result: background touching the box's edge reaches the image border around the box)."""
    sl = _crop_around(region, 1)
    out = np.zeros_like(region)
    out[sl] = ndi.binary_fill_holes(region[sl])
    return out


def _ring(mask: NDArray[np.bool_], iterations: int) -> NDArray[np.bool_]:
    """``binary_dilation(mask, iterations) & ~mask`` of a non-empty mask, computed around its box."""
    sl = _crop_around(mask, iterations)
    out = np.zeros_like(mask)
    out[sl] = ndi.binary_dilation(mask[sl], iterations=iterations) & ~mask[sl]
    return out


def _shrink_mask(full: NDArray[np.bool_], shape: tuple[int, int]) -> NDArray[np.bool_]:
    """``resize(full.astype(np.float32), shape, order=1) > 0.5`` (scikit-image's anti-aliased linear
    resize) with the anti-aliasing blur computed only near the mask: away from it the blur of zeros is
    exactly zero, so the values, and the result, are the same (``tests/quality`` checks it)."""
    if not full.any():
        return np.zeros(shape, bool)
    factors = np.divide(full.shape, shape)
    sigma = np.maximum(0, (factors - 1) / 2)  # scikit-image's default anti-aliasing width
    radius = [int(4.0 * s + 0.5) for s in sigma]  # scipy's truncate = 4
    ys = np.flatnonzero(full.any(axis=1))
    xs = np.flatnonzero(full.any(axis=0))
    H, W = full.shape
    # blur a window of 2 radii around the mask (exact within 1 radius), keep the inner 1-radius part
    outer = (slice(max(0, ys[0] - 2 * radius[0]), min(H, ys[-1] + 1 + 2 * radius[0])),
             slice(max(0, xs[0] - 2 * radius[1]), min(W, xs[-1] + 1 + 2 * radius[1])))
    inner = (slice(max(0, ys[0] - radius[0]), min(H, ys[-1] + 1 + radius[0])),
             slice(max(0, xs[0] - radius[1]), min(W, xs[-1] + 1 + radius[1])))
    blurred_outer = ndi.gaussian_filter(full[outer].astype(np.float32), sigma, mode="mirror")
    blurred = np.zeros(full.shape, np.float32)
    blurred[inner] = blurred_outer[inner[0].start - outer[0].start:inner[0].stop - outer[0].start,
                                   inner[1].start - outer[1].start:inner[1].stop - outer[1].start]
    scaled: NDArray[np.float64] = resize(blurred, shape, order=1, anti_aliasing=False)
    return scaled > 0.5


def propose_candidates(
    image: Any,
    *,
    work_size: int = 128,
    sigma: float = 1.5,
    quantiles: Sequence[float] = (0.1, 0.2, 0.3, 0.4),
    local_sigma: float = 0.15,
    min_area: float = 0.002,
    max_area: float = 0.4,
    opening: Sequence[int] | int = (1,),
    max_candidates: int = 60,
    segments: Sequence[float] = (50.0, 200.0),
) -> list[Candidate]:
    """Dark compact candidate regions of one image (see the module docstring).

    Args:
        image: (H, W) or (H, W, 3) uint8, or (H, W) float grey in [0, 1].
        work_size: Long side of the working image.
        sigma: Gaussian smoothing (working pixels) before thresholding.
        quantiles: Dark quantile levels of the global and local-darkness maps.
        local_sigma: Width of the blur subtracted for the local-darkness map, as a fraction of the long side.
        min_area: Smallest candidate, fraction of the image area.
        max_area: Largest candidate, fraction of the image area.
        opening: Binary-opening iteration counts applied to each thresholded map (each gives its own
            components; larger openings split regions joined by thin bridges).
        max_candidates: Keep at most this many (most often re-found first).
        segments: Also propose the darker-than-median regions of a Felzenszwalb over-segmentation at
            each of these scales (empty = none).

    Returns:
        Candidates (possibly empty).
    """
    return _propose(_Work(image, sigma, work_size=work_size), quantiles=quantiles, local_sigma=local_sigma,
                    min_area=min_area, max_area=max_area, opening=opening, max_candidates=max_candidates,
                    segments=segments)


def _propose(work: _Work, *, quantiles: Sequence[float], min_area: float, max_area: float, max_candidates: int,
             segments: Sequence[float], local_sigma: float = 0.15, opening: Sequence[int] | int = (1,)
             ) -> list[Candidate]:
    small, scale = work.small, work.scale
    n = small.size
    local = work.local(local_sigma)
    levels: list[NDArray[np.bool_]] = []
    for q in quantiles:
        levels.append(small <= np.quantile(small, q))
        levels.append(local <= np.quantile(local, q))
    if float(np.ptp(small)) > 1e-3:
        levels.append(small <= threshold_otsu(small))
        try:
            levels.append(small <= threshold_multiotsu(small, classes=3)[0])
        except ValueError:
            pass
        levels.append(local <= threshold_otsu(local))
    found: list[list[Any]] = []  # [mask, hits, area]
    openings = (opening,) if isinstance(opening, int) else tuple(opening)
    labelled = []
    for lev in levels:
        for it in openings:
            labelled.append(ndi.label(ndi.binary_opening(lev, iterations=it) if it else lev))
    if segments:
        from skimage.segmentation import felzenszwalb

        med = float(np.median(small))
        for sc in segments:
            seg = felzenszwalb(small, scale=sc, sigma=0.0, min_size=max(4, int(min_area * n)))
            means = ndi.mean(small, seg, np.arange(seg.max() + 1))
            dark = np.asarray(means) < med
            labelled.append((np.where(dark[seg], seg + 1, 0), int(seg.max()) + 1))
    for lab, k in labelled:
        if k == 0:
            continue
        areas = np.bincount(lab.ravel(), minlength=k + 1)
        for j in range(1, k + 1):
            if not (min_area * n <= areas[j] <= max_area * n):
                continue
            region = _fill_holes(lab == j)
            a = np.count_nonzero(region)
            for entry in found:
                # IoU <= min(area) / max(area): skip the pixel test where the areas alone rule a match out
                if min(a, entry[2]) > 0.85 * max(a, entry[2]) and _iou(entry[0], region) > 0.85:
                    entry[1] += 1
                    break
            else:
                found.append([region, 1, a])
    found.sort(key=lambda e: -e[1])
    return [Candidate(mask=m, scale=scale, hits=h) for m, h, _ in found[:max_candidates]]


def cam_features(candidates: Sequence[Candidate], cam: NDArray[np.float32]) -> NDArray[np.float64]:
    """(K, len(CAM_FEATURES)) CAM features: mean and max CAM on the candidate, its share of the CAM
    mass, and ``1 / (1 + rank)`` of its mean CAM among the image's candidates."""
    if not candidates:
        return np.zeros((0, len(CAM_FEATURES)))
    cam_s = resize(np.asarray(cam, np.float32), candidates[0].mask.shape, order=1).astype(np.float64)
    total = cam_s.sum() + 1e-6
    out = np.array([[cam_s[c.mask].mean(), cam_s[c.mask].max(), cam_s[c.mask].sum() / total, 0.0]
                    for c in candidates])
    order = np.argsort(-out[:, 0], kind="stable")
    rank = np.empty(len(order))
    rank[order] = np.arange(len(order))
    out[:, 3] = 1.0 / (1.0 + rank)
    return out


def candidate_features(
    image: Any, candidates: Sequence[Candidate], cam: NDArray[np.float32] | None = None, *, sigma: float = 1.5
) -> NDArray[np.float64]:
    """(K, len(FEATURE_NAMES)) features of ``candidates`` of ``image`` (CAM features are 0 without a CAM)."""
    if not candidates:
        return np.zeros((0, len(FEATURE_NAMES)))
    return _features(_Work(image, sigma, shape=candidates[0].mask.shape), candidates, cam)


def _features(work: _Work, candidates: Sequence[Candidate], cam: NDArray[np.float32] | None) -> NDArray[np.float64]:
    from skimage.morphology import convex_hull_image  # heavy import, only here

    if not candidates:
        return np.zeros((0, len(FEATURE_NAMES)))
    small = work.small
    if small.shape != candidates[0].mask.shape:
        raise ValueError(f"candidates are {candidates[0].mask.shape} but the working image is {small.shape}")
    std = float(small.std()) + 1e-3
    local = work.local(0.15)
    h, w = small.shape
    rows = []
    for c in candidates:
        m = c.mask
        a = np.count_nonzero(m)
        ys, xs = np.nonzero(m)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        hull = np.count_nonzero(convex_hull_image(m[y0:y1, x0:x1]))
        ring = _ring(m, max(2, int(0.2 * np.sqrt(a))))
        inside = float(small[m].mean())
        out = float(small[ring].mean()) if ring.any() else inside
        bh = max(2, (y1 - y0) // 2)
        below = small[y1:min(h, y1 + bh), x0:x1]
        above = small[max(0, y0 - bh):y0, x0:x1]
        below_above = (float(below.mean()) - float(above.mean())) / std if below.size and above.size else 0.0
        border = int(y0 == 0) + int(x0 == 0) + int(y1 == h) + int(x1 == w)
        bdist = min(y0, x0, h - y1, w - x1) / max(h, w)
        la = np.log(a / (h * w))
        cy = (ys.mean() + 0.5) / h
        rows.append([1.0, la, la**2, a / max(int(hull), 1), a / ((y1 - y0) * (x1 - x0)),
                     np.log(max(y1 - y0, 1) / max(x1 - x0, 1)) ** 2, abs((xs.mean() + 0.5) / w - 0.5), cy, cy**2,
                     border, bdist, (out - inside) / std, 0.0, -float(local[m].mean()) / std,
                     inside / (float(small.mean()) + 1e-3), below_above, np.log(c.hits), 0.0, 0.0, 0.0, 0.0])
    F = np.array(rows, np.float64)
    k = FEATURE_NAMES.index("contrast")
    F[:, k + 1] = (F[:, k] - F[:, k].mean()) / (F[:, k].std() + 1e-6)
    if cam is not None:
        F[:, list(CAM_FEATURES)] = cam_features(candidates, cam)
    return F


class CandidateScorer:
    """Linear (logistic) candidate score ``features @ weights``; higher = more lesion-like.

    Args:
        weights: One weight per feature; default :data:`DEFAULT_WEIGHTS` (or :data:`REFINED_DEFAULT_WEIGHTS`
            when ``names`` is :data:`REFINED_FEATURE_NAMES`).
        mean: Optional per-feature mean subtracted before weighting (standardisation), same length.
        scale: Optional per-feature scale divided before weighting, same length.
        names: The feature names the weights refer to (:data:`FEATURE_NAMES` or :data:`REFINED_FEATURE_NAMES`).
    """

    def __init__(self, weights: Sequence[float] | None = None, mean: Sequence[float] | None = None,
                 scale: Sequence[float] | None = None, names: Sequence[str] = FEATURE_NAMES) -> None:
        n = len(names)
        if weights is None:
            refined = tuple(names) == REFINED_FEATURE_NAMES
            weights = REFINED_DEFAULT_WEIGHTS if refined else DEFAULT_WEIGHTS
            mean = (REFINED_DEFAULT_MEAN if refined else DEFAULT_MEAN) if mean is None else mean
            scale = (REFINED_DEFAULT_SCALE if refined else DEFAULT_SCALE) if scale is None else scale
        self.weights = np.asarray(weights, np.float64)
        self.mean = np.zeros(n) if mean is None else np.asarray(mean, np.float64)
        self.scale = np.ones(n) if scale is None else np.asarray(scale, np.float64)
        for name, v in (("weights", self.weights), ("mean", self.mean), ("scale", self.scale)):
            if v.shape != (n,):
                raise ValueError(f"CandidateScorer {name} must have {n} entries, got {v.shape}")

    def __call__(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        """(K,) scores of (K, F) features."""
        z = (features - self.mean) / np.where(self.scale > 0, self.scale, 1.0)
        z[:, 0] = 1.0
        return z @ self.weights


def refine_candidates(
    image: Any,
    candidates: Sequence[Candidate],
    scores: NDArray[np.float64],
    *,
    top_k: int = 6,
    margin: float = 0.1,
    segmenter: Any = None,
    sigma: float = 1.5,
) -> tuple[list[Candidate], list[NDArray[np.bool_]], NDArray[np.float64]]:
    """Refine the ``top_k`` best-scored candidates with the weight-free polar segmenter.

    Each candidate's box, enlarged by ``margin`` x its size on every side, is decoded as a LOOSE box (the
    contour may shrink inside it but not leave it) by ``segmenter`` (default: ``classical`` with
    ``stretch_to_box=False``); the contour replaces the thresholded region.

    Returns:
        ``(refined, full_masks, features)``: refined candidates at the working resolution (best first
        stage score first), their masks at the original resolution, and (k, len(REFINED_FEATURE_NAMES))
        features (see :data:`REFINED_FEATURE_NAMES`).
    """
    if not candidates:
        return [], [], np.zeros((0, len(REFINED_FEATURE_NAMES)))
    return _refine(_Work(image, sigma, shape=candidates[0].mask.shape), candidates, scores, top_k=top_k,
                   margin=margin, segmenter=segmenter)


def _refine(work: _Work, candidates: Sequence[Candidate], scores: NDArray[np.float64], *, top_k: int,
            margin: float, segmenter: Any) -> tuple[list[Candidate], list[NDArray[np.bool_]], NDArray[np.float64]]:
    from samprompt.segmenters.classical import ClassicalSegmenter  # avoids an import cycle

    seg = segmenter if segmenter is not None else ClassicalSegmenter(stretch_to_box=False)
    grey = work.grey
    H, W = grey.shape
    emb = seg.embed(np.round(np.clip(grey, 0, 1) * 255).astype(np.uint8))
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")[:top_k]
    prompts = []
    for j in order:
        b = candidates[j].box().astype(np.float64)
        mx, my = margin * (b[2] - b[0]), margin * (b[3] - b[1])
        bb = np.clip(b + [-mx, -my, mx, my], 0, [W, H, W, H])
        prompts.append(Prompt(box=bb.astype(np.float32)))
    out = seg.decode(emb, prompts)
    shape = candidates[0].mask.shape
    h, w = shape
    small_masks, full_masks = [], []
    for i, j in enumerate(order):
        full = np.asarray(out.masks[i], bool)
        sm = _shrink_mask(full, shape)
        if not sm.any():  # nothing survived: keep the thresholded region
            sm = candidates[j].mask
            full = candidates[j].full_mask((H, W))
        small_masks.append(sm)
        full_masks.append(full)
    n = len(order)
    inter = np.array([[np.count_nonzero(a & b) / max(1, int(np.count_nonzero(a | b))) for b in small_masks]
                      for a in small_masks])
    agree = (inter > 0.6).sum(axis=1)
    refined = [Candidate(mask=m, scale=candidates[0].scale, hits=int(a)) for m, a in zip(small_masks, agree)]
    F = _features(work, refined, None)
    small = work.small
    grad = ndi.gaussian_gradient_magnitude(small, 1.0)
    gscale = float(np.percentile(grad, 90)) + 1e-4
    std = float(small.std()) + 1e-3
    extra = np.zeros((n, len(REFINED_FEATURE_NAMES) - len(FEATURE_NAMES)))
    for i, (m, j) in enumerate(zip(small_masks, order)):
        orig = candidates[j].mask
        edge_px = m & ~ndi.binary_erosion(m)
        ys, xs = np.nonzero(m)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        bh, bw = max(2, (y1 - y0) // 2), max(2, x1 - x0)
        below = small[y1:min(h, y1 + bh), x0:x1]
        side = np.concatenate([small[y1:min(h, y1 + bh), max(0, x0 - bw):x0].ravel(),
                               small[y1:min(h, y1 + bh), x1:min(w, x1 + bw)].ravel()])
        extra[i] = [
            scores[j], 1.0 / (1.0 + i), float(out.scores[i]), _iou(m, orig),
            float(grad[edge_px].mean()) / gscale if edge_px.any() else 0.0,
            float(small[m].std()) / std,
            (float(below.mean()) - float(side.mean())) / std if below.size and side.size else 0.0,
            np.log(max(1, int(np.count_nonzero(m))) / max(1, int(np.count_nonzero(orig)))),
        ]
    return refined, full_masks, np.concatenate([F, extra], axis=1)


def under_smaller_region(boxes: Sequence[Any] | NDArray[np.float64], *, overlap: float = 0.5,
                         gap: float = 0.5) -> NDArray[np.bool_]:
    """Which boxes have a SMALLER box directly above them — the signature of a posterior acoustic shadow
    (or deeper dark tissue) under a lesion, which a darkness-based score tends to prefer to the lesion.

    Box ``b`` is flagged when some other box ``a`` (a) overlaps it horizontally by at least ``overlap``
    times the narrower width, (b) has its centre above ``b``'s top quarter (``cy_a < y0_b + (y1_b - y0_b)
    / 4``), (c) ends no more than ``gap`` times its own height above ``b``'s top (``y1_a > y0_b - gap *
    h_a``; touching or overlapping boxes qualify) and (d) has a smaller area. Measured on the BUSI
    train split (docs: quality), half of the wrongly placed choices lay under the lesion.

    Args:
        boxes: (K, 4) ``(x0, y0, x1, y1)`` in pixels, y down; ``None`` / NaN rows are never flagged and
            never flag others.
        overlap: Minimum horizontal overlap, as a fraction of the narrower box's width.
        gap: Largest vertical gap between the boxes, as a fraction of the upper box's height.

    Returns:
        (K,) bool.

    Example:
        >>> under_smaller_region([[10, 10, 30, 20], [8, 20, 34, 45], [60, 10, 80, 20]]).tolist()
        [False, True, False]
    """
    b = np.array([[np.nan] * 4 if x is None else x for x in boxes], dtype=np.float64).reshape(-1, 4)
    x0, y0, x1, y1 = b.T
    w, h = x1 - x0, y1 - y0
    area = w * h
    inter = np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None])  # [a, b]
    with np.errstate(invalid="ignore"):
        horizontal = inter >= overlap * np.minimum(w[:, None], w[None])
        centre_above = ((y0 + y1) / 2)[:, None] < (y0 + 0.25 * h)[None]
        close = y1[:, None] > y0[None] - gap * h[:, None]
        smaller = area[:, None] < area[None]
    hit = horizontal & centre_above & close & smaller
    np.fill_diagonal(hit, False)
    return np.asarray(hit.any(axis=0) & np.isfinite(b).all(axis=1), dtype=bool)
