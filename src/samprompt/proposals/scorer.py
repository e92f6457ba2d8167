"""Candidate scorers and scorer files: fitted numbers are data, with their provenance.

A scorer file is JSON::

    {"format": "samprompt-scorer", "version": 1, "name": "...", "polarity": "dark|bright|colour|both",
     "stage1": {"features": [...FEATURE_NAMES], "weights": [...], "mean": [...], "scale": [...]},
     "stage2": {"features": [...REFINED_FEATURE_NAMES], "weights": [...], "mean": [...], "scale": [...]},
     "shadow_penalty": 2.0, "agreement_weight": 8.0 (optional),
     "provenance": {"data_fingerprint": ..., "split": ..., "seed": ..., "library_version": ...,
                    "method": ..., "mask_tuned": [names of the parts chosen with masks], ...}}

``busi-v1`` (package data ``samprompt/proposals/busi-v1.json``) holds the scorers formerly written in code
(fit on the BUSI train split with image labels; its ``shadow_penalty`` was chosen with masks, which its
provenance says). :func:`load_scorer` takes a shipped name or a path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from samprompt._io import atomic_write_json
from samprompt.errors import ConfigError
from samprompt.proposals.features import FEATURE_NAMES, REFINED_FEATURE_NAMES

__all__ = ["FORMAT", "SCORER_POLARITIES", "SHIPPED", "VERSION", "CandidateScorer", "ScorerFile", "load_scorer",
           "save_scorer"]

FORMAT = "samprompt-scorer"
VERSION = 1
#: Names of the scorer files shipped as package data.
SHIPPED: tuple[str, ...] = ("busi-v1",)
#: Polarities a scorer file may name (``both`` = dark and bright proposals, the best-scored wins).
SCORER_POLARITIES: tuple[str, ...] = ("dark", "bright", "colour", "both")
#: A weight / mean / scale vector.
Vector = Sequence[float] | NDArray[np.float64]


class CandidateScorer:
    """Linear (logistic) candidate score ``standardised features @ weights``; higher = more lesion-like.

    Args:
        weights: One weight per feature (index 0 multiplies the constant 1); ``None`` = the ``busi-v1``
            stage of ``names``.
        mean: Per-feature mean subtracted before weighting (``None`` = 0, or busi-v1's with its weights).
        scale: Per-feature scale divided before weighting (``None`` = 1, or busi-v1's with its weights).
        names: The feature names the weights refer to (:data:`FEATURE_NAMES` or :data:`REFINED_FEATURE_NAMES`).

    Raises:
        ValueError: A vector whose length is not ``len(names)``.
    """

    def __init__(self, weights: Vector | None = None, mean: Vector | None = None,
                 scale: Vector | None = None, names: Sequence[str] = FEATURE_NAMES) -> None:
        n = len(names)
        self.names = tuple(names)
        if weights is None:
            d = load_scorer("busi-v1").stage(2 if self.names == REFINED_FEATURE_NAMES else 1)
            weights = d.weights
            mean = d.mean if mean is None else mean
            scale = d.scale if scale is None else scale
        self.weights: NDArray[np.float64] = np.asarray(weights, np.float64)
        self.mean: NDArray[np.float64] = np.zeros(n) if mean is None else np.asarray(mean, np.float64)
        self.scale: NDArray[np.float64] = np.ones(n) if scale is None else np.asarray(scale, np.float64)
        for name, v in (("weights", self.weights), ("mean", self.mean), ("scale", self.scale)):
            if v.shape != (n,):
                raise ValueError(f"CandidateScorer {name} must have {n} entries, got {v.shape}")

    def __call__(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        """(K,) scores of (K, F) features."""
        z = (features - self.mean) / np.where(self.scale > 0, self.scale, 1.0)
        z[:, 0] = 1.0
        out: NDArray[np.float64] = z @ self.weights
        return out


@dataclass
class ScorerFile:
    """The content of a scorer file (see the module docstring).

    Attributes:
        stage1: First-stage scorer over :data:`FEATURE_NAMES`.
        stage2: Second-stage (refined) scorer over :data:`REFINED_FEATURE_NAMES`.
        polarity: Which proposals the scorer was fit on (one of :data:`SCORER_POLARITIES`).
        shadow_penalty: The strategy's default ``shadow_penalty`` with this scorer.
        agreement_weight: The strategy's default ``agreement_weight`` (weight of a self-training net's
            agreement term) with this scorer; ``None`` = the file has none (a fitted file: the user gives it).
        name: A short name.
        provenance: Where the numbers come from (free-form mapping; see the module docstring).
        source: The file it was read from (``""`` when made in memory).
    """

    stage1: CandidateScorer
    stage2: CandidateScorer
    polarity: str = "dark"
    shadow_penalty: float = 0.0
    agreement_weight: float | None = None
    name: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def stage(self, k: int) -> CandidateScorer:
        """``stage1`` (k = 1) or ``stage2``."""
        return self.stage1 if k == 1 else self.stage2

    def to_json(self) -> dict[str, Any]:
        """The JSON mapping of the file."""
        def part(s: CandidateScorer) -> dict[str, Any]:
            return {"features": list(s.names), "weights": s.weights.tolist(), "mean": s.mean.tolist(),
                    "scale": s.scale.tolist()}
        out = {"format": FORMAT, "version": VERSION, "name": self.name, "polarity": self.polarity,
               "stage1": part(self.stage1), "stage2": part(self.stage2),
               "shadow_penalty": float(self.shadow_penalty), "provenance": self.provenance}
        if self.agreement_weight is not None:
            out["agreement_weight"] = float(self.agreement_weight)
        return out


def _stage(blob: dict[str, Any], key: str, names: tuple[str, ...], where: str) -> CandidateScorer:
    part = blob.get(key)
    if not isinstance(part, dict):
        raise ConfigError(f"scorer file {where}: no {key!r} section")
    got = tuple(part.get("features") or ())
    if got != names:
        missing = [n for n in names if n not in got]
        extra = [n for n in got if n not in names]
        raise ConfigError(f"scorer file {where}: {key}.features differ from this library's "
                          f"(missing {missing}, unknown {extra}" + (", other order" if not missing and not extra
                                                                   else "") + ")")
    try:
        return CandidateScorer(part["weights"], part.get("mean"), part.get("scale"), names=names)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"scorer file {where}: {key}: {exc}") from exc


def parse_scorer(blob: Any, where: str) -> ScorerFile:
    """A :class:`ScorerFile` from its JSON mapping; ``where`` names it in errors.

    Raises:
        ConfigError: Another format or version, other feature names, bad vectors or polarity.
    """
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ConfigError(f"scorer file {where}: not a samprompt scorer file (format must be {FORMAT!r})")
    if blob.get("version") != VERSION:
        raise ConfigError(f"scorer file {where}: version {blob.get('version')!r}, this library reads version "
                          f"{VERSION}")
    polarity = blob.get("polarity", "dark")
    if polarity not in SCORER_POLARITIES:
        raise ConfigError(f"scorer file {where}: polarity {polarity!r} is not one of {SCORER_POLARITIES}")
    shadow = blob.get("shadow_penalty", 0.0)
    if not isinstance(shadow, (int, float)) or shadow < 0:
        raise ConfigError(f"scorer file {where}: shadow_penalty must be a number >= 0, got {shadow!r}")
    agree = blob.get("agreement_weight")
    if agree is not None and (isinstance(agree, bool) or not isinstance(agree, (int, float)) or not agree >= 0
                              or agree == float("inf")):
        raise ConfigError(f"scorer file {where}: agreement_weight must be a finite number >= 0, got {agree!r}")
    return ScorerFile(_stage(blob, "stage1", FEATURE_NAMES, where),
                      _stage(blob, "stage2", REFINED_FEATURE_NAMES, where), polarity=polarity,
                      shadow_penalty=float(shadow), name=str(blob.get("name", "")),
                      agreement_weight=None if agree is None else float(agree),
                      provenance=dict(blob.get("provenance") or {}), source=where)


_CACHE: dict[str, ScorerFile] = {}


def load_scorer(name_or_path: str | os.PathLike[str]) -> ScorerFile:
    """A shipped scorer (:data:`SHIPPED`, e.g. ``"busi-v1"``) or a scorer file.

    Raises:
        ConfigError: Unknown name / missing file, unreadable JSON, or a bad file (naming it and the fault).
    """
    key = str(name_or_path)
    if key in SHIPPED:
        if key not in _CACHE:
            text = resources.files("samprompt.proposals").joinpath(f"{key}.json").read_text(encoding="utf-8")
            _CACHE[key] = parse_scorer(json.loads(text), f"{key!r} (package data)")
        return _CACHE[key]
    path = Path(key)
    if not path.is_file():
        raise ConfigError(f"scorer file {key!r} does not exist (shipped scorers: {', '.join(SHIPPED)})")
    try:
        blob = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"scorer file {key!r}: unreadable: {exc}") from exc
    return parse_scorer(blob, repr(key))


def save_scorer(scorer: ScorerFile, path: str | os.PathLike[str]) -> Path:
    """Write ``scorer`` as JSON (atomically) and return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(p, scorer.to_json())
    return p
