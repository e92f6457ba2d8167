"""Labelled examples, lazy image loading and the training augmentation.

An :data:`Example` is ``(image, label)``: ``image`` is a file path, a (H, W[, 3]) uint8 array or a
zero-argument callable returning one (loaded lazily, e.g. ``functools.partial(dataset.load_image, i)``);
``label`` is a data-set label (mapped by a :class:`~samprompt.classifiers.task.TaskSpec`) or a class index.

Inputs are made by the checkpoint's :class:`~samprompt.preprocess.Preprocessing` (whole image resized or
letterboxed, never cropped); the augmentation acts ON TOP of it, on the (3, h, w) network input in
[0, 1] before normalisation: horizontal flip, a small affine (rotation, scale, translation; the border is
filled with the padding value) and brightness/contrast jitter. Nothing is cropped away beyond what the
small affine pushes over the border.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch.utils.data import Dataset as TorchDataset
from torchvision.transforms import InterpolationMode

from samprompt._arrays import as_image
from samprompt.classifiers.task import TaskSpec
from samprompt.errors import DataError
from samprompt.preprocess import Preprocessing

__all__ = [
    "AugmentConfig",
    "Example",
    "ExampleDataset",
    "GuideLike",
    "ImageLike",
    "augment",
    "augment_with_mask",
    "class_targets",
    "erase_borders",
    "examples_from_dataset",
    "read_example_image",
    "read_guide",
]

ImageLike = str | os.PathLike[str] | NDArray[np.uint8] | Callable[[], NDArray[np.uint8]]
Example = tuple[ImageLike, str | int]
#: A guide mask: (H, W) bool or float array in [0, 1] on the image's pixel grid, or a callable returning one.
GuideLike = NDArray[Any] | Callable[[], NDArray[Any]]


class AugmentConfig(BaseModel):
    """Training augmentation (applied with the given probabilities/ranges to each sample).

    Attributes:
        enabled: Switch every augmentation off when false.
        hflip: Probability of a horizontal flip.
        rotation: Maximum rotation in degrees (uniform in ``[-rotation, rotation]``).
        scale: ``(min, max)`` isotropic scale factor.
        translate: Maximum shift as a fraction of the input width/height.
        brightness: Maximum relative brightness change (factor in ``[1 - b, 1 + b]``).
        contrast: Maximum relative contrast change (factor in ``[1 - c, 1 + c]``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    enabled: bool = True
    hflip: float = Field(default=0.5, ge=0.0, le=1.0)
    rotation: float = Field(default=10.0, ge=0.0, le=180.0)
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = Field(default=0.05, ge=0.0, le=0.5)
    brightness: float = Field(default=0.1, ge=0.0, lt=1.0)
    contrast: float = Field(default=0.1, ge=0.0, lt=1.0)

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError(f"scale must be (min, max) with 0 < min <= max, got {v}")
        return v


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(()))


def augment(x: torch.Tensor, cfg: AugmentConfig, fill: float = 0.0) -> torch.Tensor:
    """Randomly augment one (3, h, w) float input in [0, 1]; returns a new tensor in [0, 1].

    Random numbers come from torch's global generator (seeded per DataLoader worker by torch).
    """
    return augment_with_mask(x, None, cfg, fill)[0]


def augment_with_mask(
    x: torch.Tensor, mask: torch.Tensor | None, cfg: AugmentConfig, fill: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`augment` of one input and the same flip and affine applied to a mask of it.

    Args:
        x: (3, h, w) float input in [0, 1].
        mask: (h, w) float mask on the input's grid (values in [0, 1]), or ``None``.
        cfg: The augmentation.
        fill: Padding value of the input (the mask is padded with 0).

    Returns:
        ``(input, mask)``: the mask moved with the input (bilinear), unchanged by the intensity jitter.
        The random numbers drawn are the same with and without a mask, so a mask never changes the
        input's augmentation.
    """
    if not cfg.enabled:
        return x, mask
    if cfg.hflip > 0 and float(torch.rand(())) < cfg.hflip:
        x = torch.flip(x, dims=[-1])
        mask = None if mask is None else torch.flip(mask, dims=[-1])
    if cfg.rotation > 0 or cfg.translate > 0 or cfg.scale != (1.0, 1.0):
        h, w = x.shape[-2:]
        angle = _uniform(-cfg.rotation, cfg.rotation)
        tx = round(_uniform(-cfg.translate, cfg.translate) * w)
        ty = round(_uniform(-cfg.translate, cfg.translate) * h)
        scale = _uniform(*cfg.scale)
        x = TF.affine(
            x, angle=angle, translate=[tx, ty], scale=scale, shear=[0.0, 0.0],
            interpolation=InterpolationMode.BILINEAR, fill=[fill] * x.shape[0],
        )
        if mask is not None:
            mask = TF.affine(
                mask[None], angle=angle, translate=[tx, ty], scale=scale, shear=[0.0, 0.0],
                interpolation=InterpolationMode.BILINEAR, fill=[0.0],
            )[0]
    if cfg.brightness > 0:
        x = x * _uniform(1 - cfg.brightness, 1 + cfg.brightness)
    if cfg.contrast > 0:
        c = _uniform(1 - cfg.contrast, 1 + cfg.contrast)
        mean = x.mean()
        x = (x - mean) * c + mean
    return x.clamp_(0.0, 1.0), mask


def erase_borders(x: torch.Tensor, fraction: float, fill: float) -> torch.Tensor:
    """Cover each side of a (3, h, w) input, with probability 1/2, by a band of up to ``fraction`` of
    the side filled with ``fill`` (torch's global generator; in place, returns ``x``)."""
    h, w = x.shape[-2:]
    for side in range(4):
        if float(torch.rand(())) >= 0.5:
            continue
        n = int(float(torch.rand(())) * fraction * (h if side < 2 else w))
        if n <= 0:
            continue
        if side == 0:
            x[:, :n] = fill
        elif side == 1:
            x[:, h - n:] = fill
        elif side == 2:
            x[:, :, :n] = fill
        else:
            x[:, :, w - n:] = fill
    return x


def _writable(arr: NDArray[np.uint8]) -> NDArray[np.uint8]:
    # torch.from_numpy warns on read-only arrays (PIL-backed ones are); a copy is cheap next to decoding
    return arr if arr.flags.writeable else arr.copy()


def read_example_image(image: ImageLike, where: str) -> NDArray[np.uint8]:
    """Resolve an :data:`ImageLike` to a (H, W, 3) uint8 array.

    Raises:
        DataError: Naming ``where`` (and the file) when the image cannot be read or is not an image.
    """
    if isinstance(image, (str, os.PathLike)):
        from samprompt.data.io import load_image  # lazy: keeps the classifiers importable on their own

        return _writable(load_image(image))
    try:
        arr = image() if callable(image) else image
        return _writable(as_image(arr, name=where))
    except DataError:
        raise
    except (ValueError, TypeError, OSError) as exc:
        raise DataError(f"{where}: cannot load image: {exc}") from exc


class ExampleDataset(TorchDataset[tuple[Any, ...]]):
    """A torch ``Dataset`` over examples: loads lazily, preprocesses, optionally caches and augments.

    Items are ``(x, y)``: x (3, h, w) float32 normalised by ``preprocessing``; y the class index. With
    ``guides``, items are ``(x, y, g, has)``: g the (h, w) float32 guide mask on the input's grid (moved by
    the same flip and affine as x; zeros without one) and has whether the example has one.

    Args:
        images: One :data:`ImageLike` per example.
        targets: Class index per example.
        preprocessing: Geometry and normalisation of the network input.
        augmentation: Applied on top of the preprocessing (``None`` or disabled = none).
        cache: Keep each preprocessed (un-normalised, uint8) input in memory after its first load; the
            augmentation still runs anew on every access. Per DataLoader worker.
        border_erase: Largest fraction of each side randomly covered by the padding value, after the
            augmentation (see :func:`erase_borders`); 0 = never.
        guides: One :data:`GuideLike` per example (``None`` = no guide for it), or ``None`` (no guides);
            see :class:`~samprompt.classifiers.TrainConfig` ``guide_weight``.
    """

    def __init__(
        self,
        images: Sequence[ImageLike],
        targets: Sequence[int],
        preprocessing: Preprocessing,
        augmentation: AugmentConfig | None = None,
        cache: bool = True,
        border_erase: float = 0.0,
        guides: Sequence[GuideLike | None] | None = None,
    ) -> None:
        if len(images) != len(targets):
            raise DataError(f"{len(images)} images but {len(targets)} labels")
        if guides is not None and len(guides) != len(images):
            raise DataError(f"{len(images)} images but {len(guides)} guide masks")
        self.images = list(images)
        self.targets = [int(t) for t in targets]
        self.preprocessing = preprocessing
        self._raw = preprocessing.model_copy(update={"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)})
        self.augmentation = augmentation
        self.cache = cache
        self.border_erase = float(border_erase)
        self.guides = None if guides is None else list(guides)
        self._cache: dict[int, torch.Tensor] = {}
        self._guide_cache: dict[int, torch.Tensor] = {}
        self._mean = torch.tensor(preprocessing.mean).view(3, 1, 1)
        self._std = torch.tensor(preprocessing.std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def _load(self, i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Example ``i``'s (3, h, w) input in [0, 1] and its (h, w) guide on the input's grid (or None)."""
        hit = self._cache.get(i)
        if hit is not None:
            g = self._guide_cache.get(i)
            return hit.float().div_(255.0), None if g is None else g.float().div_(255.0)
        img = read_example_image(self.images[i], f"example {i}")
        x, _ = self._raw.to_tensor(img)
        g = None
        if self.guides is not None:
            mask = read_guide(self.guides[i], f"example {i}")
            if mask is not None and mask.shape != img.shape[:2]:
                raise DataError(f"example {i}: guide mask of shape {mask.shape} for an image of {img.shape[:2]}")
            g = None if mask is None else self._raw.mask_to_input(mask)
        if self.cache:
            self._cache[i] = x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
            if g is not None:
                self._guide_cache[i] = g.mul(255.0).round_().to(torch.uint8)
                g = self._guide_cache[i].float().div_(255.0)
            return self._cache[i].float().div_(255.0), g
        return x, g

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        x, g = self._load(i)
        fill = self.preprocessing.pad_value
        if self.guides is None:
            if self.augmentation is not None:
                x = augment(x, self.augmentation, fill=fill)
            if self.border_erase > 0:
                x = erase_borders(x, self.border_erase, fill)
            return (x - self._mean) / self._std, self.targets[i]
        has = g is not None
        m = g if g is not None else torch.zeros(x.shape[-2:])
        if self.augmentation is not None:
            x, moved = augment_with_mask(x, m, self.augmentation, fill=fill)
            m = m if moved is None else moved
        if self.border_erase > 0:
            x = erase_borders(x, self.border_erase, fill)
        return (x - self._mean) / self._std, self.targets[i], m, has


def read_guide(guide: GuideLike | None, where: str) -> NDArray[np.bool_] | NDArray[np.float32] | None:
    """Resolve a :data:`GuideLike` to a (H, W) array (bool, or float in [0, 1]), or ``None``.

    Raises:
        DataError: Naming ``where`` when the guide is not a two-dimensional mask in [0, 1].
    """
    if guide is None:
        return None
    try:
        g = np.asarray(guide() if callable(guide) else guide)
    except (ValueError, TypeError, OSError) as exc:
        raise DataError(f"{where}: cannot load the guide mask: {exc}") from exc
    if g.ndim == 0:  # a callable that returned None
        return None
    if g.ndim != 2:
        raise DataError(f"{where}: a guide mask must be (H, W), got shape {g.shape}")
    if g.dtype == np.bool_:
        return g
    g = g.astype(np.float32)
    if not np.isfinite(g).all() or g.min() < 0 or g.max() > 1:
        raise DataError(f"{where}: guide mask values must lie in [0, 1]")
    return g


def examples_from_dataset(dataset: Any, items: Sequence[int | str]) -> list[Example]:
    """Lazy examples ``(loader, label)`` for some samples of a ``samprompt.data`` ``Dataset``.

    Args:
        dataset: Object with ``__len__``, ``__getitem__(i) -> Sample`` (``.id``, ``.label``) and
            ``load_image(i)``.
        items: Sample indices (ints) or sample ids (strings, e.g. from ``Split.train``).

    Raises:
        DataError: Naming the unknown id or out-of-range index.
    """
    by_id: dict[str, int] | None = None
    out: list[Example] = []
    for item in items:
        if isinstance(item, str):
            if by_id is None:
                by_id = (
                    {item_id: dataset.position(item_id) for item_id in dataset.ids}
                    if hasattr(dataset, "position") and hasattr(dataset, "ids")
                    else {str(dataset[i].id): i for i in range(len(dataset))}
                )
            if item not in by_id:
                raise DataError(f"sample id {item!r} is not in the data set")
            i = by_id[item]
        else:
            i = int(item)
            if not 0 <= i < len(dataset):
                raise DataError(f"sample index {i} out of range for {len(dataset)} samples")
        out.append((functools.partial(dataset.load_image, i), str(dataset[i].label)))
    return out


def class_targets(examples: Sequence[Example], task: TaskSpec) -> list[int]:
    """Class index of every example (labels mapped through ``task``); DataError names the example."""
    out = []
    for n, (_, label) in enumerate(examples):
        try:
            out.append(task.index(label))
        except DataError as exc:
            raise DataError(f"example {n}: {exc}") from exc
    return out
