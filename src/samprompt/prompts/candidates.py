"""Candidate-region prompts: dark compact regions proposed from the IMAGE, refined and chosen.

A from-scratch classifier's CAM rarely outlines a lesion (it fires on whatever separates the classes),
but it often lands *near* it. This module turns the problem around: the image proposes candidate lesions
(hypoechoic = darker than their surroundings, compact), and a scorer picks one using the CAM mass on it
plus shape, size, position and contrast features. The chosen region's box (and points) is the prompt.

* :func:`propose_candidates` — candidates of one grey image: the image is downscaled to ``work_size``,
  smoothed, and thresholded at several dark levels (global quantiles, Otsu, the lowest multi-Otsu class,
  and the same on a "local darkness" map = image minus a wide blur); each threshold's components are
  opened, hole-filled and kept when their area is within ``[min_area, max_area]`` of the image; the
  darker-than-median regions of Felzenszwalb over-segmentations are added; near-duplicates (IoU > 0.85)
  are merged.
* :func:`candidate_features` — the feature vector of each candidate (:data:`FEATURE_NAMES`).
* :class:`CandidateScorer` — a linear score ``w . features`` (logistic model). The default weights
  (:data:`DEFAULT_WEIGHTS`) were fit on the BUSI train split with IMAGE LABELS ONLY (multiple-instance
  learning: an image is abnormal iff its best candidate is a lesion; normal images supply negatives),
  see ``benchmarks/quality_prompts.py`` and docs/quality.md.
* :func:`refine_candidates` — the best ``top_k`` candidates, each re-segmented by the weight-free polar
  segmenter (``classical``) on its slightly enlarged box (loose box), with the features of the refined
  regions (:data:`REFINED_FEATURE_NAMES`); a second labels-only MIL scorer
  (:data:`REFINED_DEFAULT_WEIGHTS`) picks among them.
* :class:`CandidatePromptStrategy` (registered ``candidates``) — the prompt strategy. It needs the
  image: pass ``image=`` when calling it (the pipeline does so for strategies whose ``uses_image`` is
  true). Without an image it falls back to the built-in box of the pseudo mask's largest component.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field
from scipy import ndimage as ndi
from skimage.filters import threshold_multiotsu, threshold_otsu
from skimage.transform import resize

from samprompt._arrays import as_image
from samprompt.component import ComponentParams
from samprompt.prompts import PROMPT_STRATEGIES
from samprompt.prompts.base import Prompt, PromptStrategy
from samprompt.prompts.builtin import inside_point
from samprompt.regions import clip_box, keep_components, mask_to_box

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
    "CandidatePromptStrategy",
    "CandidateScorer",
    "cam_features",
    "candidate_features",
    "propose_candidates",
    "refine_candidates",
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
        assert b is not None
        sy, sx = self.scale
        return np.array([b[0] / sx, b[1] / sy, b[2] / sx, b[3] / sy], np.float32)

    def full_mask(self, shape: tuple[int, int]) -> NDArray[np.bool_]:
        """The region at the original (H, W)."""
        return resize(self.mask.astype(np.float32), shape, order=1) > 0.5


def _grey(image: Any) -> NDArray[np.float32]:
    arr = np.asarray(image)
    if arr.ndim == 2 and arr.dtype != np.uint8:
        return arr.astype(np.float32)
    return as_image(arr).astype(np.float32).mean(axis=2) / 255.0


def _work(grey: NDArray[np.float32], work_size: int, sigma: float) -> tuple[NDArray[np.float32], tuple[float, float]]:
    H, W = grey.shape
    s = min(1.0, work_size / max(H, W))
    shape = (max(8, round(H * s)), max(8, round(W * s)))
    small = resize(grey, shape, order=1, anti_aliasing=s < 1).astype(np.float32)
    if sigma > 0:
        small = ndi.gaussian_filter(small, sigma)
    return small, (shape[0] / H, shape[1] / W)


def _iou(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    inter = np.count_nonzero(a & b)
    return inter / max(1, np.count_nonzero(a | b))


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
    small, scale = _work(_grey(image), work_size, sigma)
    n = small.size
    local = small - ndi.gaussian_filter(small, local_sigma * max(small.shape))
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
    found: list[list[Any]] = []  # [mask, hits]
    openings = (opening,) if isinstance(opening, int) else tuple(opening)
    labelled = []
    for lev in levels:
        for it in openings:
            labelled.append(ndi.label(ndi.binary_opening(lev, iterations=it) if it else lev))
    if segments:
        from skimage.segmentation import felzenszwalb  # noqa: PLC0415

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
            region = ndi.binary_fill_holes(lab == j)
            for entry in found:
                if _iou(entry[0], region) > 0.85:
                    entry[1] += 1
                    break
            else:
                found.append([region, 1])
    found.sort(key=lambda e: -e[1])
    return [Candidate(mask=m, scale=scale, hits=h) for m, h in found[:max_candidates]]


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
    from skimage.morphology import convex_hull_image  # noqa: PLC0415 - heavy import, only here

    if not candidates:
        return np.zeros((0, len(FEATURE_NAMES)))
    shape = candidates[0].mask.shape
    small = resize(_grey(image), shape, order=1, anti_aliasing=True).astype(np.float32)
    small = ndi.gaussian_filter(small, sigma)
    std = float(small.std()) + 1e-3
    local = small - ndi.gaussian_filter(small, 0.15 * max(shape))
    h, w = shape
    rows = []
    for c in candidates:
        m = c.mask
        a = np.count_nonzero(m)
        ys, xs = np.nonzero(m)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        hull = np.count_nonzero(convex_hull_image(m[y0:y1, x0:x1]))
        ring = ndi.binary_dilation(m, iterations=max(2, int(0.2 * np.sqrt(a)))) & ~m
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
        rows.append([1.0, la, la**2, a / max(hull, 1), a / ((y1 - y0) * (x1 - x0)),
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
    from samprompt.segmenters.classical import ClassicalSegmenter  # noqa: PLC0415 - avoids an import cycle

    if not candidates:
        return [], [], np.zeros((0, len(REFINED_FEATURE_NAMES)))
    seg = segmenter if segmenter is not None else ClassicalSegmenter(stretch_to_box=False)
    grey = _grey(image)
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
        sm = resize(full.astype(np.float32), shape, order=1) > 0.5 if full.any() else np.zeros(shape, bool)
        if not sm.any():  # nothing survived: keep the thresholded region
            sm = candidates[j].mask
            full = candidates[j].full_mask((H, W))
        small_masks.append(sm)
        full_masks.append(full)
    n = len(order)
    inter = np.array([[np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b)) for b in small_masks]
                      for a in small_masks])
    agree = (inter > 0.6).sum(axis=1)
    refined = [Candidate(mask=m, scale=candidates[0].scale, hits=int(a)) for m, a in zip(small_masks, agree)]
    F = candidate_features(image, refined, sigma=sigma)
    small = ndi.gaussian_filter(resize(grey, shape, order=1, anti_aliasing=True).astype(np.float32), sigma)
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
            np.log(max(1, np.count_nonzero(m)) / max(1, np.count_nonzero(orig))),
        ]
    return refined, full_masks, np.concatenate([F, extra], axis=1)


class CandidatePromptStrategy(PromptStrategy):
    """Prompt from the best image candidate (registered ``candidates``); see the module docstring.

    Params:
        output: What the prompt carries: ``box``; ``box_point`` (box + the region's deepest point);
            ``box_points`` (box + ``n_points`` positive points spread over the region + ``n_negative``
            negative points on a ring well outside it); ``points`` (points only).
        n_points: Positive points for ``box_points`` / ``points`` (deepest first, then spread out).
        n_negative: Negative points for ``box_points`` / ``points``.
        margin: Pixels added to every side of the box, as a fraction of its size.
        work_size, sigma, quantiles, min_area, max_area, segments, max_candidates: Candidate proposal
            (see :func:`propose_candidates`).
        weights, mean, scale: First-stage scorer (see :class:`CandidateScorer`); ``None`` = the built-in
            defaults.
        refine_top_k: Refine this many best first-stage candidates with the polar segmenter and choose
            among the refined regions with the second-stage scorer (:func:`refine_candidates`); 0 = no
            refinement (the thresholded region of the best first-stage candidate is the prompt).
        refine_margin: Each candidate's box is enlarged by this fraction of its size on every side before
            the (loose-box) refinement.
        refine_weights, refine_mean, refine_scale: Second-stage scorer over
            :data:`REFINED_FEATURE_NAMES`; ``None`` = the built-in defaults.
        point_min_score: Emit positive points (``box_point``, ``box_points``) only when the chosen region's
            score is at least this (the box is always emitted; ``points`` output is unaffected);
            ``None`` (default) = always. With the default scorers, 1.0 (the 60th percentile of the chosen
            regions' scores on the BUSI train lesion images) puts the point in the lesion 97 % of the time
            on val, for 41 % of the images (always emitted: 68 %); see docs/quality.md.
        cam_gate: Candidates must overlap the pseudo mask (``overlap``), or any candidate may win (``none``).
        fallback: Without an image or a candidate: ``mask_box`` (box of the pseudo mask's largest
            component) or ``none`` (no prompt).
    """

    uses_image: ClassVar[bool] = True

    class Params(ComponentParams):
        output: Literal["box", "box_point", "box_points", "points"] = "box"
        n_points: int = Field(default=3, ge=1, le=16)
        n_negative: int = Field(default=0, ge=0, le=16)
        margin: float = Field(default=0.0, ge=0.0, le=1.0)
        work_size: int = Field(default=128, ge=32)
        sigma: float = Field(default=1.5, ge=0.0)
        quantiles: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4)
        min_area: float = Field(default=0.002, ge=0.0, lt=1.0)
        max_area: float = Field(default=0.4, gt=0.0, le=1.0)
        segments: tuple[float, ...] = (50.0, 200.0)
        max_candidates: int = Field(default=60, ge=1)
        weights: tuple[float, ...] | None = None
        mean: tuple[float, ...] | None = None
        scale: tuple[float, ...] | None = None
        refine_top_k: int = Field(default=6, ge=0, le=32)
        refine_margin: float = Field(default=0.1, ge=0.0, le=1.0)
        refine_weights: tuple[float, ...] | None = None
        refine_mean: tuple[float, ...] | None = None
        refine_scale: tuple[float, ...] | None = None
        point_min_score: float | None = None
        cam_gate: Literal["none", "overlap"] = "none"
        fallback: Literal["mask_box", "none"] = "mask_box"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        self.scorer = CandidateScorer(p.weights, p.mean, p.scale)  # type: ignore[attr-defined]
        self.refine_scorer = CandidateScorer(p.refine_weights, p.refine_mean, p.refine_scale,  # type: ignore[attr-defined]
                                             names=REFINED_FEATURE_NAMES)
        self._segmenter: Any = None

    def select(self, image: Any, cam: NDArray[np.float32], pseudo_mask: NDArray[np.bool_] | None = None
               ) -> tuple[Candidate | None, list[Candidate], NDArray[np.float64]]:
        """Propose and score (first stage only) and pick: ``(best or None, candidates, scores)``."""
        p = self.params
        cands = propose_candidates(image, work_size=p.work_size, sigma=p.sigma, quantiles=p.quantiles,  # type: ignore[attr-defined]
                                   min_area=p.min_area, max_area=p.max_area, segments=p.segments,  # type: ignore[attr-defined]
                                   max_candidates=p.max_candidates)  # type: ignore[attr-defined]
        if not cands:
            return None, cands, np.zeros(0)
        scores = self.scorer(candidate_features(image, cands, cam, sigma=p.sigma))  # type: ignore[attr-defined]
        scores = self._gate(cands, scores, pseudo_mask)
        return cands[int(np.argmax(scores))], cands, scores

    def _gate(self, cands: Sequence[Candidate], scores: NDArray[np.float64],
              pseudo_mask: NDArray[np.bool_] | None) -> NDArray[np.float64]:
        if self.params.cam_gate == "overlap" and pseudo_mask is not None and pseudo_mask.any():  # type: ignore[attr-defined]
            pm = resize(pseudo_mask.astype(np.float32), cands[0].mask.shape, order=0) > 0.5
            hit = np.array([np.any(c.mask & pm) for c in cands])
            if hit.any():
                scores = np.where(hit, scores, -np.inf)
        return scores

    def choose(self, image: Any, cam: NDArray[np.float32], pseudo_mask: NDArray[np.bool_] | None = None
               ) -> tuple[NDArray[np.bool_] | None, float]:
        """The chosen region at the original resolution and its score (``(None, -inf)`` without one)."""
        p = self.params
        H, W = _grey(image).shape
        best, cands, scores = self.select(image, cam, pseudo_mask)
        if best is None:
            return None, float("-inf")
        if p.refine_top_k == 0:  # type: ignore[attr-defined]
            return best.full_mask((H, W)), float(np.max(scores))
        if self._segmenter is None:
            from samprompt.segmenters.classical import ClassicalSegmenter  # noqa: PLC0415

            self._segmenter = ClassicalSegmenter(stretch_to_box=False)
        finite = np.isfinite(scores)
        keep = [c for c, f in zip(cands, finite) if f]
        refined, full, F = refine_candidates(image, keep, scores[finite], top_k=p.refine_top_k,  # type: ignore[attr-defined]
                                             margin=p.refine_margin, segmenter=self._segmenter, sigma=p.sigma)  # type: ignore[attr-defined]
        s2 = self.refine_scorer(F)
        i = int(np.argmax(s2))
        return full[i], float(s2[i])

    def make_prompt(  # type: ignore[override]
        self, mask: NDArray[np.bool_], cam: NDArray[np.float32], image: NDArray[np.uint8] | None = None
    ) -> Prompt | None:
        """Pick the best candidate of ``image`` ((H, W, 3) uint8, validated by the caller) and prompt on it;
        without an image (or candidates), fall back to the pseudo mask's largest component."""
        p = self.params
        H, W = mask.shape
        region = None
        output = p.output  # type: ignore[attr-defined]
        if image is not None:
            region, score = self.choose(image, cam, mask)
            if region is not None and not region.any():
                region = None
            if (region is not None and p.point_min_score is not None and score < p.point_min_score  # type: ignore[attr-defined]
                    and output in ("box_point", "box_points")):
                output = "box"
        if region is None:
            if p.fallback == "none" or not mask.any():  # type: ignore[attr-defined]
                return None
            region = keep_components(mask, "largest")
        return region_prompt(region, output, p.n_points, p.n_negative, p.margin)  # type: ignore[attr-defined]


def spread_points(region: NDArray[np.bool_], n: int) -> NDArray[np.float32]:
    """``n`` points inside ``region``: its deepest pixel, then farthest-point sampling over its inner half."""
    first = inside_point(region)
    if first is None:
        return np.zeros((0, 2), np.float32)
    depth = ndi.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    core = depth >= 0.5 * depth.max()
    ys, xs = np.nonzero(core)
    pts = [first]
    if len(xs) == 0:
        return np.array(pts, np.float32)
    cand = np.stack([xs + 0.5, ys + 0.5], 1).astype(np.float32)
    dmin = np.linalg.norm(cand - first, axis=1)
    for _ in range(n - 1):
        k = int(np.argmax(dmin))
        if dmin[k] <= 1.0:
            break
        pts.append(cand[k])
        dmin = np.minimum(dmin, np.linalg.norm(cand - cand[k], axis=1))
    return np.array(pts, np.float32)


def negative_points(region: NDArray[np.bool_], n: int, gap: float = 0.5) -> NDArray[np.float32]:
    """``n`` points on a ring around ``region``'s box, ``gap`` x the box size away, inside the image."""
    H, W = region.shape
    b = mask_to_box(region)
    if b is None or n == 0:
        return np.zeros((0, 2), np.float32)
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    rx, ry = (b[2] - b[0]) / 2 * (1 + 2 * gap), (b[3] - b[1]) / 2 * (1 + 2 * gap)
    th = np.arange(n) * 2 * np.pi / n + np.pi / max(n, 1)
    pts = np.stack([cx + rx * np.cos(th), cy + ry * np.sin(th)], 1)
    ok = (pts[:, 0] >= 0.5) & (pts[:, 0] <= W - 0.5) & (pts[:, 1] >= 0.5) & (pts[:, 1] <= H - 0.5)
    return pts[ok].astype(np.float32)


def region_prompt(region: NDArray[np.bool_], output: str, n_points: int = 3, n_negative: int = 0,
                  margin: float = 0.0) -> Prompt | None:
    """Box and/or points of a chosen region, as :class:`CandidatePromptStrategy` emits them."""
    H, W = region.shape
    b = mask_to_box(region)
    if b is None:
        return None
    mx, my = margin * (b[2] - b[0]), margin * (b[3] - b[1])
    box = clip_box(b + np.array([-mx, -my, mx, my], np.float32), W, H)
    if output == "box":
        return Prompt(box=box)
    pos = spread_points(region, 1 if output == "box_point" else n_points)
    neg = negative_points(region, n_negative) if output in ("box_points", "points") else np.zeros((0, 2), np.float32)
    pts = np.concatenate([pos, neg]).astype(np.float32)
    labels = np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)])
    return Prompt(box=None if output == "points" else box, points=pts, point_labels=labels)


PROMPT_STRATEGIES.add("candidates", CandidatePromptStrategy)
