"""Training a classifier from labelled examples: weighted cross entropy, AdamW, cosine schedule.

The best epoch by validation macro-F1 (ties: lower validation loss) is kept and written to the
checkpoint whenever it improves, so an interrupted run still leaves its best model behind; training stops
early after ``patience`` epochs without improvement. Runs are seeded (python, numpy, torch and the
DataLoader's shuffling/augmentation), and ``deterministic=True`` additionally switches on
``torch.use_deterministic_algorithms`` (in ``warn_only`` mode: CUDA kernels without a deterministic
version warn instead of failing) for the duration of the call.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from torch import nn
from tqdm.auto import tqdm

from samprompt._bounds import Batch, Count, Seed, Workers
from samprompt._torch import resolve_device as _resolve_device
from samprompt.classifiers.batches import batches, make_loader
from samprompt.classifiers.builders import HeadKind, build_classifier
from samprompt.classifiers.checkpoint import ClassifierInfo, save_classifier
from samprompt.classifiers.evaluate import ClassificationReport, run_loader
from samprompt.classifiers.inputs import AugmentConfig, Example, ExampleDataset, GuideLike, class_targets
from samprompt.classifiers.recipes import (
    RECIPES,
    OutputStride,
    Pooling,
    RecipeKnobs,
    RecipeName,
    TrainObjective,
    adapt_architecture,
)
from samprompt.classifiers.task import TaskSpec
from samprompt.component import format_validation_error
from samprompt.errors import ConfigError, DataError
from samprompt.preprocess import Preprocessing

__all__ = [
    "EpochStats",
    "TrainConfig",
    "TrainResult",
    "resolve_device",
    "seed_everything",
    "train_classifier",
]

log = logging.getLogger(__name__)


class TrainConfig(BaseModel):
    """Hyper-parameters of :func:`train_classifier` (stored as a summary in the checkpoint).

    Attributes:
        arch: Classifier name (``CLASSIFIERS`` or ``"torchvision:<name>"``).
        head: ``"fc"`` or ``"paper"`` (ReLU → Dropout → Linear).
        dropout: Head dropout probability.
        weights: Initial weights: ``None`` (from scratch), a local state-dict file, or a cached
            torchvision weights name (never downloaded).
        epochs: Maximum number of epochs.
        batch_size: Training batch size (a last batch of one sample is dropped: BatchNorm needs two).
        lr: Peak AdamW learning rate (cosine-annealed to 0 over all steps).
        weight_decay: AdamW weight decay.
        class_weights: Cross-entropy class weights: ``"auto"`` = inverse class frequency in the training
            set (``n / (K * count_k)``), a list (one per class), or ``None`` (unweighted).
        preprocessing: Network input geometry and normalisation (stored in the checkpoint).
        augmentation: Training augmentation, applied on top of ``preprocessing``.
        patience: Stop after this many epochs without a better validation macro-F1 (``None``: never).
        keep: Which weights training returns and saves: ``"best"`` (the epoch of the best validation
            macro-F1; the last epoch without a validation set) or ``"last"`` (the weights after the last
            epoch run, whatever the validation says; ``patience`` still ends training early). ``"last"``
            suits losses whose CAM terms keep improving while a small validation set's macro-F1 moves by
            chance from epoch to epoch.
        seed: Seed of every random generator involved.
        deterministic: Use deterministic algorithms (slower on CUDA).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        num_workers: DataLoader worker processes.
        eval_batch_size: Batch size of validation passes (default: ``batch_size``).
        cache_images: Keep preprocessed inputs in memory (uint8) between epochs.
        recipe: ``"plain"`` (the paper's training) or ``"localise"`` (a CAM that finds the object; see
            :mod:`samprompt.classifiers.recipes`). The knobs below override the recipe's value when set.
        output_stride: 32, 16 or 8: dilate the last stage(s) instead of striding (``None``: recipe).
        pooling: Global pooling ``"avg"``, ``"lse"`` or ``"topk"`` (``None``: recipe).
        border_erase: Largest fraction of each side randomly covered during training (``None``: recipe).
        cam_border_weight: Weight of the CAM-mass-at-the-border loss term (``None``: recipe).
        flip_consistency: Weight of the flip-consistency loss between CAMs (``None``: recipe).
        adversarial_erase: Weight of the loss on inputs whose top-CAM pixels are erased (``None``: recipe).
        erase_threshold: Normalised CAM level from which :func:`adversarial erasing
            <samprompt.classifiers.recipes.erase_top>` erases (``None``: recipe, 0.6).
        lesion_head: Weight of an auxiliary lesion-vs-negative head's loss (``None``: recipe, 0 = no head;
            see :mod:`samprompt.classifiers.lesion_head`). Needs ``negative_classes``.
        negative_classes: The classes whose images show no lesion, for ``lesion_head`` (at least one must
            be a class of the task, and at least one class must be left as a lesion class). Names that are
            not classes of the task are ignored. ``samprompt run`` fills it from ``fit.negative_classes``.
        guide_weight: Weight of the CAM guidance term (``None``: recipe, 0): ``1 - share of the label's
            CAM inside the example's guide mask``, for the examples that have one. Needs ``guides`` in
            :func:`train_classifier`; ``samprompt run`` makes them from its own label-only fit
            (:func:`samprompt.proposals.guide_masks`).
        guide_cover: Weight of the guide-coverage term (``None``: recipe, 0; needs ``guide_weight > 0``):
            ``1 - mean of the max-normalised CAM over the guide``, so the CAM fills the guide instead of
            one spot of it (a tighter CAM box).
        guide_keep: The fraction of the guided examples that keep their guide when ``samprompt run`` or
            ``samprompt train --guide-scorer`` makes the guides (the label-only scorer's most confident choices; see
            :func:`samprompt.proposals.guide_masks` ``keep``); 1 keeps all. Needs ``guide_weight > 0``.
        channels_last: Run the network in channels-last memory layout (faster convolutions on CPUs).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    arch: str = "resnet18"
    head: HeadKind = "fc"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    weights: str | None = None
    epochs: Count = 30
    batch_size: Batch = 16
    lr: float = Field(default=1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(default=1e-4, ge=0.0)
    class_weights: Literal["auto"] | list[float] | None = "auto"
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    augmentation: AugmentConfig = Field(default_factory=AugmentConfig)
    patience: Count | None = 10
    keep: Literal["best", "last"] = "best"
    seed: Seed = 0
    deterministic: bool = False
    device: str = "auto"
    num_workers: Workers = 0
    eval_batch_size: Batch | None = None
    cache_images: bool = True
    recipe: RecipeName = "plain"
    output_stride: OutputStride | None = None
    pooling: Pooling | None = None
    border_erase: float | None = Field(default=None, ge=0.0, le=0.45)
    cam_border_weight: float | None = Field(default=None, ge=0.0, le=100.0)
    flip_consistency: float | None = Field(default=None, ge=0.0, le=100.0)
    adversarial_erase: float | None = Field(default=None, ge=0.0, le=100.0)
    erase_threshold: float | None = Field(default=None, gt=0.0, lt=1.0)
    lesion_head: float | None = Field(default=None, ge=0.0, le=100.0)
    negative_classes: list[str] | None = None
    guide_weight: float | None = Field(default=None, ge=0.0, le=100.0)
    guide_cover: float | None = Field(default=None, ge=0.0, le=100.0)
    guide_keep: float = Field(default=1.0, gt=0.0, le=1.0)
    channels_last: bool = False

    def knobs(self) -> RecipeKnobs:
        """The recipe's knob values with this config's explicit ones on top."""
        own = {k: getattr(self, k) for k in RecipeKnobs.model_fields if getattr(self, k) is not None}
        return RECIPES[self.recipe].model_copy(update=own)

    def lesion_classes(self, class_names: Sequence[str], where: str = "train") -> tuple[int, ...]:
        """Indices of the lesion classes (not in ``negative_classes``) of a task with ``class_names``;
        ``()`` when the recipe trains no lesion head.

        Raises:
            ConfigError: A lesion head without a negative class of the task, or with every class negative
                (naming ``<where>.negative_classes``).
        """
        if self.knobs().lesion_head <= 0:
            return ()
        neg = set(self.negative_classes or [])
        if not neg & set(class_names):
            raise ConfigError(
                f"{where}.negative_classes: the lesion head needs at least one negative class of the task "
                f"{list(class_names)}, got {sorted(neg) if self.negative_classes is not None else None}")
        lesion = tuple(i for i, c in enumerate(class_names) if c not in neg)
        if not lesion:
            raise ConfigError(f"{where}.negative_classes: every class of the task {list(class_names)} is negative; "
                              "the lesion head needs a lesion class")
        return lesion

    def resolved(self) -> TrainConfig:
        """This config with every recipe knob filled in (what a checkpoint records)."""
        return self.model_copy(update=self.knobs().model_dump())

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", v):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {v!r}")
        return v

    @field_validator("class_weights")
    @classmethod
    def _weights(cls, v: Any) -> Any:
        if isinstance(v, list) and (not v or any(not math.isfinite(w) or w < 0 for w in v)):
            raise ValueError("class_weights must be non-negative finite numbers")
        return v

    @classmethod
    def parse(cls, data: Mapping[str, Any], where: str = "train") -> TrainConfig:
        """Validate a mapping (e.g. a JSON/YAML section); errors become ConfigError at ``where.<field>``."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, where)) from exc


@dataclass(frozen=True)
class EpochStats:
    """One epoch of training: ``val_*`` are ``None`` without a validation set."""

    epoch: int
    train_loss: float
    val_loss: float | None
    val_macro_f1: float | None
    val_accuracy: float | None
    lr: float
    seconds: float


@dataclass
class TrainResult:
    """Outcome of :func:`train_classifier`.

    Attributes:
        model: The classifier with the BEST epoch's weights, in eval mode, on the training device.
        info: Its checkpoint metadata.
        checkpoint_path: Where the best model was saved (``None`` if no path was given).
        best_epoch: 1-based epoch of the kept weights.
        best_val_macro_f1: Its validation macro-F1 (``None`` without validation data).
        history: One :class:`EpochStats` per epoch run.
        stopped_early: Whether patience ended the run.
        seconds: Wall time of the training loop.
        device: Device used.
        reports: Optional evaluation reports by split name (filled by ``train_from_paths``).
    """

    model: nn.Module
    info: ClassifierInfo
    checkpoint_path: Path | None
    best_epoch: int
    best_val_macro_f1: float | None
    history: list[EpochStats]
    stopped_early: bool
    seconds: float
    device: str
    reports: dict[str, ClassificationReport] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the model)."""
        return {
            "checkpoint_path": str(self.checkpoint_path) if self.checkpoint_path else None,
            "best_epoch": self.best_epoch,
            "best_val_macro_f1": self.best_val_macro_f1,
            "stopped_early": self.stopped_early,
            "seconds": self.seconds,
            "device": self.device,
            "info": self.info.model_dump(mode="json"),
            "history": [vars(h) for h in self.history],
            "reports": {k: r.to_dict() for k, r in self.reports.items()},
        }


def resolve_device(device: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; a CUDA request without CUDA is a ConfigError
    naming ``train.device`` (see :func:`samprompt._torch.resolve_device`)."""
    return _resolve_device(device, "train.device")


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _class_weights(
    spec: str | list[float] | None, targets: Sequence[int], task: TaskSpec
) -> torch.Tensor | None:
    k = task.num_classes
    counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=k)
    empty = [task.class_names[i] for i in range(k) if counts[i] == 0]
    if empty:
        raise DataError(f"training set has no sample of class(es) {empty} (counts {counts.tolist()})")
    if spec is None:
        return None
    if spec == "auto":
        return torch.tensor(counts.sum() / (k * counts), dtype=torch.float32)
    if len(spec) != k:
        raise ConfigError(
            f"train.class_weights has {len(spec)} values for {k} classes {list(task.class_names)}"
        )
    return torch.tensor(spec, dtype=torch.float32)


def _check_guides(cfg: TrainConfig, guides: Sequence[GuideLike | None] | None, n: int) -> None:
    """``guides`` against ``guide_weight`` (before any image is read)."""
    knobs = cfg.knobs()
    weight = knobs.guide_weight
    if knobs.guide_cover > 0 and weight <= 0:
        raise ConfigError("train.guide_cover: the coverage term adds to the guidance term; set guide_weight > 0 too")
    if weight > 0 and guides is None:
        raise ConfigError(f"train.guide_weight: {weight} needs guide masks (train_classifier(guides=...); "
                          "samprompt run makes them from its label-only fit)")
    if guides is None:
        return
    if weight <= 0:
        raise ConfigError("train.guide_weight: guide masks were given but the guidance term is off (0); "
                          "set guide_weight > 0 or leave the guides out")
    if len(guides) != n:
        raise ConfigError(f"train.guide_weight: {len(guides)} guide masks for {n} training examples")
    if all(g is None for g in guides):
        raise ConfigError("train.guide_weight: no training example has a guide mask")


def train_classifier(
    train: Sequence[Example],
    val: Sequence[Example] | None,
    *,
    task: TaskSpec,
    config: TrainConfig | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    progress: bool = False,
    callback: Callable[[EpochStats], None] | None = None,
    guides: Sequence[GuideLike | None] | None = None,
) -> TrainResult:
    """Train a classifier and keep its best epoch by validation macro-F1.

    Args:
        train: Training examples ``(image, label)``; see :mod:`samprompt.classifiers.inputs` (use
            :func:`~samprompt.classifiers.inputs.examples_from_dataset` for a data set + split ids).
        val: Validation examples, or ``None``/empty (then the last epoch is kept and no early stopping).
        task: Output classes and label mapping.
        config: Hyper-parameters (default :class:`TrainConfig`).
        checkpoint: File the best model is written to (on every improvement), or ``None``.
        progress: Show tqdm bars (epochs and batches).
        callback: Called with each epoch's :class:`EpochStats`.
        guides: With ``guide_weight > 0``: one guide mask per training example ((H, W) on the example
            image's pixel grid, bool or float in [0, 1], or a callable returning one; ``None`` = no guide
            for that example), e.g. from :func:`samprompt.proposals.guide_masks`. Needs at least one.

    Returns:
        A :class:`TrainResult` holding the best model.

    Raises:
        DataError: No training examples, a label outside the task, a class without training samples,
            an unreadable image, or a guide mask that does not fit its image.
        ConfigError: Bad configuration, CUDA requested but absent, a diverging (non-finite) loss, or
            ``guides`` that do not match ``guide_weight`` (missing, all empty, of another length, or given
            without the term).
        CheckpointError: Initial weights missing or not fitting.
    """
    cfg = config or TrainConfig()
    if len(train) == 0:
        raise DataError("train_classifier needs at least one training example")
    val = list(val or [])
    lesion = cfg.lesion_classes(task.class_names)
    _check_guides(cfg, guides, len(train))
    y_train = class_targets(train, task)
    y_val = class_targets(val, task)
    device = resolve_device(cfg.device)
    prev = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    seed_everything(cfg.seed)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    try:
        return _fit(train, y_train, val, y_val, task, cfg, device, checkpoint, progress, callback, lesion, guides)
    finally:
        if cfg.deterministic:
            torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
            torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = prev[2], prev[3]


def _fit(
    train: Sequence[Example], y_train: list[int], val: list[Example], y_val: list[int], task: TaskSpec,
    cfg: TrainConfig, device: torch.device, checkpoint: str | os.PathLike[str] | None, progress: bool,
    callback: Callable[[EpochStats], None] | None, lesion: tuple[int, ...],
    guides: Sequence[GuideLike | None] | None = None,
) -> TrainResult:
    start = time.perf_counter()
    model = build_classifier(
        cfg.arch, task.num_classes, head=cfg.head, dropout=cfg.dropout, weights=cfg.weights
    )
    knobs = cfg.knobs()
    adapt_architecture(model, knobs.output_stride, knobs.pooling, lesion_head=knobs.lesion_head > 0)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    weights = _class_weights(cfg.class_weights, y_train, task)
    loss_fn = nn.CrossEntropyLoss(weight=None if weights is None else weights.to(device))
    aug = cfg.augmentation if cfg.augmentation.enabled else None
    train_ds = ExampleDataset([e[0] for e in train], y_train, cfg.preprocessing, aug, cfg.cache_images,
                              border_erase=knobs.border_erase, guides=guides)
    loader = make_loader(train_ds, cfg.batch_size, cfg.seed, cfg.num_workers, device, train=True)
    val_loader = None
    if val:
        val_ds = ExampleDataset([e[0] for e in val], y_val, cfg.preprocessing, None, cfg.cache_images)
        val_loader = make_loader(val_ds, cfg.eval_batch_size or cfg.batch_size, cfg.seed, cfg.num_workers, device,
                                 train=False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs * len(loader)))

    recorded = cfg.resolved().model_dump(mode="json")
    pos_weight = None
    if lesion and cfg.class_weights is not None:  # balanced like the class loss: n_negative / n_lesion
        n_lesion = sum(1 for t in y_train if t in lesion)
        pos_weight = (len(y_train) - n_lesion) / max(n_lesion, 1)
    objective = TrainObjective(model, loss_fn, knobs, lesion_classes=lesion, lesion_pos_weight=pos_weight)

    def make_info(metrics: dict[str, Any]) -> ClassifierInfo:
        return ClassifierInfo.for_model(
            model, arch=cfg.arch, task=task, head=cfg.head, dropout=cfg.dropout,
            preprocessing=cfg.preprocessing, train_config=recorded, metrics=metrics,
        )

    history: list[EpochStats] = []
    best_key: tuple[float, float] = (-math.inf, -math.inf)
    best_epoch, best_state, best_metrics, bad, stopped = 0, None, {}, 0, False
    epochs = tqdm(range(1, cfg.epochs + 1), desc="train", disable=not progress)
    log.info("training %s on %d examples (%d val) for up to %d epochs on %s",
             cfg.arch, len(train), len(val), cfg.epochs, device)
    for epoch in epochs:
        t0 = time.perf_counter()
        model.train()
        total, n = 0.0, 0
        for batch in tqdm(batches(loader, cfg.num_workers), desc=f"epoch {epoch}", leave=False,
                          disable=not progress):
            x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
            guide = None if guides is None else (batch[2].to(device, non_blocking=True), batch[3].to(device))
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            loss, _ = objective(x, y, guide)
            if not torch.isfinite(loss):
                raise ConfigError(
                    f"train.lr: the loss became {float(loss)} in epoch {epoch}; "
                    f"lower the learning rate ({cfg.lr})"
                )
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(y)
            n += len(y)
        lr = float(opt.param_groups[0]["lr"])
        vloss = vf1 = vacc = None
        if val_loader is not None:
            logits, yv, vl = run_loader(model, val_loader, device, loss_fn)
            rep = ClassificationReport.from_predictions(yv, logits.argmax(axis=1), task.class_names)
            vloss, vf1, vacc = vl, rep.macro_f1, rep.accuracy
        stats = EpochStats(epoch, total / max(n, 1), vloss, vf1, vacc, lr, time.perf_counter() - t0)
        history.append(stats)
        log.info("epoch %d: train loss %.4f, val loss %s, val macro-F1 %s (%.1fs)",
                 epoch, stats.train_loss, vloss, vf1, stats.seconds)
        if progress:
            epochs.set_postfix(loss=f"{stats.train_loss:.3f}", f1="-" if vf1 is None else f"{vf1:.3f}")
        if callback is not None:
            callback(stats)
        key = (vf1, -(vloss if vloss is not None and math.isfinite(vloss) else 0.0)) if vf1 is not None else (
            float(epoch), 0.0)
        epoch_metrics = {"best_epoch": epoch, "val_macro_f1": vf1, "val_accuracy": vacc, "val_loss": vloss}
        if key > best_key:
            best_key, bad = key, 0
            if cfg.keep == "best":
                best_epoch, best_metrics = epoch, epoch_metrics
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
                if checkpoint is not None:
                    save_classifier(checkpoint, model, make_info(best_metrics))
        else:
            bad += 1
        if cfg.keep == "last":  # the model itself holds the kept weights; saved once, after the loop
            best_epoch, best_metrics = epoch, epoch_metrics
        if bad and val_loader is not None and cfg.patience is not None and bad >= cfg.patience:
            stopped = True
            log.info("early stop after epoch %d (best %d)", epoch, epoch - bad)
            break
    objective.close()  # on an exception the model is dropped with its hook
    if best_state is not None:
        model.load_state_dict(best_state)
    elif cfg.keep == "last" and checkpoint is not None and best_epoch:
        save_classifier(checkpoint, model, make_info(best_metrics))
    model.eval()
    return TrainResult(
        model=model,
        info=make_info(best_metrics),
        checkpoint_path=Path(checkpoint) if checkpoint is not None else None,
        best_epoch=best_epoch,
        best_val_macro_f1=best_metrics.get("val_macro_f1"),
        history=history,
        stopped_early=stopped,
        seconds=time.perf_counter() - start,
        device=str(device),
    )
