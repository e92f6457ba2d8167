"""``timm:<model name>`` classifiers: any ``timm`` model with samprompt's head, local weights only (``samprompt[timm]``).

``build_classifier("timm:convnext_tiny", num_classes=3)`` calls ``timm.create_model(name,
pretrained=False, num_classes=num_classes)`` and replaces the model's classifier (the module named by
its ``pretrained_cfg["classifier"]``, e.g. ``fc``, ``head.fc``) by samprompt's head (``"fc"`` /
``"paper"`` with ``dropout``), exactly as for torchvision models. Nothing is ever downloaded:

* ``weights=None``: random initialisation;
* ``weights="<file>"``: a LOCAL state dict — ``.safetensors`` (what timm publishes, read with
  ``safetensors.torch.load_file``) or a ``.pth`` / ``.pt`` / ``.bin`` file read with
  ``torch.load(..., weights_only=True)`` (a samprompt classifier checkpoint works too). The backbone
  must fit exactly; an ImageNet head is dropped when it does not fit the new one. A hub name
  (``"timm/resnet18.a1_in1k"``) is refused.

CAM target layer (recorded in the checkpoint's ``target_layer`` like ``layer4`` for ResNets): the deepest
entry of the model's ``feature_info`` (``layer4`` for ResNets, ``stages.3`` for ConvNeXt, ...), kept only
if a dry forward shows it yields a (B, C, h, w) map with the channels ``feature_info`` announces.
Transformers whose features are token sequences (ViT, DeiT, ...) or channels-last maps (Swin) get
``None``: CAM methods need a channels-first feature map, so samprompt does NOT reshape tokens; name a
layer yourself (``cam.params.target_layer``) only for models whose layer gives such a map.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samprompt._extras import require
from samprompt.classifiers.parts import (
    TARGET_LAYER_ATTR,
    HeadKind,
    _apply_weights,
    _check_head_args,
    _unwrap_state_dict,
    load_initial_weights,
    replace_head,
)
from samprompt.errors import CheckpointError, ConfigError

__all__ = ["TIMM_PREFIX", "build_timm", "timm_target_layer"]

log = logging.getLogger(__name__)

#: Prefix of :func:`~samprompt.classifiers.builders.build_classifier` names that go to ``timm``.
TIMM_PREFIX = "timm:"


def timm_target_layer(model: nn.Module) -> str | None:
    """The CAM layer of a timm model: its deepest ``feature_info`` module if that gives (B, C, h, w).

    Args:
        model: A model made by ``timm.create_model`` (in any mode; it is restored afterwards).

    Returns:
        The dotted module name, or ``None`` when the model has no ``feature_info`` or its deepest
        feature is not a channels-first map (token sequences, channels-last maps).
    """
    info = getattr(model, "feature_info", None)
    if not info:
        return None
    last = info[-1]
    name, channels = str(last.get("module", "")), int(last.get("num_chs", -1))
    try:
        layer = model.get_submodule(name)
    except AttributeError:
        return None
    seen: list[torch.Size] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out.shape) if torch.is_tensor(out) else None)
    size = tuple(getattr(model, "pretrained_cfg", {}).get("input_size", (3, 224, 224)))[-2:]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, *size))
    finally:
        handle.remove()
        model.train(was_training)
    if seen and len(seen[-1]) == 4 and seen[-1][1] == channels:
        return name
    log.info("timm %s: %r gives %s, not a (B, C, h, w) map: no CAM target layer", type(model).__name__, name,
             tuple(seen[-1]) if seen else "nothing")
    return None


def _load_weights(model: nn.Module, weights: str, head_name: str) -> None:
    path = Path(weights)
    if not path.exists():
        hint = " (a hub name? samprompt never downloads: save the weights to a file)" if "/" in weights else ""
        raise CheckpointError(f"weights file {weights!r} does not exist{hint}")
    if path.suffix != ".safetensors":
        _apply_weights(model, str(path), head_name, None)  # torch.load(weights_only=True)
        return
    st = require("safetensors.torch", component="reading .safetensors weights", package="safetensors", extra="timm")
    try:
        state = st.load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError for bad files
        raise CheckpointError(f"weights file {str(path)!r} is not a readable safetensors file: {exc}") from exc
    load_initial_weights(model, _unwrap_state_dict(state, str(path)), head_name, str(path))


def build_timm(
    name: str, num_classes: int, *, head: HeadKind = "fc", dropout: float = 0.0, weights: str | None = None
) -> nn.Module:
    """Build ``timm`` model ``name`` with samprompt's head and optional local weights.

    Args:
        name: A ``timm.list_models()`` name (without the ``timm:`` prefix), e.g. ``"resnet18"``.
        num_classes: Outputs (>= 2).
        head: ``"fc"`` or ``"paper"`` (see :func:`~samprompt.classifiers.builders.make_head`).
        dropout: Dropout probability of the head.
        weights: Local weights file or ``None`` (see the module docstring).

    Returns:
        The model on the CPU, in training mode, mapping (B, 3, h, w) to (B, num_classes) logits, with
        ``cam_target_layer`` set when a layer fits (see :func:`timm_target_layer`).

    Raises:
        samprompt._extras.MissingExtraError: timm is not installed (``pip install 'samprompt[timm]'``).
        ConfigError: Unknown model name, bad head arguments, or a head that cannot be replaced.
        CheckpointError: Weights file missing, unreadable or not fitting (named).
    """
    _check_head_args(num_classes, head, dropout)
    timm = require("timm", component=f"classifier 'timm:{name}'", package="timm", extra="timm")
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:5] if name else []
        raise ConfigError(f"arch: timm has no model {name!r}" + (f" (similar: {close})" if close else ""))
    model: nn.Module = timm.create_model(name, pretrained=False, num_classes=num_classes)
    classifier: Any = getattr(model, "pretrained_cfg", {}).get("classifier")
    head_name = classifier if isinstance(classifier, str) else None
    try:
        head_name = replace_head(model, num_classes, head, dropout, name=head_name)
    except ConfigError:
        if head != "fc" or dropout > 0 or head_name is None:
            raise
        log.info("timm %s: classifier %r is not nn.Linear; timm's own head is kept", name, head_name)
    if weights is not None:
        _load_weights(model, str(weights), head_name or "")
    layer = timm_target_layer(model)
    if layer is not None:
        setattr(model, TARGET_LAYER_ATTR, layer)
    return model
