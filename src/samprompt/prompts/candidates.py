"""Candidate-region prompts: compact regions proposed from the IMAGE, refined and chosen (``candidates``).

A from-scratch classifier's CAM rarely outlines a lesion (it fires on whatever separates the classes),
but it often lands *near* it. This strategy turns the problem around: the image proposes candidate
lesions (compact regions darker than their surroundings, or brighter, or colour-distinct: ``polarity``),
and a scorer picks one from shape, size, position, contrast and (when the scorer weighs them) CAM
features. The chosen region's box (and points) is the prompt.

The machinery lives in :mod:`samprompt.proposals` (proposals, features, scorers, scorer files, fitting);
this module is the prompt strategy that delegates to it (:class:`~samprompt.proposals.select.ProposalSelector`).
The scorer is DATA: a scorer file (``scorer`` parameter: the shipped ``busi-v1``, default, or a path, e.g.
one written by ``samprompt fit-prompts`` or by a run's ``fit`` stage). Old names (``propose_candidates``,
``CandidateScorer``, ...) are re-exported here.

Without an image the strategy falls back to the box of the pseudo mask's largest component.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field
from scipy import ndimage as ndi

from samprompt.component import ComponentParams
from samprompt.errors import ConfigError
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
    cam_features,
    candidate_features,
    propose_candidates,
    refine_candidates,
    under_smaller_region,
)
from samprompt.proposals.scorer import ScorerFile, load_scorer
from samprompt.proposals.select import ProposalSelector
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
    scorer: str = "busi-v1"
    polarity: Literal["auto", "dark", "bright", "colour", "both"] = "auto"
    weights: tuple[float, ...] | None = None
    mean: tuple[float, ...] | None = None
    scale: tuple[float, ...] | None = None
    refine_top_k: int = Field(default=6, ge=0, le=32)
    refine_margin: float = Field(default=0.1, ge=0.0, le=1.0)
    refine_weights: tuple[float, ...] | None = None
    refine_mean: tuple[float, ...] | None = None
    refine_scale: tuple[float, ...] | None = None
    shadow_penalty: float | None = Field(default=None, ge=0.0)
    agreement_net: Path | None = None
    agreement_weight: float | None = Field(default=None, ge=0.0)
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
            (see :func:`~samprompt.proposals.regions.propose_candidates`).
        scorer: The scorer file: a shipped name (``busi-v1``, default: fit on BUSI with image labels, see
            its provenance) or a path (``samprompt fit-prompts``; in a run, ``fit`` = the scorer the run's
            ``fit`` stage writes, see :class:`~samprompt.runner.config.FitSpec`).
        polarity: Which regions are proposed: ``dark``, ``bright``, ``colour`` (colour-distinct), ``both``
            (dark and bright, the better-scored wins) or ``auto`` (default) = the scorer file's polarity
            (``busi-v1``: dark; a fitted file: the polarity the fit chose on the user's data).
        weights, mean, scale: Override the scorer file's first stage (see :class:`~samprompt.proposals.scorer.CandidateScorer`).
        refine_top_k: Refine this many best first-stage candidates with the polar segmenter and choose
            among the refined regions with the second-stage scorer (:func:`~samprompt.proposals.refine.refine_candidates`); 0 = no
            refinement (the thresholded region of the best first-stage candidate is the prompt).
        refine_margin: Each candidate's box is enlarged by this fraction of its size on every side before
            the (loose-box) refinement.
        refine_weights, refine_mean, refine_scale: Override the scorer file's second stage (over
            :data:`~samprompt.proposals.features.REFINED_FEATURE_NAMES`).
        shadow_penalty: Subtracted from the second-stage score of a refined region that has a smaller
            refined region directly above it (:func:`~samprompt.proposals.refine.under_smaller_region`: probably the acoustic shadow
            under the lesion); 0 = off; ``None`` (default) = the scorer file's value (``busi-v1``: 2.0,
            chosen by box IoU on the BUSI train split WITH ITS MASKS, as its provenance says; fitted files:
            0).
        agreement_net: A self-trained segmentation net (:mod:`samprompt.classifiers.selftrain`, file written by
            :func:`~samprompt.classifiers.selftrain.save_selftrain_net`); when given, ``agreement_weight`` x
            (box IoU of each refined region with the net's box) is added to the second-stage scores.
            ``None`` (default) = off. Needs ``refine_top_k`` > 0.
        agreement_weight: Weight of that agreement term; ``None`` (default) = the scorer file's
            (``busi-v1``: 8, chosen on BUSI val WITH its masks, as its provenance says; a fitted file has
            none, so it must be given with an ``agreement_net``).
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
        if p.scorer == "fit":
            raise ConfigError("candidates.scorer: 'fit' means the scorer of a run's fit stage and only works in "
                              "a run; outside a run, fit one with `samprompt fit-prompts` and give its path")
        self.scorer_file: ScorerFile = load_scorer(p.scorer)
        sf = self.scorer_file
        self.scorer = _override(sf.stage1, p.weights, p.mean, p.scale)
        self.refine_scorer = _override(sf.stage2, p.refine_weights, p.refine_mean, p.refine_scale)
        agreement = None
        weight = sf.agreement_weight if p.agreement_weight is None else p.agreement_weight
        if p.agreement_net is not None:
            from samprompt.classifiers.selftrain import agreement_from_net, load_selftrain_net

            if weight is None:
                raise ConfigError(
                    f"candidates.agreement_weight: the scorer file {sf.source or sf.name!r} carries no agreement "
                    "weight (a fitted file has none; busi-v1's 8 was chosen on BUSI val with its masks); give "
                    "agreement_weight with agreement_net")
            agreement = agreement_from_net(load_selftrain_net(p.agreement_net))
            if p.agreement_weight is None:  # record the weight in use (the run's manifest shows params)
                self.params = p.model_copy(update={"agreement_weight": weight})
        #: The agreement term's weight in use (``None`` without an agreement net's file weight).
        self.agreement_weight = weight
        self.selector = ProposalSelector(
            self.scorer, self.refine_scorer, polarity=sf.polarity if p.polarity == "auto" else p.polarity,
            work_size=p.work_size, sigma=p.sigma, quantiles=p.quantiles, min_area=p.min_area,
            max_area=p.max_area, segments=p.segments, max_candidates=p.max_candidates,
            refine_top_k=p.refine_top_k, refine_margin=p.refine_margin,
            shadow_penalty=sf.shadow_penalty if p.shadow_penalty is None else p.shadow_penalty,
            cam_gate=p.cam_gate, agreement=agreement, agreement_weight=weight or 0.0)

    def choose(self, image: Any, cam: NDArray[np.float32], pseudo_mask: NDArray[np.bool_] | None = None
               ) -> tuple[NDArray[np.bool_] | None, float]:
        """The chosen region at the original resolution and its score (``(None, -inf)`` without one)."""
        return self.selector.choose(image, cam, pseudo_mask)

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


def _override(stage: CandidateScorer, weights: tuple[float, ...] | None, mean: tuple[float, ...] | None,
              scale: tuple[float, ...] | None) -> CandidateScorer:
    """``stage`` with the given vectors replacing its own (explicit weights without mean / scale = none)."""
    if weights is None and mean is None and scale is None:
        return stage
    try:
        if weights is None:
            return CandidateScorer(stage.weights, stage.mean if mean is None else mean,
                                   stage.scale if scale is None else scale, names=stage.names)
        return CandidateScorer(weights, mean, scale, names=stage.names)
    except ValueError as exc:
        raise ConfigError(f"candidates: {exc}") from exc


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
