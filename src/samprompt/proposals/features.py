"""Features of candidate regions (:data:`FEATURE_NAMES`) and of refined regions (:data:`REFINED_FEATURE_NAMES`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from skimage.transform import resize

from samprompt.proposals.regions import Candidate, Work, _box_of, _ring_in

__all__ = ["CAM_FEATURES", "FEATURE_NAMES", "REFINED_FEATURE_NAMES", "cam_at", "cam_features",
           "candidate_features", "features_of"]


#: Names of the entries of :func:`candidate_features`, in order (index 0 is the constant 1).
FEATURE_NAMES: tuple[str, ...] = (
    "bias", "log_area", "log_area_sq", "solidity", "extent", "aspect", "cx_dev", "cy", "cy_sq",
    "border_touch", "border_dist", "contrast", "contrast_z", "local_contrast", "mean_int", "below_above",
    "n_thresholds", "cam_mean", "cam_max", "cam_mass", "cam_rank",
)
#: Indices of the CAM features (filled by :func:`cam_features`; zero without a CAM).
CAM_FEATURES: tuple[int, ...] = tuple(range(FEATURE_NAMES.index("cam_mean"), len(FEATURE_NAMES)))

#: Features of a REFINED candidate (:func:`~samprompt.proposals.refine.refine_candidates`): :data:`FEATURE_NAMES` computed on the
#: refined region (``n_thresholds`` = log of how many of the top-k refined regions agree with it, IoU >
#: 0.6), then: the first-stage score and ``1 / (1 + rank)``, the polar segmenter's confidence, IoU of the
#: refined region with its candidate, mean gradient magnitude on the refined boundary, intensity spread
#: inside, brightness below the region minus beside it (posterior enhancement / shadowing), log area
#: growth.
REFINED_FEATURE_NAMES: tuple[str, ...] = FEATURE_NAMES + (
    "stage1_score", "stage1_rank", "polar_score", "stability", "edge", "homogeneity", "posterior_side", "growth",
)


def cam_at(cam: NDArray[np.float32], shape: tuple[int, int]) -> NDArray[np.float64]:
    """(h, w) float64: ``cam`` (any size) resized to a working image's ``shape``, as the CAM features use it
    (resize once per image and hand it to :func:`features_of` / :func:`cam_features` as ``cam_small``)."""
    out: NDArray[np.float64] = resize(np.asarray(cam, np.float32), shape, order=1).astype(np.float64)
    return out


def cam_features(candidates: Sequence[Candidate], cam: NDArray[np.float32] | None, *,
                 cam_small: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
    """(K, len(CAM_FEATURES)) CAM features: mean and max CAM on the candidate, its share of the CAM
    mass, and ``1 / (1 + rank)`` of its mean CAM among the image's candidates.

    Args:
        candidates: Candidates of one image.
        cam: (H, W) CAM, any size (resized to the candidates' working shape); may be ``None`` when
            ``cam_small`` is given.
        cam_small: ``cam_at(cam, shape)`` when already made (saves the resize; same result).

    Raises:
        ValueError: Neither ``cam`` nor ``cam_small``.
    """
    if not candidates:
        return np.zeros((0, len(CAM_FEATURES)))
    if cam_small is not None:
        cam_s = cam_small
    elif cam is not None:
        cam_s = cam_at(cam, candidates[0].mask.shape)
    else:
        raise ValueError("cam_features needs a CAM (cam or cam_small)")
    total = cam_s.sum() + 1e-6
    out = np.array([[cam_s[c.mask].mean(), cam_s[c.mask].max(), cam_s[c.mask].sum() / total, 0.0]
                    for c in candidates])
    order = np.argsort(-out[:, 0], kind="stable")
    rank = np.empty(len(order))
    rank[order] = np.arange(len(order))
    out[:, 3] = 1.0 / (1.0 + rank)
    return out


def candidate_features(
    image: Any, candidates: Sequence[Candidate], cam: NDArray[np.float32] | None = None, *, sigma: float = 1.5,
    polarity: str = "dark",
) -> NDArray[np.float64]:
    """(K, len(FEATURE_NAMES)) features of ``candidates`` of ``image`` (CAM features are 0 without a CAM)."""
    if not candidates:
        return np.zeros((0, len(FEATURE_NAMES)))
    return features_of(Work(image, sigma, shape=candidates[0].mask.shape, polarity=polarity), candidates, cam)


def features_of(work: Work, candidates: Sequence[Candidate], cam: NDArray[np.float32] | None, *,
                cam_small: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
    """(K, len(FEATURE_NAMES)) features of ``candidates`` on their working image ``work`` (CAM features
    are 0 without a CAM; ``cam_small``: see :func:`cam_features`, enough on its own)."""
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
        box = _box_of(m)
        (y0, y1), (x0, x1) = (box[0].start, box[0].stop), (box[1].start, box[1].stop)
        mc = m[box]  # the mask's box: every per-region sum below reads only it (same values, same order)
        ys, xs = np.nonzero(mc)
        a = len(ys)
        ys, xs = ys + y0, xs + x0
        hull = np.count_nonzero(convex_hull_image(mc))
        win, ring = _ring_in(m, box, max(2, int(0.2 * np.sqrt(a))))
        inside = float(small[box][mc].mean())
        out = float(small[win][ring].mean()) if ring.any() else inside
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
                     border, bdist, (out - inside) / std, 0.0, -float(local[box][mc].mean()) / std,
                     inside / (float(small.mean()) + 1e-3), below_above, np.log(c.hits), 0.0, 0.0, 0.0, 0.0])
    F = np.array(rows, np.float64)
    k = FEATURE_NAMES.index("contrast")
    F[:, k + 1] = (F[:, k] - F[:, k].mean()) / (F[:, k].std() + 1e-6)
    if cam is not None or cam_small is not None:
        F[:, list(CAM_FEATURES)] = cam_features(candidates, cam, cam_small=cam_small)
    return F

