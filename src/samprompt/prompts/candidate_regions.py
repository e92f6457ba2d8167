"""Deprecated location: the candidate machinery moved to :mod:`samprompt.proposals` (issue 15).

This module re-exports it for old imports. The ``DEFAULT_*`` / ``REFINED_DEFAULT_*`` vectors are read
from the shipped ``busi-v1`` scorer file (:func:`samprompt.proposals.load_scorer`); they are no longer
constants in code.
"""

from __future__ import annotations

from samprompt.proposals.features import (
    CAM_FEATURES,
    FEATURE_NAMES,
    REFINED_FEATURE_NAMES,
    cam_features,
    candidate_features,
)
from samprompt.proposals.features import features_of as _features
from samprompt.proposals.refine import _refine, refine_candidates, under_smaller_region
from samprompt.proposals.regions import (
    Candidate,
    _fill_holes,
    _propose,
    _ring,
    _shrink_mask,
    propose_candidates,
)
from samprompt.proposals.regions import Work as _Work
from samprompt.proposals.scorer import CandidateScorer, load_scorer

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

_BUSI = load_scorer("busi-v1")
#: busi-v1's first-stage weights, mean and scale (read from the scorer file).
DEFAULT_WEIGHTS: tuple[float, ...] = tuple(_BUSI.stage1.weights.tolist())
DEFAULT_MEAN: tuple[float, ...] = tuple(_BUSI.stage1.mean.tolist())
DEFAULT_SCALE: tuple[float, ...] = tuple(_BUSI.stage1.scale.tolist())
#: busi-v1's second-stage weights, mean and scale (read from the scorer file).
REFINED_DEFAULT_WEIGHTS: tuple[float, ...] = tuple(_BUSI.stage2.weights.tolist())
REFINED_DEFAULT_MEAN: tuple[float, ...] = tuple(_BUSI.stage2.mean.tolist())
REFINED_DEFAULT_SCALE: tuple[float, ...] = tuple(_BUSI.stage2.scale.tolist())

_PRIVATE = (_features, _refine, _fill_holes, _propose, _ring, _shrink_mask, _Work)  # old private imports
