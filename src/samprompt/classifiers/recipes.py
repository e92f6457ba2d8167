"""Training recipes: ``plain`` (the paper's) and ``localise`` (a classifier whose CAM finds the object).

A from-scratch classifier learns whatever separates the classes — on ultrasound often the image borders,
calipers and text — and its CAM then points there instead of at the lesion. The ``localise`` recipe takes
those shortcuts away and sharpens the map with a few knobs, each of them also a :class:`TrainConfig
<samprompt.classifiers.TrainConfig>` field of its own (``None`` = the recipe's value):

* ``output_stride`` (32 / 16 / 8): the last strided stage(s) lose their stride and are dilated instead
  (as DeepLab does), so the CAM layer has 2x / 4x the resolution. Exact for ResNets (stride 32); for other
  ResNet-shaped nets (``layer1`` … ``layer4``, e.g. ``tiny_cnn``) 16 means "one downsampling fewer" and 8
  "two fewer". ``None`` keeps the architecture as built.
* ``pooling`` (``avg`` | ``lse`` | ``topk``): global pooling before the head. ``lse`` is log-sum-exp with
  sharpness 5, ``topk`` the mean of the 25 % highest positions of each channel. Both leave the weights as
  they are, so a checkpoint's state dict does not depend on the pooling.
* ``border_erase`` (fraction): during training every side of the input is, with probability 1/2, covered
  by a band of up to this fraction of the side, filled with the padding value — features living at the
  image border stop being reliable.
* ``cam_border_weight``: adds ``weight * (CAM mass of the label's class in the outer ring of the CAM layer
  / total CAM mass)`` to the loss (the ring is one feature-map cell wide, at least 1/8 of the map).
* ``flip_consistency``: adds ``weight * mean |CAM(x) - flip(CAM(flip(x)))|`` (label's class, each map
  max-normalised), one extra forward pass per batch.
* ``adversarial_erase`` (weight) and ``erase_threshold``: adversarial erasing. Every input's pixels where
  its label's max-normalised CAM (upsampled to the input) is at least ``erase_threshold`` are replaced by
  the input's per-channel mean, and ``weight *`` the classification loss of the erased batch is added:
  once the most discriminative region is gone the net must still find the class, so its evidence — and
  the CAM — spreads beyond one spot (and beyond one shortcut). One extra forward / backward per batch;
  the erasing mask carries no gradient. Off in both named recipes (0); the threshold's default, 0.6, is
  within the range the adversarial-erasing literature uses, not tuned on any data set (measured on BUSI
  val in docs/quality.md: alone it moves the CAM off the lesion).
* ``lesion_head`` (weight): an auxiliary lesion-vs-negative logit on the pooled features
  (:mod:`samprompt.classifiers.lesion_head`), trained with ``weight *`` a binary cross-entropy (lesion =
  a class not in ``TrainConfig.negative_classes``; balanced like the class loss when ``class_weights`` is
  set). Needs a negative class. Its CAM is read with ``head: lesion`` of the gradient-based CAM
  extractors. Off in both named recipes (0).
* ``guide_weight``: CAM guidance by pseudo masks. Each training example may carry a guide mask (e.g. the
  region that label-only proposals choose, :func:`samprompt.proposals.guide_masks`); the loss gains
  ``weight * (1 - share of the label's CAM inside the guide)``, averaged over the batch's examples that
  have one (the guide resized to the CAM grid by area; it moves with the input's flip and affine). The
  CAM then learns where the guide says the object is, not the shortcut that separates the classes, and
  learns the guide's mistakes where the guide is wrong. Off in both named recipes (0): it needs guides,
  which ``samprompt run`` makes from its own label-only fit when it is set (docs: quality, issue 19).
* ``guide_cover`` (weight; with ``guide_weight``): adds ``weight * (1 - mean of the max-normalised CAM
  over the guide)``, so the CAM fills the guide instead of peaking on one spot of it. Off in both named
  recipes (0).

The recipe's values were chosen from the literature and the measurements quoted in issue 19 (stride 16
helped, log-sum-exp pooling hurt), NOT tuned on any data set; see docs/quality.md for what they do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from samprompt.classifiers.evaluate import logits_of
from samprompt.classifiers.lesion_head import (
    add_lesion_head,
    class_head_linear,
    has_lesion_head,
    lesion_logits,
)
from samprompt.classifiers.parts import TARGET_LAYER_ATTR
from samprompt.errors import ConfigError

__all__ = [
    "GUIDE_FLOOR",
    "RECIPES",
    "LSEPool",
    "OutputStride",
    "Pooling",
    "RecipeKnobs",
    "RecipeName",
    "TopKPool",
    "TrainObjective",
    "adapt_architecture",
    "architecture_of",
    "erase_top",
]

RecipeName = Literal["plain", "localise"]
#: Added to every CAM cell in the guidance term: without it a CAM that has died (all zero after the ReLU)
#: scores a share of 0 and no gradient. On the synthetic shortcut scenes of the tests, guided trainings
#: without it found the lesion in 10-90 % of the test images over three seeds, with it in all of them
#: (docs: quality, "CAM guidance").
GUIDE_FLOOR = 1e-3
Pooling = Literal["avg", "lse", "topk"]
OutputStride = Literal[32, 16, 8]


class RecipeKnobs(BaseModel):
    """The resolved knobs of a recipe (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    output_stride: OutputStride | None = None
    pooling: Pooling = "avg"
    border_erase: float = Field(default=0.0, ge=0.0, le=0.45)
    cam_border_weight: float = Field(default=0.0, ge=0.0, le=100.0)
    flip_consistency: float = Field(default=0.0, ge=0.0, le=100.0)
    adversarial_erase: float = Field(default=0.0, ge=0.0, le=100.0)
    erase_threshold: float = Field(default=0.6, gt=0.0, lt=1.0)
    lesion_head: float = Field(default=0.0, ge=0.0, le=100.0)
    guide_weight: float = Field(default=0.0, ge=0.0, le=100.0)
    guide_cover: float = Field(default=0.0, ge=0.0, le=100.0)

    @property
    def cam_losses(self) -> bool:
        """Whether the loss needs the CAM layer's activations."""
        return (self.cam_border_weight > 0 or self.flip_consistency > 0 or self.adversarial_erase > 0
                or self.guide_weight > 0)


#: The named recipes' knob values.
RECIPES: dict[str, RecipeKnobs] = {
    "plain": RecipeKnobs(),
    "localise": RecipeKnobs(output_stride=16, pooling="avg", border_erase=0.15, cam_border_weight=1.0),
}


# ---------------------------------------------------------------------------------------------- pooling
class LSEPool(nn.Module):
    """Log-sum-exp pooling: (B, K, h, w) → (B, K, 1, 1), ``log(mean(exp(r x))) / r``."""

    def __init__(self, r: float = 5.0) -> None:
        super().__init__()
        self.r = float(r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool each channel over its positions."""
        flat = x.flatten(2) * self.r
        out = (torch.logsumexp(flat, dim=2) - math.log(flat.shape[2])) / self.r
        return out[:, :, None, None]


class TopKPool(nn.Module):
    """Mean of the ``fraction`` highest positions of each channel: (B, K, h, w) → (B, K, 1, 1)."""

    def __init__(self, fraction: float = 0.25) -> None:
        super().__init__()
        self.fraction = float(fraction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool each channel over its positions."""
        flat = x.flatten(2)
        k = max(1, round(self.fraction * flat.shape[2]))
        return flat.topk(k, dim=2).values.mean(2)[:, :, None, None]


# ---------------------------------------------------------------------------------------------- architecture
_STAGES = ("layer1", "layer2", "layer3", "layer4")


def _dilate(model: nn.Module, output_stride: int, where: str) -> None:
    stages = [(n, getattr(model, n)) for n in _STAGES if isinstance(getattr(model, n, None), nn.Module)]
    if not stages:
        raise ConfigError(f"{where}: {type(model).__name__} has no ResNet-like stages layer1..layer4 to dilate")
    strided = [n for n, s in stages if any(isinstance(c, nn.Conv2d) and max(c.stride) > 1 for c in s.modules())]
    halvings = {32: 0, 16: 1, 8: 2}[output_stride]
    if halvings > len(strided):
        raise ConfigError(f"{where}: {type(model).__name__} has only {len(strided)} strided stage(s)")
    to_dilate = set(strided[len(strided) - halvings:])
    dilation, started = 1, False
    for name, stage in stages:
        if name in to_dilate:
            dilation, started = dilation * 2, True
        if not started:
            continue
        for conv in stage.modules():
            if not isinstance(conv, nn.Conv2d):
                continue
            conv.stride = (1, 1)
            k = conv.kernel_size
            if max(k) > 1:
                conv.dilation = (dilation, dilation)
                conv.padding = (dilation * (k[0] - 1) // 2, dilation * (k[1] - 1) // 2)


def adapt_architecture(
    model: nn.Module, output_stride: int | None, pooling: str, where: str = "train", *, lesion_head: bool = False
) -> nn.Module:
    """Apply a recipe's architecture knobs to a freshly built classifier, in place (weights unchanged).

    Args:
        model: A ResNet-shaped classifier (``layer1`` … ``layer4``, ``avgpool``), e.g. from
            :func:`~samprompt.classifiers.build_classifier`.
        output_stride: 32, 16, 8 (see the module docstring) or ``None`` (unchanged).
        pooling: ``"avg"`` (unchanged), ``"lse"`` or ``"topk"``.
        where: Config path named in errors.
        lesion_head: Add a (fresh) lesion head, ``model.lesion_fc`` (see
            :mod:`samprompt.classifiers.lesion_head`); the only knob that adds weights.

    Returns:
        ``model``. Its CAM target layer (``cam_target_layer``) is unchanged: the dilated ``layer4`` is
        still the last convolutional stage, now at the finer stride.

    Raises:
        ConfigError: The model has no stages to dilate or no ``avgpool`` to replace.
    """
    if output_stride is not None and output_stride != 32:
        _dilate(model, output_stride, f"{where}.output_stride")
    if pooling != "avg":
        if not isinstance(getattr(model, "avgpool", None), nn.Module):
            raise ConfigError(f"{where}.pooling: {type(model).__name__} has no 'avgpool' module to replace")
        model.avgpool = LSEPool() if pooling == "lse" else TopKPool()
    if lesion_head:
        add_lesion_head(model, f"{where}.lesion_head")
    return model


def architecture_of(train_config: Mapping[str, Any] | None) -> tuple[int | None, str]:
    """``(output_stride, pooling)`` recorded in a checkpoint's ``train_config`` (plain when absent)."""
    tc = dict(train_config or {})
    stride = tc.get("output_stride")
    return (int(stride) if isinstance(stride, int) else None), str(tc.get("pooling") or "avg")


# ---------------------------------------------------------------------------------------------- losses
def erase_top(x: torch.Tensor, cam: torch.Tensor, threshold: float) -> torch.Tensor:
    """Adversarial erasing: ``x`` with its most activated pixels replaced by its per-channel mean.

    Args:
        x: (B, C, H, W) network inputs (normalised).
        cam: (B, h, w) CAMs (>= 0) on the CAM layer's grid, one per input; upsampled (bilinear) to (H, W)
            and divided by its maximum.
        threshold: Pixels whose normalised CAM is ``>= threshold`` are erased.

    Returns:
        A new (B, C, H, W) tensor (no gradient flows through the erasing mask). An all-zero CAM erases
        nothing.
    """
    with torch.no_grad():
        c = cam / (cam.flatten(1).amax(1)[:, None, None] + 1e-6)
        up = F.interpolate(c[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
        erase = (up >= threshold) & (up > 0)
        fill = x.mean(dim=(2, 3), keepdim=True)
    return torch.where(erase, fill.expand_as(x), x)


def _last_linear(model: nn.Module) -> nn.Linear | None:
    found = class_head_linear(model)
    return None if found is None else found[1]


class TrainObjective:
    """The training loss of a recipe: ``objective(x, y) -> (loss, logits)``.

    ``plain`` knobs give exactly ``loss_fn(model(x), y)``. The CAM terms read the CAM layer's activations
    through a forward hook (removed by :meth:`close`) and the weights of the head's last ``nn.Linear``:
    ``CAM_c = relu(sum_k W[c, k] * A_k)`` on the (h, w) grid of the CAM layer.

    With ``knobs.guide_weight > 0`` a call may pass ``guide = (masks, has)``: (B, H, W) guide masks on the
    input's grid (values in [0, 1]) and a (B,) bool tensor saying which examples have one; the term is
    ``guide_weight * mean over those examples of (1 - sum(C * g) / sum(C))`` with ``C = CAM + GUIDE_FLOOR``
    and ``g`` the mask resized to the CAM grid by area (adaptive average pooling) and divided by its
    maximum, so that a CAM on the guide's best-covered cells scores 1 however small the guide is next to a
    cell. Without a guide (or none in the
    batch) it adds nothing. With ``knobs.guide_cover > 0`` it also adds ``guide_cover * mean over those
    examples of (1 - sum(CAM / max(CAM) * g) / sum(g))``.

    With ``knobs.lesion_head > 0`` the model must carry a lesion head (:func:`add_lesion_head
    <samprompt.classifiers.lesion_head.add_lesion_head>`); ``lesion_classes`` are the class indices that
    show a lesion (the others are negatives) and ``lesion_pos_weight`` the BCE weight of a lesion image
    (``None``: 1).
    """

    def __init__(
        self, model: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        knobs: RecipeKnobs, where: str = "train", *, lesion_classes: Sequence[int] = (),
        lesion_pos_weight: float | None = None,
    ) -> None:
        self.model, self.loss_fn, self.knobs = model, loss_fn, knobs
        self._acts: list[torch.Tensor] = []
        self._hook: Any = None
        self._linear: nn.Linear | None = None
        self._lesion: torch.Tensor | None = None
        self._pos_weight = None if lesion_pos_weight is None else torch.tensor(float(lesion_pos_weight))
        if knobs.lesion_head > 0:
            if not has_lesion_head(model):
                raise ConfigError(f"{where}.lesion_head: the model has no lesion head (add_lesion_head)")
            if not lesion_classes:
                raise ConfigError(f"{where}.lesion_head: no class is a lesion class")
            self._lesion = torch.tensor(sorted({int(c) for c in lesion_classes}), dtype=torch.long)
        if knobs.cam_losses:
            layer = getattr(model, TARGET_LAYER_ATTR, None)
            self._linear = _last_linear(model)
            if layer is None or self._linear is None:
                raise ConfigError(
                    f"{where}.cam_border_weight/flip_consistency/adversarial_erase/guide_weight: "
                    f"{type(model).__name__} has "
                    "no known CAM layer (cam_target_layer) or no linear head"
                )
            self._hook = model.get_submodule(layer).register_forward_hook(self._keep)

    def _keep(self, _m: nn.Module, _i: Any, out: Any) -> None:
        if self.model.training:  # validation passes keep nothing
            self._acts[:] = [out]

    def close(self) -> None:
        """Remove the hook (idempotent)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _cam(self, acts: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self._linear is None:
            raise ConfigError("train: the CAM terms need a linear head")
        w = self._linear.weight[y]  # (B, K)
        if w.shape[1] != acts.shape[1]:
            raise ConfigError(
                f"train: the head has {w.shape[1]} inputs but the CAM layer {acts.shape[1]} channels"
            )
        return F.relu(torch.einsum("bk,bkhw->bhw", w, acts))

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, guide: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss (scalar) and (B, C) logits of one training batch ((B, 3, H, W) inputs, (B,) class indices;
        ``guide`` as in the class docstring)."""
        self._acts.clear()
        reading: AbstractContextManager[list[torch.Tensor]] = (
            lesion_logits(self.model) if self._lesion is not None else nullcontext([]))
        with reading as seen:
            logits = logits_of(self.model(x))
        loss = self.loss_fn(logits, y)
        if self._lesion is not None:
            target = torch.isin(y, self._lesion.to(y.device)).to(seen[-1].dtype)
            pw = None if self._pos_weight is None else self._pos_weight.to(seen[-1].device)
            loss = loss + self.knobs.lesion_head * F.binary_cross_entropy_with_logits(seen[-1], target, pos_weight=pw)
        if not self.knobs.cam_losses or not self._acts:
            return loss, logits
        cam = self._cam(self._acts[-1], y)
        if self.knobs.guide_weight > 0 and guide is not None and bool(guide[1].any()):
            masks, has = guide
            if masks.shape[0] != cam.shape[0] or masks.ndim != 3:
                raise ConfigError(f"train.guide_weight: {tuple(masks.shape)} guide masks for a batch of {cam.shape[0]}")
            small = F.adaptive_avg_pool2d(masks[:, None].to(cam.dtype), (int(cam.shape[-2]), int(cam.shape[-1])))[:, 0]
            small = small / small.flatten(1).amax(1).clamp_min(1e-6)[:, None, None]  # a guide smaller than a cell
            floored = cam + GUIDE_FLOOR  # an all-zero CAM still has a share (and a gradient, once it fires)
            share = (floored * small).sum((1, 2)) / floored.sum((1, 2))
            keep = has.to(torch.bool)
            loss = loss + self.knobs.guide_weight * (1 - share[keep]).mean()
            if self.knobs.guide_cover > 0:  # the max-normalised CAM should fill the guide, not one spot of it
                peak = cam.flatten(1).amax(1).clamp_min(1e-6)[:, None, None]
                cover = (cam / peak * small).sum((1, 2)) / small.sum((1, 2)).clamp_min(1e-6)
                loss = loss + self.knobs.guide_cover * (1 - cover[keep]).mean()
        if self.knobs.cam_border_weight > 0:
            h, w = cam.shape[-2:]
            rh, rw = max(1, math.ceil(h / 8)), max(1, math.ceil(w / 8))
            inner = cam[:, rh:h - rh, rw:w - rw].sum((1, 2))
            total = cam.sum((1, 2))
            ratio = (total - inner) / (total + 1e-6)
            loss = loss + self.knobs.cam_border_weight * ratio.mean()
        if self.knobs.flip_consistency > 0:
            self._acts.clear()
            self.model(torch.flip(x, dims=[-1]))
            cam_f = torch.flip(self._cam(self._acts[-1], y), dims=[-1])

            def norm(c: torch.Tensor) -> torch.Tensor:
                return c / (c.flatten(1).amax(1)[:, None, None] + 1e-6)

            loss = loss + self.knobs.flip_consistency * (norm(cam) - norm(cam_f)).abs().mean()
        if self.knobs.adversarial_erase > 0:
            self._acts.clear()
            erased = erase_top(x, cam.detach(), self.knobs.erase_threshold)
            loss = loss + self.knobs.adversarial_erase * self.loss_fn(logits_of(self.model(erased)), y)
        self._acts.clear()
        return loss, logits
