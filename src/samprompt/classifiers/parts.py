"""Heads and initial weights: the parts every classifier builder shares (torchvision, ``tiny_cnn``,
``timm:<name>``; see :mod:`samprompt.classifiers.builders` for the conventions).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from samprompt.classifiers._io import describe_key_mismatch, safe_load
from samprompt.classifiers.lesion_head import class_head_linear
from samprompt.errors import CheckpointError, ConfigError

__all__ = [
    "TARGET_LAYER_ATTR",
    "HeadKind",
    "cached_torchvision_weights",
    "load_initial_weights",
    "make_head",
    "replace_head",
]

log = logging.getLogger(__name__)

HeadKind = Literal["fc", "paper"]
#: Attribute set on built models: dotted name of the layer CAMs should hook (or absent).
TARGET_LAYER_ATTR = "cam_target_layer"


# ---------------------------------------------------------------------------------------------- heads
def _check_head_args(num_classes: int, head: str, dropout: float) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if head not in ("fc", "paper"):
        raise ConfigError(f"head must be 'fc' or 'paper', got {head!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")


def make_head(in_features: int, num_classes: int, head: HeadKind = "fc", dropout: float = 0.0) -> nn.Module:
    """Return a classification head mapping (B, in_features) to (B, num_classes).

    ``"fc"``: ``Linear`` (``Sequential(Dropout, Linear)`` when ``dropout > 0``); ``"paper"``:
    ``Sequential(ReLU, Dropout(dropout), Linear)``.
    """
    _check_head_args(num_classes, head, dropout)
    linear = nn.Linear(in_features, num_classes)
    if head == "paper":
        return nn.Sequential(nn.ReLU(inplace=False), nn.Dropout(p=float(dropout)), linear)
    return nn.Sequential(nn.Dropout(p=float(dropout)), linear) if dropout > 0 else linear


def _last_linear_name(model: nn.Module) -> str:
    found = class_head_linear(model)
    name = None if found is None else found[0]
    if name is None:
        raise ConfigError(f"{type(model).__name__} has no nn.Linear layer whose place a new head could take")
    return name


def replace_head(
    model: nn.Module, num_classes: int, head: HeadKind = "fc", dropout: float = 0.0, name: str | None = None
) -> str:
    """Replace the final linear layer of ``model`` in place by :func:`make_head`.

    Args:
        model: The network.
        num_classes: Output classes.
        head: Head kind.
        dropout: Dropout probability.
        name: Dotted module name of the layer to replace (default: the last ``nn.Linear``).

    Returns:
        The dotted name of the head (the prefix of its state-dict keys).
    """
    name = name or _last_linear_name(model)
    old = model.get_submodule(name)
    if not isinstance(old, nn.Linear):
        raise ConfigError(f"{name!r} of {type(model).__name__} is {type(old).__name__}, not nn.Linear")
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, make_head(old.in_features, num_classes, head, dropout))
    return name


# ---------------------------------------------------------------------------------------------- weights
def _unwrap_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and obj.get("format") == "samprompt.classifier":
        obj = obj.get("state_dict")
    elif isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"weights file {source!r} does not hold a state dict (got {type(obj).__name__})"
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"weights file {source!r} is not a state dict: non-tensor entries {bad[:3]}")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):  # saved from DataParallel / DDP
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_initial_weights(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], head_name: str, source: str
) -> None:
    """Load backbone weights into ``model``; keep the file's head only when it fits the new one.

    Args:
        model: Freshly built network (head already replaced).
        state_dict: Weights to load (may contain an old head under ``head_name``).
        head_name: Dotted name of the model's head (see :func:`replace_head`).
        source: File or weights name, used in error messages.

    Raises:
        CheckpointError: Naming ``source`` when a backbone key is missing, unexpected or of another shape.
    """
    own = model.state_dict()
    prefix = head_name + "."
    own_head = {k for k in own if k.startswith(prefix)}
    file_head = {k: v for k, v in state_dict.items() if k.startswith(prefix) or k == head_name}
    backbone = {k: v for k, v in state_dict.items() if k not in file_head}
    unexpected = sorted(k for k in backbone if k not in own)
    shapes = {
        k: (tuple(v.shape), tuple(own[k].shape))
        for k, v in sorted(backbone.items())
        if k in own and own[k].shape != v.shape
    }
    missing = sorted(
        k for k in own if k not in own_head and k not in backbone and not k.endswith("num_batches_tracked")
    )
    if unexpected or shapes or missing:
        raise CheckpointError(
            f"weights {source!r} do not fit {type(model).__name__}: "
            + describe_key_mismatch(missing, unexpected, shapes)
        )
    to_load = dict(backbone)
    if set(file_head) == own_head and all(own[k].shape == v.shape for k, v in file_head.items()):
        to_load.update(file_head)
    elif file_head:
        log.info("weights %r: head %r does not fit the new head and is re-initialised", source, head_name)
    model.load_state_dict(to_load, strict=False)


_ENUM_RE = re.compile(r"^(?:[A-Za-z0-9_]+_Weights\.)?[A-Z][A-Z0-9_]*$")


def cached_torchvision_weights(name: str, arch: str | None = None) -> tuple[Path, str]:
    """Locate a torchvision weights file in the torch hub cache WITHOUT downloading it.

    Args:
        name: ``"<Enum>.<MEMBER>"`` (e.g. ``"ResNet18_Weights.IMAGENET1K_V1"``), or a bare member
            (``"IMAGENET1K_V1"``, ``"DEFAULT"``) resolved against ``arch``'s weights enum.
        arch: torchvision model name (``"resnet18"``); when given, the weights must belong to it.

    Returns:
        ``(path of the cached file, full weights name)``.

    Raises:
        ConfigError: Unknown weights name, or weights of another architecture.
        CheckpointError: The file is not in the cache (samprompt never downloads).
    """
    try:
        if "." in name:
            weights = torchvision.models.get_weight(name)
        elif arch is not None:
            weights = torchvision.models.get_model_weights(arch)[name]
        else:
            raise KeyError(name)
    except (KeyError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"weights: {name!r} is neither an existing file nor a torchvision weights name"
        ) from exc
    full = f"{type(weights).__name__}.{weights.name}"
    if arch is not None:
        try:
            expected = torchvision.models.get_model_weights(arch)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"weights: torchvision has no weights for architecture {arch!r}") from exc
        if type(weights) is not expected:
            raise ConfigError(f"weights: {full} belong to another architecture than {arch!r}")
    filename = os.path.basename(urlparse(weights.url).path)
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not path.is_file():
        raise CheckpointError(
            f"weights {full} are not cached: expected {str(path)!r}. samprompt never downloads; fetch the "
            f"file yourself (e.g. torchvision.models.get_model({arch or 'name'!r}, weights={full!r}) on a "
            "machine with internet, or copy it there), or pass a local state-dict path."
        )
    return path, full


def _apply_weights(model: nn.Module, weights: str | None, head_name: str, tv_arch: str | None) -> None:
    if weights is None:
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise ConfigError(f"weights must be a path or a weights name, got {type(weights).__name__}")
    weights = str(weights)
    if Path(weights).exists():
        path, source = Path(weights), weights
    elif _ENUM_RE.match(weights) and tv_arch is not None:
        path, source = cached_torchvision_weights(weights, tv_arch)
    elif _ENUM_RE.match(weights):
        raise ConfigError(f"weights: {type(model).__name__} has no torchvision weights ({weights!r})")
    else:
        raise CheckpointError(f"weights file {weights!r} does not exist")
    sd = _unwrap_state_dict(safe_load(path, "weights file"), str(path))
    load_initial_weights(model, sd, head_name, source)
