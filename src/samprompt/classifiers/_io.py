"""Private helpers: the one safe way samprompt reads ``.pt`` files, and atomic writes."""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from samprompt.errors import CheckpointError

__all__ = ["atomic_save", "safe_load"]


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
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights_only" in text or "Weights only load failed" in text:
            raise CheckpointError(
                f"{what} {str(p)!r} holds pickled Python objects (for example a whole model saved with "
                "torch.save(model)); samprompt only loads tensors and plain metadata "
                "(torch.load(weights_only=True)) because unpickling can run arbitrary code. Re-save it "
                "as a state dict: torch.save(model.state_dict(), path), or use save_classifier()."
            ) from exc
        raise CheckpointError(f"{what} {str(p)!r} is corrupted or not a PyTorch file: {text}") from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise CheckpointError(
            f"{what} {str(p)!r} is corrupted or not a PyTorch file: {type(exc).__name__}: {exc}"
        ) from exc


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file next to ``path``, then rename it over ``path``.

    A run killed while saving never leaves a half-written checkpoint behind.

    Returns:
        The path written.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
