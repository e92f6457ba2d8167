"""An auxiliary lesion-vs-negative head: one logit "does this image show a lesion?" beside the class head.

Where a data set has a negative class (e.g. ``normal``), the classes' own logits mix two questions: *is
there a lesion* and *which kind*. The CAM of the lesion classes then also explains what separates benign
from malignant (texture, shadowing, annotations), which need not lie on the lesion. The lesion head asks
only the first question. It is a ``Linear(K, 1)`` (attribute ``lesion_fc``) on the same pooled features
as the class head (the output of the model's ``avgpool``, so ``lse`` / ``topk`` pooling applies to it
too), trained with a binary cross-entropy beside the class loss (``TrainConfig.lesion_head`` = its weight,
``TrainConfig.negative_classes`` = the images without a lesion). Its CAM (``head: lesion`` of the
gradient-based CAM extractors) is the map of that one logit.

The class head and the model's ``forward`` are unchanged: ``model(x)`` still returns the (B, C) class
logits; the lesion logit is read with :func:`lesion_logits` (a forward hook on ``avgpool``). That reader
and :func:`has_lesion_head` live in :mod:`samprompt._torch` (the CAM extractors use them too) and are
re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from samprompt._torch import LESION_HEAD_ATTR, has_lesion_head, lesion_logits
from samprompt.errors import ConfigError

__all__ = [
    "LESION_HEAD_ATTR",
    "add_lesion_head",
    "class_head_linear",
    "has_lesion_head",
    "lesion_head_of",
    "lesion_logits",
]


def class_head_linear(model: nn.Module) -> tuple[str, nn.Linear] | None:
    """``(dotted name, module)`` of the last ``nn.Linear`` of ``model`` that is not its lesion head (the
    class head's output layer of every built classifier), or ``None``."""
    skip = getattr(model, LESION_HEAD_ATTR, None)
    last = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and m is not skip:
            last = (name, m)
    return last


def _pooled_features(model: nn.Module, where: str) -> int:
    if not isinstance(getattr(model, "avgpool", None), nn.Module):
        raise ConfigError(f"{where}: {type(model).__name__} has no 'avgpool' module whose output a lesion head "
                          "could read")
    found = class_head_linear(model)
    if found is None:
        raise ConfigError(f"{where}: {type(model).__name__} has no linear class head to size a lesion head by")
    return int(found[1].in_features)


def add_lesion_head(model: nn.Module, where: str = "train.lesion_head") -> nn.Linear:
    """Give ``model`` a lesion head, in place: ``model.lesion_fc = Linear(K, 1)``.

    Args:
        model: A classifier with an ``avgpool`` module and a linear class head whose input is the
            (flattened) pooled features, K of them (the ResNets, ``tiny_cnn``).
        where: Config path named in errors.

    Returns:
        The new head (freshly initialised; on the device of the model's first parameter).

    Raises:
        ConfigError: The model has no ``avgpool`` or no linear head, or already has a lesion head.
    """
    if has_lesion_head(model):
        raise ConfigError(f"{where}: {type(model).__name__} already has a lesion head")
    head = nn.Linear(_pooled_features(model, where), 1)
    try:
        head.to(next(model.parameters()).device)
    except StopIteration:
        pass
    setattr(model, LESION_HEAD_ATTR, head)
    return head


def lesion_head_of(train_config: Mapping[str, Any] | None) -> bool:
    """Whether a checkpoint's recorded ``train_config`` trained a lesion head (``lesion_head`` > 0)."""
    value = dict(train_config or {}).get("lesion_head")
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
