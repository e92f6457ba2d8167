"""The :class:`CamExtractor` base class and the value it returns.

A CAM extractor takes a classifier (any :class:`torch.nn.Module` returning (B, C) logits), a batch of
ORIGINAL images and the :class:`~samprompt.preprocess.Preprocessing` the classifier was trained with, and
returns one class activation map per image, resampled onto that image's own (H, W) pixel grid through the
preprocessing geometry and min-max normalised to [0, 1].

Target policy (what each CAM explains), per image:

* ``"predicted"`` — the arg-max class of the classifier;
* an ``int`` — that class index (e.g. the image's label);
* a tuple/list of ints — the SUM of those classes' logits (e.g. "abnormal" = benign + malignant).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import torch
from numpy.typing import NDArray

from samprompt.component import Component, P_co
from samprompt.preprocess import Preprocessing

__all__ = ["CamExtractor", "CamResult", "Target", "normalize_targets"]

#: What one CAM explains: the predicted class, one class index, or the sum of several classes.
Target: TypeAlias = Literal["predicted"] | int | tuple[int, ...]


@dataclass(frozen=True, eq=False)
class CamResult:
    """One image's class activation map.

    Attributes:
        cam: (H, W) float32 in [0, 1] on the original image grid (``cam[y, x]``).
        target: Class indices the CAM explains (one for a single class, several for a summed target).
        probabilities: (C,) float32 softmax of the classifier's logits for the image.
    """

    cam: NDArray[np.float32]
    target: tuple[int, ...]
    probabilities: NDArray[np.float32]

    @property
    def predicted(self) -> int:
        """Arg-max class index of the classifier."""
        return int(np.argmax(self.probabilities))


def normalize_targets(
    targets: Target | Sequence[Target], batch: int, num_classes: int | None = None
) -> list[Target]:
    """Expand a target policy to one target per image and validate it.

    Args:
        targets: One policy for all images, or a sequence with one per image.
        batch: Number of images.
        num_classes: When given, class indices are checked against it.

    Raises:
        ValueError: If the length or a class index is wrong.
        TypeError: If a target has the wrong type.
    """
    # A tuple of ints is ONE summed target for every image; a list is one target per image.
    if isinstance(targets, (str, int, np.integer)) or (
        isinstance(targets, tuple) and all(isinstance(t, (int, np.integer)) for t in targets)
    ):
        per = [targets] * batch
    else:
        per = list(targets)
        if len(per) != batch:
            raise ValueError(f"targets has {len(per)} entries for {batch} images")
    out: list[Target] = []
    for t in per:
        if isinstance(t, bool):
            raise TypeError(f"target must be 'predicted', an int or a tuple of ints, got {t!r}")
        if isinstance(t, str):
            if t != "predicted":
                raise ValueError(f"target string must be 'predicted', got {t!r}")
            out.append("predicted")
            continue
        idx = (int(t),) if isinstance(t, (int, np.integer)) else tuple(int(i) for i in t)
        if not idx:
            raise ValueError("a summed target needs at least one class index")
        if num_classes is not None and any(i < 0 or i >= num_classes for i in idx):
            raise ValueError(f"target class {idx} out of range for {num_classes} classes")
        out.append(idx[0] if len(idx) == 1 else idx)
    return out


class CamExtractor(Component[P_co], abc.ABC):
    """Base class of CAM extractors (see the module docstring for the contract).

    A CAM extractor implements ONE method, :meth:`extract`; calling the extractor fills in the defaults
    (target policy, preprocessing) and calls it. Its parameters are a
    :class:`~samprompt.component.ComponentParams` model given as the generic argument
    (``class MyCam(CamExtractor[MyCamParams])``); a ``target`` field, when the model has one, is the
    default target policy.
    """

    def __call__(
        self,
        model: torch.nn.Module,
        images: Sequence[NDArray[np.uint8]],
        *,
        preprocessing: Preprocessing | None = None,
        targets: Target | Sequence[Target] | None = None,
    ) -> list[CamResult]:
        """Compute one CAM per image.

        Args:
            model: Classifier returning (B, C) logits; it is used on the device of its parameters and
                left in the train/eval mode it had.
            images: Original images, each (H, W) or (H, W, 3) uint8; sizes may differ.
            preprocessing: How the classifier's inputs are made (default: 224 x 224 resize, ImageNet
                normalisation).
            targets: Target policy, one for all images or one per image (see the module docstring);
                ``None`` uses the extractor's ``target`` parameter when it has one, else ``"predicted"``.

        Returns:
            One :class:`CamResult` per image, in order; each CAM has its image's (H, W).
        """
        if len(images) == 0:
            return []
        chosen: Target | Sequence[Target]
        if targets is None:
            default: Any = getattr(self.params, "target", "predicted")
            chosen = tuple(default) if isinstance(default, list) else default
        else:
            chosen = targets
        return self.extract(model, list(images), preprocessing or Preprocessing(), chosen)

    @abc.abstractmethod
    def extract(
        self,
        model: torch.nn.Module,
        images: list[NDArray[np.uint8]],
        preprocessing: Preprocessing,
        targets: Target | Sequence[Target],
    ) -> list[CamResult]:
        """Compute the CAMs; arguments as in :meth:`__call__` (validated, ``images`` non-empty)."""
