"""The one copy of samprompt's PyTorch plumbing: which device, how a ``.pt`` file is read safely, and how a
classifier's lesion-head logit is read.

Every module that picks a device or reads a checkpoint (classifiers, segmenters, self-training) calls these.
The lesion-head reader is here, below both rooms, because the classifiers add the head
(:mod:`samprompt.classifiers.lesion_head`) and the CAM extractors read it (``head: lesion``).
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samprompt.errors import CheckpointError, ConfigError

__all__ = ["LESION_HEAD_ATTR", "has_lesion_head", "lesion_logits", "load_failure", "resolve_device", "safe_load"]

_PICKLED_OBJECT = re.compile(r"unsupported global", re.IGNORECASE)
_UNPICKLER_CAUSE = re.compile(r"WeightsUnpickler error:\s*(\S[^\n]*)")


def resolve_device(device: str | torch.device, where: str = "device") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else as given, checked against this machine.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ... or a :class:`torch.device`.
        where: Config path of the setting, used in messages (``"sam.params.device"``).

    Raises:
        ConfigError: Naming ``where`` when torch cannot parse the text, or it asks for CUDA (or a CUDA
            device index) this machine does not have.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"{where}: invalid device {str(device)!r} ({exc}); use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{where}: {str(device)!r} requested but CUDA is not available (use auto or cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"{where}: {str(device)!r} requested but this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)")
    return dev


def safe_load(path: str | os.PathLike[str], what: str = "checkpoint",
              resave: str = "or use save_classifier()") -> Any:
    """Load ``path`` with ``torch.load(..., map_location="cpu", weights_only=True)``; the one place
    samprompt reads a ``.pt`` file.

    Args:
        path: File to read.
        what: Words used in error messages (``"checkpoint"``, ``"SAM checkpoint"``).
        resave: End of the advice given for a file of pickled objects (how to re-save it).

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
    except Exception as exc:  # untrusted bytes: any failure of torch.load means a bad file
        raise CheckpointError(f"{what} {str(p)!r} {load_failure(exc, resave)}") from exc


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


#: Attribute (and state-dict prefix) of a classifier's lesion head, a ``Linear(K, 1)`` on the output of
#: its ``avgpool`` (see :mod:`samprompt.classifiers.lesion_head`).
LESION_HEAD_ATTR = "lesion_fc"


def has_lesion_head(model: nn.Module) -> bool:
    """Whether ``model`` carries a lesion head (``model.lesion_fc``, an ``nn.Linear``)."""
    return isinstance(getattr(model, LESION_HEAD_ATTR, None), nn.Linear)


@contextmanager
def lesion_logits(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the lesion logit of every forward pass run inside the block.

    Usage::

        with lesion_logits(model) as seen:
            class_logits = model(x)          # (B, C), unchanged
        lesion = seen[-1]                    # (B,) lesion logits of that pass, with gradient

    The logit is ``lesion_fc(flatten(avgpool output))``, read by a forward hook on ``avgpool`` that is
    removed when the block ends.

    Raises:
        ConfigError: ``model`` has no lesion head.
    """
    if not has_lesion_head(model):
        raise ConfigError(f"{type(model).__name__} has no lesion head (train it with train.lesion_head > 0)")
    head = getattr(model, LESION_HEAD_ATTR)
    seen: list[torch.Tensor] = []

    def keep(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        seen.append(head(torch.flatten(out, 1))[:, 0])

    hook = model.get_submodule("avgpool").register_forward_hook(keep)
    try:
        yield seen
    finally:
        hook.remove()
