"""Classifier builders: the :data:`CLASSIFIERS` registry, the paper's head and initial weights.

A builder is a function ``builder(num_classes, *, head="fc", dropout=0.0, weights=None) -> nn.Module``
returning a network that maps a (B, 3, h, w) float tensor to (B, num_classes) logits. Built-ins:

* ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` — torchvision ResNets (CAM target layer ``layer4``);
* ``"tiny_cnn"`` — a four-stage CNN of a few thousand parameters for tests and examples, laid out like a
  ResNet (``conv1``, ``layer1`` … ``layer4``, ``avgpool``, ``fc``) so CAM code finds ``layer4``;
* ``"torchvision:<name>"`` — any torchvision classification model (``torchvision.models.get_model``),
  e.g. ``"torchvision:densenet121"``; its LAST ``nn.Linear`` is replaced by the new head. These names are
  resolved by :func:`build_classifier` and are not listed by ``CLASSIFIERS.names()``;
* ``"timm:<name>"`` — any ``timm`` model (optional extra ``samprompt[timm]``; see
  :mod:`samprompt.classifiers.timm_builder`), resolved the same way.

Plugins register more builders through the ``samprompt.classifiers`` entry-point group (value
``module:function``); :func:`replace_head` and :func:`load_initial_weights` do the common work.

Heads (``head=``): ``"fc"`` replaces the final linear layer by ``Linear(in, num_classes)`` (preceded by
``Dropout(dropout)`` when ``dropout > 0``); ``"paper"`` uses the paper's ``ReLU → Dropout(dropout) →
Linear(in, num_classes)``.

Initial weights (``weights=``): ``None`` (random init); a local file holding a state dict (read with
``weights_only=True``; a samprompt classifier checkpoint works too); or a torchvision weights name such
as ``"ResNet18_Weights.IMAGENET1K_V1"`` (or a bare ``"IMAGENET1K_V1"`` / ``"DEFAULT"`` for the
architecture's own enum), used ONLY when its file is already in the torch hub cache
(``$TORCH_HOME/hub/checkpoints``): samprompt never downloads. The backbone must match exactly; the old
head (e.g. ImageNet's 1000 classes) is kept only if it fits the new head, else re-initialised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torchvision
from torch import nn

from samprompt.classifiers.parts import (
    TARGET_LAYER_ATTR,
    HeadKind,
    _apply_weights,
    _check_head_args,
    cached_torchvision_weights,
    load_initial_weights,
    make_head,
    replace_head,
)
from samprompt.errors import ConfigError
from samprompt.registry import Registry

__all__ = [
    "CLASSIFIERS",
    "TORCHVISION_PREFIX",
    "ClassifierBuilder",
    "HeadKind",
    "TinyCNN",
    "build_classifier",
    "cached_torchvision_weights",
    "load_initial_weights",
    "make_head",
    "replace_head",
]

log = logging.getLogger(__name__)

#: Prefix of :func:`build_classifier` names that go straight to ``torchvision.models.get_model``.
TORCHVISION_PREFIX = "torchvision:"


class ClassifierBuilder(Protocol):
    """Signature every registered builder follows."""

    def __call__(
        self, num_classes: int, *, head: HeadKind = "fc", dropout: float = 0.0, weights: str | None = None
    ) -> nn.Module: ...


#: Registry of classifier builder FUNCTIONS (entry-point group ``samprompt.classifiers``).
CLASSIFIERS: Registry[Any] = Registry(
    "classifier", "samprompt.classifiers", base=None, builtin_modules=("samprompt.classifiers.builders",)
)


# ---------------------------------------------------------------------------------------------- builders
_TV_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False},
    "inception_v3": {"aux_logits": False},
}


def _torchvision(
    arch: str, num_classes: int, head: HeadKind, dropout: float, weights: str | None, target_layer: str | None
) -> nn.Module:
    _check_head_args(num_classes, head, dropout)
    try:
        model: nn.Module = torchvision.models.get_model(arch, weights=None, **_TV_KWARGS.get(arch, {}))
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"arch: torchvision has no model {arch!r}") from exc
    fc = "fc" if arch.startswith("resnet") else None
    head_name = replace_head(model, num_classes, head, dropout, name=fc)
    _apply_weights(model, weights, head_name, arch)
    if target_layer is not None:
        setattr(model, TARGET_LAYER_ATTR, target_layer)
    return model


@CLASSIFIERS.register("resnet18")
def resnet18(
    num_classes: int, *, head: HeadKind = "fc", dropout: float = 0.0, weights: str | None = None
) -> nn.Module:
    """torchvision ResNet-18 with a new head (see the module docstring for the arguments)."""
    return _torchvision("resnet18", num_classes, head, dropout, weights, "layer4")


@CLASSIFIERS.register("resnet34")
def resnet34(
    num_classes: int, *, head: HeadKind = "fc", dropout: float = 0.0, weights: str | None = None
) -> nn.Module:
    """torchvision ResNet-34 with a new head (see the module docstring for the arguments)."""
    return _torchvision("resnet34", num_classes, head, dropout, weights, "layer4")


@CLASSIFIERS.register("resnet50")
def resnet50(
    num_classes: int, *, head: HeadKind = "fc", dropout: float = 0.0, weights: str | None = None
) -> nn.Module:
    """torchvision ResNet-50 with a new head (see the module docstring for the arguments)."""
    return _torchvision("resnet50", num_classes, head, dropout, weights, "layer4")


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class TinyCNN(nn.Module):
    """A small ResNet-shaped CNN: (B, 3, h, w) → (B, num_classes) logits.

    Stages ``conv1`` (stride 2), ``layer1``, ``layer2`` (stride 2), ``layer3`` (stride 2), ``layer4``
    (stride 1, ``8 * width`` channels, the CAM target at 1/8 of the input), ``avgpool``, ``fc``.
    """

    def __init__(self, num_classes: int, width: int = 8) -> None:
        super().__init__()
        self.conv1 = _block(3, width, 2)
        self.layer1 = _block(width, width, 1)
        self.layer2 = _block(width, 2 * width, 2)
        self.layer3 = _block(2 * width, 4 * width, 2)
        self.layer4 = _block(4 * width, 8 * width, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc: nn.Module = nn.Linear(8 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return (B, num_classes) logits for a (B, 3, h, w) batch."""
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        logits: torch.Tensor = self.fc(torch.flatten(self.avgpool(x), 1))
        return logits


@CLASSIFIERS.register("tiny_cnn")
def tiny_cnn(
    num_classes: int, *, head: HeadKind = "fc", dropout: float = 0.0, weights: str | None = None
) -> nn.Module:
    """:class:`TinyCNN` (width 8) with the requested head; ``weights`` may only be a local file."""
    _check_head_args(num_classes, head, dropout)
    model = TinyCNN(num_classes)
    replace_head(model, num_classes, head, dropout, name="fc")
    _apply_weights(model, weights, "fc", None)
    setattr(model, TARGET_LAYER_ATTR, "layer4")
    return model


def build_classifier(
    arch: str,
    num_classes: int,
    *,
    head: HeadKind = "fc",
    dropout: float = 0.0,
    weights: str | None = None,
) -> nn.Module:
    """Build a classifier by registered name or ``"torchvision:<name>"``.

    Args:
        arch: Registered builder name (``CLASSIFIERS.names()``) or ``"torchvision:<model name>"``.
        num_classes: Number of outputs (>= 2).
        head: ``"fc"`` or ``"paper"``.
        dropout: Dropout probability of the head.
        weights: Initial weights (see the module docstring), or ``None``.

    Returns:
        The model, in training mode, on the CPU; models that know their CAM layer carry its dotted name
        in the attribute ``cam_target_layer``.

    Raises:
        UnknownComponentError: Unknown ``arch``.
        ConfigError: Invalid head arguments or weights name.
        CheckpointError: Weights file missing, unreadable, not cached or not fitting.
    """
    if arch.startswith("timm:"):  # any timm model (samprompt[timm]); see classifiers/timm_builder.py
        from samprompt.classifiers.timm_builder import build_timm

        return build_timm(arch[len("timm:"):], num_classes, head=head, dropout=dropout, weights=weights)
    if arch.startswith(TORCHVISION_PREFIX):
        tv = arch[len(TORCHVISION_PREFIX):]
        layer = "layer4" if tv.startswith("resnet") else None
        return _torchvision(tv, num_classes, head, dropout, weights, layer)
    builder: Callable[..., nn.Module] = CLASSIFIERS.get(arch)
    model = builder(num_classes, head=head, dropout=dropout, weights=weights)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"classifier builder {arch!r} returned {type(model).__name__}, not an nn.Module")
    return model
