"""Choosing one region of an image: propose, score, refine, re-score (the machinery of ``candidates``).

:class:`ProposalSelector` runs, for each polarity it is given (``both`` = dark and bright), the proposal
(:func:`~samprompt.proposals.regions.propose_candidates`), the first-stage score, the refinement of the
best ``refine_top_k`` by a promptable segmenter passed in (default: the weight-free ``classical``
segmenter, loose box), the second-stage score, the shadow penalty and an optional agreement term, and
returns the best region over all polarities. Scores of different polarities are comparable because every
feature is measured relative to the polarity's own working image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from skimage.transform import resize

from samprompt.proposals.features import CAM_FEATURES, cam_at, features_of
from samprompt.proposals.refine import _refine, under_smaller_region
from samprompt.proposals.regions import POLARITIES, Candidate, Work, _propose
from samprompt.proposals.scorer import CandidateScorer
from samprompt.regions import box_iou, mask_to_box

__all__ = ["Agreement", "ProposalSelector", "polarities_of", "selector_from_scorer"]

#: ``agreement(image) -> box or None``: a second opinion on where the lesion is (e.g. a self-trained net's
#: box, :func:`samprompt.classifiers.selftrain.agreement_from_net`), in original pixels ``(x0, y0, x1, y1)``.
Agreement = Callable[[Any], "NDArray[np.float32] | None"]


def polarities_of(polarity: str) -> tuple[str, ...]:
    """The working polarities of a strategy / scorer polarity (``both`` = dark and bright).

    Raises:
        ValueError: An unknown polarity.
    """
    if polarity == "both":
        return ("dark", "bright")
    if polarity in POLARITIES:
        return (polarity,)
    raise ValueError(f"polarity must be one of {(*POLARITIES, 'both')}, got {polarity!r}")


class ProposalSelector:
    """Pick the most lesion-like region of an image (see the module docstring).

    Args:
        stage1: First-stage scorer over :data:`~samprompt.proposals.features.FEATURE_NAMES`.
        stage2: Second-stage scorer over :data:`~samprompt.proposals.features.REFINED_FEATURE_NAMES`.
        polarity: ``dark``, ``bright``, ``colour`` or ``both``.
        work_size, sigma, quantiles, min_area, max_area, segments, max_candidates: Proposal settings
            (:func:`~samprompt.proposals.regions.propose_candidates`).
        refine_top_k: Refine this many best first-stage candidates (0 = no refinement).
        refine_margin: Enlarge each refined box by this fraction of its size on every side.
        shadow_penalty: Subtracted from the second-stage score of a region under a smaller one.
        cam_gate: ``overlap`` = only candidates overlapping the pseudo mask may win (when any does).
        agreement: Optional :data:`Agreement` callable; ``agreement_weight`` x box IoU with its box is
            added to the second-stage scores.
        agreement_weight: Weight of the agreement term.
        segmenter: The refining segmenter (``embed`` / ``decode``); default ``classical`` (loose box).
    """

    def __init__(self, stage1: CandidateScorer, stage2: CandidateScorer, *, polarity: str = "dark",
                 work_size: int = 128, sigma: float = 1.5, quantiles: Sequence[float] = (0.1, 0.2, 0.3, 0.4),
                 min_area: float = 0.002, max_area: float = 0.4, segments: Sequence[float] = (50.0, 200.0),
                 max_candidates: int = 60, refine_top_k: int = 6, refine_margin: float = 0.1,
                 shadow_penalty: float = 0.0, cam_gate: str = "none", agreement: Agreement | None = None,
                 agreement_weight: float = 0.0, segmenter: Any = None) -> None:
        self.stage1, self.stage2 = stage1, stage2
        self.polarities = polarities_of(polarity)
        self.work_size, self.sigma, self.quantiles = work_size, sigma, tuple(quantiles)
        self.min_area, self.max_area, self.segments = min_area, max_area, tuple(segments)
        self.max_candidates, self.refine_top_k, self.refine_margin = max_candidates, refine_top_k, refine_margin
        self.shadow_penalty, self.cam_gate = shadow_penalty, cam_gate
        self.agreement, self.agreement_weight = agreement, agreement_weight
        self._segmenter = segmenter

    @property
    def segmenter(self) -> Any:
        """The refining segmenter (made on first use)."""
        if self._segmenter is None:
            from samprompt.segmenters.classical import ClassicalSegmenter

            self._segmenter = ClassicalSegmenter(stretch_to_box=False)
        return self._segmenter

    def propose(self, image: Any, polarity: str = "dark", grey: NDArray[np.float32] | None = None
                ) -> tuple[Work, list[Candidate]]:
        """The working image of ``polarity`` and its candidates (``grey``: see :class:`Work`)."""
        work = Work(image, self.sigma, work_size=self.work_size, polarity=polarity, grey=grey)
        return work, _propose(work, quantiles=self.quantiles, min_area=self.min_area, max_area=self.max_area,
                              segments=self.segments, max_candidates=self.max_candidates)

    def uses_cam(self, stage: int) -> bool:
        """Whether stage ``stage`` (1 or 2) gives the CAM features any weight (else the CAM is not read)."""
        scorer = self.stage1 if stage == 1 else self.stage2
        return bool(np.any(scorer.weights[list(CAM_FEATURES)] != 0))

    def score1(self, work: Work, cands: Sequence[Candidate], cam: NDArray[np.float32] | None,
               pseudo_mask: NDArray[np.bool_] | None = None, *,
               cam_small: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
        """(K,) first-stage scores (``-inf`` where the CAM gate excludes a candidate); ``cam_small``: the
        CAM already at the candidates' working shape (:func:`~samprompt.proposals.features.cam_at`)."""
        # CAM features cost a resize of the CAM; a scorer that gives them no weight does not need them
        if cam is not None and self.uses_cam(1):
            scores = self.stage1(features_of(work, cands, cam, cam_small=cam_small))
        else:
            scores = self.stage1(features_of(work, cands, None))
        if self.cam_gate == "overlap" and pseudo_mask is not None and pseudo_mask.any():
            pm = resize(pseudo_mask.astype(np.float32), cands[0].mask.shape, order=0) > 0.5
            hit = np.array([np.any(c.mask & pm) for c in cands])
            if hit.any():
                scores = np.where(hit, scores, -np.inf)
        return scores

    def refine(self, work: Work, cands: Sequence[Candidate], scores: NDArray[np.float64],
               cam: NDArray[np.float32] | None = None, *, cam_small: NDArray[np.float64] | None = None
               ) -> tuple[list[NDArray[np.bool_]], NDArray[np.float64]]:
        """Full-size masks and (k, 29) refined features of the best ``refine_top_k`` candidates.

        The refined regions' CAM features are filled from ``cam`` ((h, w), any size) when the second stage
        gives them weight (a fitted file may; ``busi-v1`` does not), else they are 0.
        """
        finite = np.isfinite(scores)
        keep = [c for c, f in zip(cands, finite) if f]
        small = None
        if cam is not None and keep and self.uses_cam(2):
            small = cam_small if cam_small is not None else cam_at(cam, keep[0].mask.shape)
        _, full, F = _refine(work, keep, scores[finite], top_k=self.refine_top_k, margin=self.refine_margin,
                             segmenter=self.segmenter, cam_small=small)
        return full, F

    def score2(self, image: Any, full: Sequence[NDArray[np.bool_]], F: NDArray[np.float64]) -> NDArray[np.float64]:
        """(k,) second-stage scores with the shadow penalty and the agreement term."""
        s2 = self.stage2(F)
        boxes = [mask_to_box(m) for m in full]
        if self.shadow_penalty > 0:
            s2 = s2 - self.shadow_penalty * under_smaller_region(boxes)
        if self.agreement is not None and self.agreement_weight > 0:
            nb = self.agreement(image)
            if nb is not None:
                s2 = s2 + self.agreement_weight * np.array([box_iou(b, nb) for b in boxes])
        return s2

    def choose_in(self, image: Any, cam: NDArray[np.float32] | None, pseudo_mask: NDArray[np.bool_] | None,
                  polarity: str) -> tuple[NDArray[np.bool_] | None, float]:
        """:meth:`choose` for one working polarity."""
        work, cands = self.propose(image, polarity)
        if not cands:
            return None, float("-inf")
        wants = self.uses_cam(1) or self.uses_cam(2)
        small = cam_at(cam, cands[0].mask.shape) if cam is not None and wants else None  # resized once
        scores = self.score1(work, cands, cam, pseudo_mask, cam_small=small)
        if self.refine_top_k == 0:
            return cands[int(np.argmax(scores))].full_mask(work.grey.shape), float(np.max(scores))
        full, F = self.refine(work, cands, scores, cam, cam_small=small)
        s2 = self.score2(image, full, F)
        i = int(np.argmax(s2))
        return full[i], float(s2[i])

    def choose(self, image: Any, cam: NDArray[np.float32] | None = None,
               pseudo_mask: NDArray[np.bool_] | None = None) -> tuple[NDArray[np.bool_] | None, float]:
        """The chosen region at the original (H, W) and its score (``(None, -inf)`` without a candidate).

        Args:
            image: (H, W[, 3]) uint8 (or (H, W) float grey in [0, 1]).
            cam: (h, w) CAM (any size, resized to the working image) or ``None``.
            pseudo_mask: (h, w) bool pseudo mask for the CAM gate, or ``None``.
        """
        best: tuple[NDArray[np.bool_] | None, float] = (None, float("-inf"))
        for polarity in self.polarities:
            region, score = self.choose_in(image, cam, pseudo_mask, polarity)
            if region is not None and (best[0] is None or score > best[1]):
                best = (region, score)
        return best


def selector_from_scorer(scorer: Any = "busi-v1", **settings: Any) -> ProposalSelector:
    """A :class:`ProposalSelector` with a scorer file's stages, polarity and shadow penalty.

    Args:
        scorer: A :class:`~samprompt.proposals.scorer.ScorerFile`, a shipped name or a path.
        **settings: Other :class:`ProposalSelector` arguments (override the file's polarity / penalty).
    """
    from samprompt.proposals.scorer import ScorerFile, load_scorer

    sf = scorer if isinstance(scorer, ScorerFile) else load_scorer(scorer)
    settings.setdefault("polarity", sf.polarity)
    settings.setdefault("shadow_penalty", sf.shadow_penalty)
    return ProposalSelector(sf.stage1, sf.stage2, **settings)
