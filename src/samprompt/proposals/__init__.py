"""Region proposals from the image, their features, scorers, scorer files and fitting from image labels.

Below the prompt strategies and beside the segmenters: ``candidates`` (:mod:`samprompt.prompts.candidates`)
delegates here. Modules: :mod:`~samprompt.proposals.regions` (dark / bright / colour proposals),
:mod:`~samprompt.proposals.features`, :mod:`~samprompt.proposals.refine`,
:mod:`~samprompt.proposals.scorer` (scorer files, ``busi-v1``), :mod:`~samprompt.proposals.select`
(:class:`ProposalSelector`) and :mod:`~samprompt.proposals.fit` (:func:`fit_scorer`, image labels only) and
:mod:`~samprompt.proposals.guides` (:func:`guide_masks`: the chosen regions as a classifier's training
guides).
"""

from samprompt.proposals.features import (
    CAM_FEATURES,
    FEATURE_NAMES,
    REFINED_FEATURE_NAMES,
    candidate_features,
)
from samprompt.proposals.guides import PackedMask, guide_masks
from samprompt.proposals.refine import refine_candidates, under_smaller_region
from samprompt.proposals.regions import POLARITIES, Candidate, propose_candidates
from samprompt.proposals.scorer import CandidateScorer, ScorerFile, load_scorer, save_scorer
from samprompt.proposals.select import ProposalSelector

__all__ = [
    "CAM_FEATURES",
    "FEATURE_NAMES",
    "POLARITIES",
    "REFINED_FEATURE_NAMES",
    "Candidate",
    "CandidateScorer",
    "PackedMask",
    "ProposalSelector",
    "ScorerFile",
    "candidate_features",
    "guide_masks",
    "load_scorer",
    "propose_candidates",
    "refine_candidates",
    "save_scorer",
    "under_smaller_region",
]
