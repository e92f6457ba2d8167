"""Private helpers: the one safe way samprompt reads ``.pt`` files, and atomic writes."""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from samprompt._io import atomic_write
from samprompt.errors import CheckpointError

__all__ = ["atomic_save", "describe_key_mismatch", "load_failure", "safe_load"]

_PICKLED_OBJECT = re.compile(r"unsupported global", re.IGNORECASE)
_UNPICKLER_CAUSE = re.compile(r"WeightsUnpickler error:\s*(\S[^\n]*)")
_LOAD_ERRORS = (
    pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError,
)


def safe_load(path: str | os.PathLike[str], what: str = "checkpoint") -> Any:
    """Load ``path`` with ``torch.load(..., map_location="cpu", weights_only=True)``.

    Args:
        path: File to read.
        what: Word used in error messages (``"checkpoint"``, ``"weights file"``).

    Returns:
        Whatever the file holds (tensors and plain containers only).

    Raises:
        CheckpointError: Naming the file when it is missing, not a file, truncated/corrupted, or holds
            pickled Python objects (e.g. a whole ``nn.Module``) that ``weights_only`` refuses.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{what} {str(p)!r} does not exist")
    if not p.is_file():
        raise CheckpointError(f"{what} {str(p)!r} is not a file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{what} {str(p)!r} is empty (0 bytes)")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except _LOAD_ERRORS as exc:
        raise CheckpointError(f"{what} {str(p)!r} {load_failure(exc)}") from exc


def load_failure(exc: BaseException, resave: str = "or use save_classifier()") -> str:
    """Why ``torch.load(..., weights_only=True)`` failed, as the end of a sentence naming the file.

    ``weights_only`` refuses both pickled objects ("Unsupported global: GLOBAL torch.nn...Linear",
    "unsupported GLOBAL posix.mkdir") and bytes that are no pickle at all ("Unsupported operand 110" for
    a text file): only the first is "a whole model". torch's own text goes on to advise
    ``weights_only=False``, which is exactly what must not be done, so only its cause is kept.
    """
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError):
        if _PICKLED_OBJECT.search(text):
            return (
                "holds pickled Python objects (for example a whole model saved with torch.save(model)); "
                "samprompt only loads tensors and plain metadata (torch.load(weights_only=True)) because "
                "unpickling can run arbitrary code. Re-save it as a state dict: "
                f"torch.save(model.state_dict(), path), {resave}."
            )
        cause = _UNPICKLER_CAUSE.search(text)
        detail = cause.group(1) if cause else (text.strip().splitlines() or ["UnpicklingError"])[0]
        return f"is corrupted or not a PyTorch file: {detail}"
    if isinstance(exc, EOFError):
        return "is empty or cut short (EOFError): not a complete PyTorch file"
    return f"is corrupted or not a PyTorch file: {type(exc).__name__}: {text}"


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

