"""Classifier checkpoints: ONE file with the weights and everything needed to rebuild and use them.

File layout (a dict, readable with ``torch.load(path, map_location="cpu", weights_only=True)``)::

    {"format": "samprompt.classifier", "format_version": 1,
     "state_dict": {name: tensor, ...},
     "meta": {"arch", "head", "dropout", "class_names", "label_mapping", "preprocessing",
              "target_layer", "samprompt_version", "train_config", "metrics"}}

Only tensors and plain dict/list/str/float/int/bool/None are stored, so loading never unpickles code.
"""

from __future__ import annotations

import logging
import os
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from samprompt.classifiers._io import atomic_save, describe_key_mismatch, safe_load
from samprompt.classifiers.builders import HeadKind, build_classifier
from samprompt.classifiers.lesion_head import class_head_linear, lesion_head_of
from samprompt.classifiers.parts import TARGET_LAYER_ATTR
from samprompt.classifiers.task import TaskSpec
from samprompt.component import format_validation_error
from samprompt.errors import CheckpointError, ConfigError, SampromptError
from samprompt.preprocess import Preprocessing

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ClassifierInfo",
    "load_classifier",
    "read_info",
    "samprompt_version",
    "save_classifier",
]

log = logging.getLogger(__name__)

FORMAT = "samprompt.classifier"
FORMAT_VERSION = 1


def samprompt_version() -> str:
    """Installed samprompt version, or ``"0+unknown"`` when it is not installed as a distribution."""
    try:
        return metadata.version("samprompt")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class ClassifierInfo(BaseModel):
    """Metadata stored with a classifier's weights.

    Attributes:
        arch: Builder name (``CLASSIFIERS``) or ``"torchvision:<name>"``.
        head: ``"fc"`` or ``"paper"``.
        dropout: Head dropout.
        class_names: Output classes in logit order.
        label_mapping: Data-set label → class name (empty: identity).
        preprocessing: How inputs are made; CAM extraction must use the same.
        target_layer: Dotted name of the layer CAMs should hook, or ``None`` (let the CAM method pick).
        samprompt_version: Version that wrote the file.
        train_config: Summary of the training configuration (plain JSON types), or ``None``.
        metrics: Free-form numbers, e.g. ``{"best_epoch": 7, "val_macro_f1": 0.81}``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    arch: str
    head: HeadKind = "fc"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    class_names: tuple[str, ...] = Field(min_length=2)
    label_mapping: dict[str, str] = Field(default_factory=dict)
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    target_layer: str | None = None
    samprompt_version: str = Field(default_factory=samprompt_version)
    train_config: dict[str, Any] | None = None
    metrics: dict[str, float | int | str | None] = Field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        return len(self.class_names)

    @property
    def task(self) -> TaskSpec:
        """The :class:`TaskSpec` (class names + label mapping)."""
        return TaskSpec(class_names=self.class_names, mapping=dict(self.label_mapping))

    @classmethod
    def for_model(cls, model: nn.Module, *, arch: str, task: TaskSpec, **fields: Any) -> ClassifierInfo:
        """Build the info of ``model``: ``class_names``/``label_mapping`` from ``task``, ``target_layer``
        from the model's ``cam_target_layer`` attribute unless given; other fields as keywords."""
        fields.setdefault("target_layer", getattr(model, TARGET_LAYER_ATTR, None))
        return cls(arch=arch, class_names=task.class_names, label_mapping=dict(task.mapping), **fields)


def _out_features(model: nn.Module) -> int | None:
    found = class_head_linear(model)
    return None if found is None else int(found[1].out_features)


def save_classifier(path: str | os.PathLike[str], model: nn.Module, info: ClassifierInfo) -> Path:
    """Write ``model``'s weights and ``info`` to one checkpoint file (atomically).

    Args:
        path: Destination file (parents are created).
        model: The trained classifier.
        info: Its metadata.

    Returns:
        The path written.

    Raises:
        ConfigError: If the model's last linear layer does not have ``len(info.class_names)`` outputs.
    """
    n = _out_features(model)
    if n is not None and n != info.num_classes:
        raise ConfigError(
            f"model has {n} outputs but info lists {info.num_classes} classes {list(info.class_names)}"
        )
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "state_dict": state,
        "meta": info.model_dump(mode="json"),
    }
    return atomic_save(payload, path)


def read_info(path: str | os.PathLike[str]) -> tuple[ClassifierInfo, dict[str, torch.Tensor]]:
    """Read and validate a checkpoint without building the model: ``(info, state_dict)``.

    Raises:
        CheckpointError: Missing/corrupted file, pickled objects, or missing/invalid metadata.
    """
    p = str(path)
    obj = safe_load(path, "classifier checkpoint")
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"classifier checkpoint {p!r} holds a {type(obj).__name__}, not a samprompt checkpoint"
        )
    if obj.get("format") != FORMAT:
        bare = bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())
        hint = (
            " It looks like a bare state dict: use it as initial weights (build_classifier(weights=...)) "
            "or save it with save_classifier() together with its metadata."
            if bare
            else ""
        )
        raise CheckpointError(
            f"classifier checkpoint {p!r} has no samprompt metadata (missing 'format').{hint}"
        )
    version = obj.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"classifier checkpoint {p!r} has format_version {version!r}; this samprompt reads up to "
            f"{FORMAT_VERSION} (upgrade samprompt)"
        )
    meta, state = obj.get("meta"), obj.get("state_dict")
    if not isinstance(meta, dict):
        raise CheckpointError(f"classifier checkpoint {p!r} is missing its metadata ('meta')")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"classifier checkpoint {p!r} is missing its weights ('state_dict')")
    try:
        info = ClassifierInfo.model_validate(meta)
    except ValidationError as exc:
        raise CheckpointError(
            f"classifier checkpoint {p!r} has invalid metadata: {format_validation_error(exc, 'meta')}"
        ) from exc
    return info, state


def _mismatch(model: nn.Module, state: dict[str, torch.Tensor], info: ClassifierInfo, p: str) -> str:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = {
        k: (tuple(state[k].shape), tuple(v.shape))
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    }
    head_only = not missing and not unexpected and shapes and all(
        len(s[0]) >= 1 and s[0][1:] == s[1][1:] and s[0][0] != s[1][0] for s in shapes.values()
    ) and len(shapes) <= 2
    if head_only:
        stored = next(iter(shapes.values()))[0][0]
        return (
            f"classifier checkpoint {p!r}: its weights have {stored} outputs but its metadata lists "
            f"{info.num_classes} classes {list(info.class_names)} (wrong number of classes)"
        )
    return (
        f"classifier checkpoint {p!r}: weights do not fit architecture {info.arch!r} with head "
        f"{info.head!r} and {info.num_classes} classes (wrong architecture?): "
        + describe_key_mismatch(missing, unexpected, shapes)
    )


def load_classifier(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[nn.Module, ClassifierInfo]:
    """Rebuild a classifier from a checkpoint written by :func:`save_classifier`.

    Args:
        path: Checkpoint file.
        device: Where to put the model.

    Returns:
        ``(model in eval mode on device, info)``; ``model(x)`` gives (B, num_classes) logits for inputs
        made by ``info.preprocessing``.

    Raises:
        CheckpointError: Naming the file when it is missing, corrupted, a pickled whole model, lacks
            metadata, names an unavailable architecture, or its weights do not fit that architecture /
            number of classes.
    """
    p = str(path)
    info, state = read_info(path)
    try:
        model = build_classifier(info.arch, info.num_classes, head=info.head, dropout=info.dropout)
    except SampromptError as exc:
        raise CheckpointError(
            f"classifier checkpoint {p!r}: cannot rebuild arch {info.arch!r}: {exc}"
        ) from exc
    from samprompt.classifiers.recipes import adapt_architecture, architecture_of  # lazy: recipes -> here

    where = f"checkpoint {p!r}: train_config"
    try:
        adapt_architecture(model, *architecture_of(info.train_config), where=where,
                           lesion_head=lesion_head_of(info.train_config))
    except SampromptError as exc:
        raise CheckpointError(str(exc)) from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(_mismatch(model, state, info, p)) from exc
    if info.target_layer is not None:
        setattr(model, TARGET_LAYER_ATTR, info.target_layer)
    model.eval()
    return model.to(device), info
