"""Private helpers of the classifiers: atomic checkpoint writes and state-dict mismatch messages.

The one safe way samprompt reads ``.pt`` files lives in :mod:`samprompt._torch` (re-exported here)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from samprompt._io import atomic_write
from samprompt._torch import load_failure, safe_load

__all__ = ["atomic_save", "describe_key_mismatch", "load_failure", "safe_load"]


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file next to ``path``, then rename it over ``path``.

    A run killed while saving never leaves a half-written checkpoint behind.

    Returns:
        The path written.
    """
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def describe_key_mismatch(
    missing: list[str], unexpected: list[str], shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]
) -> str:
    """One line describing how a state dict differs from a model's (empty when it does not).

    Args:
        missing: Keys the model has and the file lacks.
        unexpected: Keys the file has and the model lacks.
        shapes: Key → (shape in the file, shape in the model) for keys whose shapes differ.
    """
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} keys (e.g. {missing[:3]})")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} keys (e.g. {unexpected[:3]})")
    if shapes:
        ex = [f"{k}: file {a} vs model {b}" for k, (a, b) in list(shapes.items())[:3]]
        parts.append(f"{len(shapes)} shape mismatches (e.g. {ex})")
    return "; ".join(parts)

