"""Candidate-region prompts: dark compact regions proposed from the IMAGE, chosen with the CAM.

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
    "Candidate",
    "CandidatePromptStrategy",
    "CandidateScorer",
    "cam_features",
    "candidate_features",
    "propose_candidates",
]

#: Names of the entries of :func:`candidate_features`, in order (index 0 is the constant 1).
FEATURE_NAMES: tuple[str, ...] = (
    "bias", "log_area", "log_area_sq", "solidity", "extent", "aspect", "cx_dev", "cy", "cy_sq",
    "border_touch", "border_dist", "contrast", "contrast_z", "local_contrast", "mean_int", "below_above",
    "n_thresholds", "cam_mean", "cam_max", "cam_mass", "cam_rank",
)
#: Indices of the CAM features (filled by :func:`cam_features`; zero without a CAM).
CAM_FEATURES: tuple[int, ...] = tuple(range(FEATURE_NAMES.index("cam_mean"), len(FEATURE_NAMES)))

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
        weights: One weight per :data:`FEATURE_NAMES` entry; default :data:`DEFAULT_WEIGHTS`.
        mean: Optional per-feature mean subtracted before weighting (standardisation), same length.
        scale: Optional per-feature scale divided before weighting, same length.
    """

    def __init__(self, weights: Sequence[float] | None = None, mean: Sequence[float] | None = None,
                 scale: Sequence[float] | None = None) -> None:
        n = len(FEATURE_NAMES)
        if weights is None:
            weights = DEFAULT_WEIGHTS
            mean = DEFAULT_MEAN if mean is None else mean
            scale = DEFAULT_SCALE if scale is None else scale
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
        weights, mean, scale: Scorer (see :class:`CandidateScorer`); ``None`` = the built-in defaults.
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
        cam_gate: Literal["none", "overlap"] = "none"
        fallback: Literal["mask_box", "none"] = "mask_box"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        self.scorer = CandidateScorer(p.weights, p.mean, p.scale)  # type: ignore[attr-defined]

    def select(self, image: Any, cam: NDArray[np.float32], pseudo_mask: NDArray[np.bool_] | None = None
               ) -> tuple[Candidate | None, list[Candidate], NDArray[np.float64]]:
        """Propose, score and pick: ``(best or None, candidates, scores)``."""
        p = self.params
        cands = propose_candidates(image, work_size=p.work_size, sigma=p.sigma, quantiles=p.quantiles,  # type: ignore[attr-defined]
                                   min_area=p.min_area, max_area=p.max_area, segments=p.segments,  # type: ignore[attr-defined]
                                   max_candidates=p.max_candidates)  # type: ignore[attr-defined]
        if not cands:
            return None, cands, np.zeros(0)
        scores = self.scorer(candidate_features(image, cands, cam, sigma=p.sigma))  # type: ignore[attr-defined]
        if p.cam_gate == "overlap" and pseudo_mask is not None and pseudo_mask.any():  # type: ignore[attr-defined]
            pm = resize(pseudo_mask.astype(np.float32), cands[0].mask.shape, order=0) > 0.5
            hit = np.array([np.any(c.mask & pm) for c in cands])
            if hit.any():
                scores = np.where(hit, scores, -np.inf)
        return cands[int(np.argmax(scores))], cands, scores

    def make_prompt(  # type: ignore[override]
        self, mask: NDArray[np.bool_], cam: NDArray[np.float32], image: NDArray[np.uint8] | None = None
    ) -> Prompt | None:
        """Pick the best candidate of ``image`` ((H, W, 3) uint8, validated by the caller) and prompt on it;
        without an image (or candidates), fall back to the pseudo mask's largest component."""
        p = self.params
        H, W = mask.shape
        region = None
        if image is not None:
            best, _, _ = self.select(image, cam, mask)
            if best is not None:
                region = best.full_mask((H, W))
                if not region.any():
                    region = None
        if region is None:
            if p.fallback == "none" or not mask.any():  # type: ignore[attr-defined]
                return None
            region = keep_components(mask, "largest")
        return region_prompt(region, p.output, p.n_points, p.n_negative, p.margin)  # type: ignore[attr-defined]


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
