"""Refinement of the best candidates by a promptable segmenter (loose box), and the shadow test."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

from samprompt.prompts.base import Prompt
from samprompt.proposals.features import FEATURE_NAMES, REFINED_FEATURE_NAMES, cam_at, features_of
from samprompt.proposals.regions import Candidate, Work, _box_of, _grown, _iou, _shrink_mask

__all__ = ["refine_candidates", "under_smaller_region"]


def refine_candidates(
    image: Any,
    candidates: Sequence[Candidate],
    scores: NDArray[np.float64],
    *,
    top_k: int = 6,
    margin: float = 0.1,
    segmenter: Any = None,
    sigma: float = 1.5,
    polarity: str = "dark",
    cam: NDArray[np.float32] | None = None,
) -> tuple[list[Candidate], list[NDArray[np.bool_]], NDArray[np.float64]]:
    """Refine the ``top_k`` best-scored candidates with the weight-free polar segmenter.

    Each candidate's box, enlarged by ``margin`` x its size on every side, is decoded as a LOOSE box (the
    contour may shrink inside it but not leave it) by ``segmenter`` (default: ``classical`` with
    ``stretch_to_box=False``); the contour replaces the thresholded region.

    ``cam`` ((h, w), any size; resized to the candidates' working shape) fills the refined regions' CAM
    features (``cam_mean`` … ``cam_rank``); without it they are 0.

    Returns:
        ``(refined, full_masks, features)``: refined candidates at the working resolution (best first
        stage score first), their masks at the original resolution, and (k, len(REFINED_FEATURE_NAMES))
        features (see :data:`REFINED_FEATURE_NAMES`).
    """
    if not candidates:
        return [], [], np.zeros((0, len(REFINED_FEATURE_NAMES)))
    shape = candidates[0].mask.shape
    return _refine(Work(image, sigma, shape=shape, polarity=polarity), candidates, scores, top_k=top_k,
                   margin=margin, segmenter=segmenter, cam_small=None if cam is None else cam_at(cam, shape))


def _refine(work: Work, candidates: Sequence[Candidate], scores: NDArray[np.float64], *, top_k: int,
            margin: float, segmenter: Any, cam_small: NDArray[np.float64] | None = None
            ) -> tuple[list[Candidate], list[NDArray[np.bool_]], NDArray[np.float64]]:
    """:func:`refine_candidates` on a made working image; ``cam_small``: the CAM at the candidates' working
    shape (:func:`~samprompt.proposals.features.cam_at`) or ``None`` (CAM features 0)."""
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
    F = features_of(work, refined, None, cam_small=cam_small)
    small = work.small
    grad = ndi.gaussian_gradient_magnitude(small, 1.0)
    gscale = float(np.percentile(grad, 90)) + 1e-4
    std = float(small.std()) + 1e-3
    extra = np.zeros((n, len(REFINED_FEATURE_NAMES) - len(FEATURE_NAMES)))
    for i, (m, j) in enumerate(zip(small_masks, order)):
        orig = candidates[j].mask
        box = _box_of(m)
        (y0, y1), (x0, x1) = (box[0].start, box[0].stop), (box[1].start, box[1].stop)
        # the boundary pixels, on the mask's box plus a 1-pixel frame (the same pixels as on the whole image)
        frame = _grown(box, 1, m.shape)
        mf = m[frame]
        edge_px = mf & ~ndi.binary_erosion(mf)
        bh, bw = max(2, (y1 - y0) // 2), max(2, x1 - x0)
        below = small[y1:min(h, y1 + bh), x0:x1]
        side = np.concatenate([small[y1:min(h, y1 + bh), max(0, x0 - bw):x0].ravel(),
                               small[y1:min(h, y1 + bh), x1:min(w, x1 + bw)].ravel()])
        extra[i] = [
            scores[j], 1.0 / (1.0 + i), float(out.scores[i]), _iou(m, orig),
            float(grad[frame][edge_px].mean()) / gscale if edge_px.any() else 0.0,
            float(small[frame][mf].std()) / std,
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
