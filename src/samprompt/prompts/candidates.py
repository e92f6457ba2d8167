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
  image: pass ``image=`` when calling it (the pipeline does so for strategies whose ``needs_image`` is
  true). Without an image it falls back to the built-in box of the pseudo mask's largest component.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field
from scipy import ndimage as ndi
from skimage.transform import resize

from samprompt.component import ComponentParams
from samprompt.prompts import PROMPT_STRATEGIES
from samprompt.prompts.base import Emits, Prompt, PromptStrategy
from samprompt.prompts.builtin import inside_point
from samprompt.prompts.candidate_regions import (
    CAM_FEATURES,
    DEFAULT_MEAN,
    DEFAULT_SCALE,
    DEFAULT_WEIGHTS,
    FEATURE_NAMES,
    REFINED_DEFAULT_MEAN,
    REFINED_DEFAULT_SCALE,
    REFINED_DEFAULT_WEIGHTS,
    REFINED_FEATURE_NAMES,
    Candidate,
    CandidateScorer,
    _features,
    _propose,
    _refine,
    _Work,
    cam_features,
    candidate_features,
    propose_candidates,
    refine_candidates,
    under_smaller_region,
)
from samprompt.regions import box_iou, clip_box, keep_components, mask_to_box

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
    "CandidateParams",
    "CandidatePromptStrategy",
    "CandidateScorer",
    "cam_features",
    "candidate_features",
    "negative_points",
    "propose_candidates",
    "refine_candidates",
    "region_prompt",
    "spread_points",
    "under_smaller_region",
]


#: What each ``output`` makes a prompt carry (:attr:`CandidatePromptStrategy.emits`).
_EMITS = {"box": Emits.BOX, "box_point": Emits.BOX | Emits.POINTS, "box_points": Emits.BOX | Emits.POINTS,
          "points": Emits.POINTS}


class CandidateParams(ComponentParams):
    """Parameters of :class:`CandidatePromptStrategy` (documented there)."""

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
    shadow_penalty: float = Field(default=2.0, ge=0.0)
    agreement_net: Path | None = None
    agreement_weight: float = Field(default=8.0, ge=0.0)
    point_min_score: float | None = None
    cam_gate: Literal["none", "overlap"] = "none"
    fallback: Literal["mask_box", "none"] = "mask_box"


class CandidatePromptStrategy(PromptStrategy[CandidateParams]):
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
        shadow_penalty: Subtracted from the second-stage score of a refined region that has a smaller
            refined region directly above it (:func:`under_smaller_region`: probably the acoustic shadow
            under the lesion); 0 = off. The default 2.0 was chosen by box IoU on the BUSI train split
            (with its masks; docs: quality).
        agreement_net: A self-trained segmentation net (:mod:`samprompt.prompts.selftrain`, file written by
            :func:`~samprompt.prompts.selftrain.save_selftrain_net`); when given, ``agreement_weight`` x
            (box IoU of each refined region with the net's box) is added to the second-stage scores.
            ``None`` (default) = off. Needs ``refine_top_k`` > 0.
        agreement_weight: Weight of that agreement term; 8 was chosen on BUSI val (docs/quality.md).
        point_min_score: Emit positive points (``box_point``, ``box_points``) only when the chosen region's
            score is at least this (the box is always emitted; ``points`` output is unaffected);
            ``None`` (default) = always. With the default scorers, 1.0 (the 60th percentile of the chosen
            regions' scores on the BUSI train lesion images) puts the point in the lesion 97 % of the time
            on val, for 41 % of the images (always emitted: 68 %); see docs/quality.md.
        cam_gate: Candidates must overlap the pseudo mask (``overlap``), or any candidate may win (``none``).
        fallback: Without an image or a candidate: ``mask_box`` (box of the pseudo mask's largest
            component) or ``none`` (no prompt).
    """

    needs_image = True
    emits = Emits.BOX | Emits.POINTS  # narrowed to what ``output`` gives in __init__

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        self.emits = _EMITS[p.output]
        self.scorer = CandidateScorer(p.weights, p.mean, p.scale)
        self.refine_scorer = CandidateScorer(p.refine_weights, p.refine_mean, p.refine_scale,
                                             names=REFINED_FEATURE_NAMES)
        self._segmenter: Any = None
        self._agreement: Any = None
        if p.agreement_net is not None:
            from samprompt.prompts.selftrain import load_selftrain_net

            self._agreement = load_selftrain_net(p.agreement_net)

    def select(self, image: Any, cam: NDArray[np.float32], pseudo_mask: NDArray[np.bool_] | None = None
               ) -> tuple[Candidate | None, list[Candidate], NDArray[np.float64]]:
        """Propose and score (first stage only) and pick: ``(best or None, candidates, scores)``."""
        best, cands, scores, _ = self._select(image, cam, pseudo_mask)
        return best, cands, scores

    def _select(self, image: Any, cam: NDArray[np.float32], pseudo_mask: NDArray[np.bool_] | None
                ) -> tuple[Candidate | None, list[Candidate], NDArray[np.float64], _Work]:
        p = self.params
        work = _Work(image, p.sigma, work_size=p.work_size)
        cands = _propose(work, quantiles=p.quantiles, min_area=p.min_area,
                         max_area=p.max_area, segments=p.segments,
                         max_candidates=p.max_candidates)
        if not cands:
            return None, cands, np.zeros(0), work
        # CAM features cost a resize of the CAM; a scorer that gives them no weight does not need them
        uses_cam = bool(np.any(self.scorer.weights[list(CAM_FEATURES)] != 0))
        scores = self.scorer(_features(work, cands, cam if uses_cam else None))
        scores = self._gate(cands, scores, pseudo_mask)
        return cands[int(np.argmax(scores))], cands, scores, work

    def _gate(self, cands: Sequence[Candidate], scores: NDArray[np.float64],
              pseudo_mask: NDArray[np.bool_] | None) -> NDArray[np.float64]:
        if self.params.cam_gate == "overlap" and pseudo_mask is not None and pseudo_mask.any():
            pm = resize(pseudo_mask.astype(np.float32), cands[0].mask.shape, order=0) > 0.5
            hit = np.array([np.any(c.mask & pm) for c in cands])
            if hit.any():
                scores = np.where(hit, scores, -np.inf)
        return scores

    def choose(self, image: Any, cam: NDArray[np.float32], pseudo_mask: NDArray[np.bool_] | None = None
               ) -> tuple[NDArray[np.bool_] | None, float]:
        """The chosen region at the original resolution and its score (``(None, -inf)`` without one)."""
        p = self.params
        best, cands, scores, work = self._select(image, cam, pseudo_mask)
        if best is None:
            return None, float("-inf")
        if p.refine_top_k == 0:
            return best.full_mask(work.grey.shape), float(np.max(scores))
        if self._segmenter is None:
            from samprompt.segmenters.classical import ClassicalSegmenter

            self._segmenter = ClassicalSegmenter(stretch_to_box=False)
        finite = np.isfinite(scores)
        keep = [c for c, f in zip(cands, finite) if f]
        _, full, F = _refine(work, keep, scores[finite], top_k=p.refine_top_k,
                              margin=p.refine_margin, segmenter=self._segmenter)
        s2 = self.refine_scorer(F)
        boxes = [mask_to_box(m) for m in full]
        if p.shadow_penalty > 0:
            s2 = s2 - p.shadow_penalty * under_smaller_region(boxes)
        if self._agreement is not None and p.agreement_weight > 0:
            from samprompt.prompts.selftrain import net_box, predict_map

            nb = net_box(predict_map(self._agreement, image))
            if nb is not None:
                s2 = s2 + p.agreement_weight * np.array([box_iou(b, nb) for b in boxes])
        i = int(np.argmax(s2))
        return full[i], float(s2[i])

    def make_prompt(
        self, mask: NDArray[np.bool_], cam: NDArray[np.float32], image: NDArray[np.uint8] | None = None
    ) -> Prompt | None:
        """Pick the best candidate of ``image`` ((H, W, 3) uint8, validated by the caller) and prompt on it;
        without an image (or candidates), fall back to the pseudo mask's largest component."""
        p = self.params
        region = None
        output = p.output
        if image is not None:
            region, score = self.choose(image, cam, mask)
            if region is not None and not region.any():
                region = None
            if (region is not None and p.point_min_score is not None and score < p.point_min_score
                    and output in ("box_point", "box_points")):
                output = "box"
        if region is None:
            if p.fallback == "none" or not mask.any():
                return None
            region = keep_components(mask, "largest")
        return region_prompt(region, output, p.n_points, p.n_negative, p.margin)


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
    out: NDArray[np.float32] = pts[ok].astype(np.float32)
    return out


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
