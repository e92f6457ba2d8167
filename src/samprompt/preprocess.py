"""Classifier preprocessing and its exact inverse for maps (CAMs) computed on the network input.

A classifier sees the whole image, either stretched to ``input_size`` (``"resize"``) or scaled to fit
and padded (``"letterbox"``); nothing is ever cropped away, so every original pixel has a place on the
network input. :meth:`Preprocessing.to_original` maps a feature map back onto the ORIGINAL image grid
through that geometry, pixel centre by pixel centre — the paper's code stretched a centre-cropped CAM
over the whole image instead and lost lesions near the borders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator

from samprompt._arrays import as_image
from samprompt._bounds import MAX_SIDE

__all__ = ["Geometry", "Preprocessing"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Geometry:
    """Where an original image lies on the network input.

    Attributes:
        original_size: ``(H, W)`` of the original image.
        input_size: ``(h, w)`` of the network input.
        content: ``(x0, y0, x1, y1)`` of the image content on the input, in whole input pixels (edges);
            the rest is padding (letterbox) or nothing (resize: ``(0, 0, w, h)``).
    """

    original_size: tuple[int, int]
    input_size: tuple[int, int]
    content: tuple[float, float, float, float]


class Preprocessing(BaseModel):
    """How images are turned into classifier inputs; stored in every classifier checkpoint.

    Attributes:
        input_size: ``(h, w)`` of the network input (an int means square).
        mode: ``"resize"`` stretches the whole image; ``"letterbox"`` keeps the aspect ratio and pads
            with ``pad_value``.
        mean: Per-channel mean subtracted after scaling to [0, 1].
        std: Per-channel standard deviation divided after the mean.
        pad_value: Padding intensity in [0, 1] before normalisation (letterbox only).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    input_size: tuple[int, int] = (224, 224)
    mode: Literal["resize", "letterbox"] = "resize"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pad_value: float = Field(default=0.0, ge=0.0, le=1.0)

    @field_validator("input_size", mode="before")
    @classmethod
    def _square(cls, v: object) -> object:
        return (v, v) if isinstance(v, int) else v

    @field_validator("input_size")
    @classmethod
    def _positive(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not (8 <= v[0] <= MAX_SIDE and 8 <= v[1] <= MAX_SIDE):
            raise ValueError(f"input_size must lie between 8 x 8 and {MAX_SIDE} x {MAX_SIDE}, got {v}")
        return v

    @field_validator("std")
    @classmethod
    def _nonzero_std(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s <= 0 for s in v):
            raise ValueError(f"std must be positive, got {v}")
        return v

    def geometry(self, original_size: tuple[int, int]) -> Geometry:
        """Return the :class:`Geometry` of an image of ``(H, W)`` = ``original_size``."""
        H, W = original_size
        h, w = self.input_size
        if self.mode == "resize":
            return Geometry((H, W), (h, w), (0.0, 0.0, float(w), float(h)))
        scale = min(h / H, w / W)
        ch, cw = max(1, min(h, round(H * scale))), max(1, min(w, round(W * scale)))
        top, left = (h - ch) // 2, (w - cw) // 2
        return Geometry((H, W), (h, w), (float(left), float(top), float(left + cw), float(top + ch)))

    def to_tensor(
        self, image: NDArray[np.uint8], device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, Geometry]:
        """Turn one image into a normalised (3, h, w) float32 tensor.

        Args:
            image: (H, W) or (H, W, 3) uint8 (other layouts per :func:`samprompt._arrays.as_image`).
            device: Where to resize and normalise (the uint8 image is moved there first, e.g. to a GPU);
                ``None`` = CPU.

        Returns:
            ``(tensor on device, geometry)``.
        """
        img = as_image(image)
        H, W = img.shape[:2]
        geo = self.geometry((H, W))
        # torch.tensor copies, so read-only arrays (e.g. from the data loaders) are fine.
        x = torch.tensor(img).to(device or "cpu").permute(2, 0, 1).float().div_(255.0)[None]
        h, w = self.input_size
        if self.mode == "resize":
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        else:
            left, top, right, bottom = (int(v) for v in geo.content)
            x = F.interpolate(x, size=(bottom - top, right - left), mode="bilinear", align_corners=False, antialias=True)
            canvas = torch.full((1, 3, h, w), float(self.pad_value), device=x.device)
            canvas[:, :, top:bottom, left:right] = x
            x = canvas
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std)[0], geo

    def mask_to_input(self, mask: NDArray[Any]) -> torch.Tensor:
        """Place a mask of the original image on the network input, as :meth:`to_tensor` places the image.

        Args:
            mask: (H, W) bool or numeric array on the original image's pixel grid (values in [0, 1]).

        Returns:
            (h, w) float32 tensor in [0, 1] on the CPU: the mean of the mask over the original pixels each
            input pixel spans (adaptive average pooling, so a pixel on the mask's edge gets the covered
            share; the same geometry as the image); letterbox padding is 0.

        Raises:
            ValueError: ``mask`` is not two-dimensional.
        """
        m = np.asarray(mask)
        if m.ndim != 2:
            raise ValueError(f"mask must be (H, W), got shape {m.shape}")
        geo = self.geometry((int(m.shape[0]), int(m.shape[1])))
        x = torch.tensor(m.astype(np.float32, copy=False))[None, None]
        h, w = self.input_size
        left, top, right, bottom = (int(v) for v in geo.content)
        x = F.adaptive_avg_pool2d(x, (bottom - top, right - left))  # each input pixel: the mean of its pixels
        out = torch.zeros((h, w), dtype=torch.float32)
        out[top:bottom, left:right] = x[0, 0]
        return out.clamp_(0.0, 1.0)

    def batch(
        self, images: Sequence[NDArray[np.uint8]], device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, list[Geometry]]:
        """Stack several images into a (B, 3, h, w) tensor on ``device`` (see :meth:`to_tensor`) plus one
        :class:`Geometry` each."""
        if len(images) == 0:
            raise ValueError("images must not be empty")
        pairs = [self.to_tensor(im, device) for im in images]
        return torch.stack([p[0] for p in pairs]), [p[1] for p in pairs]

    @staticmethod
    def to_original(maps: torch.Tensor, geometry: Geometry) -> torch.Tensor:
        """Resample a map computed on the network input onto the original image grid.

        Each original pixel centre ``(x + 0.5, y + 0.5)`` is placed on the input through ``geometry`` and
        the map (which spans the whole input, at any resolution) is sampled there bilinearly.

        Args:
            maps: (C, h', w') or (h', w') float tensor covering the full network input.
            geometry: Geometry of the image the map belongs to.

        Returns:
            (C, H, W) or (H, W) float32 tensor on ``maps``' device.
        """
        squeeze = maps.ndim == 2
        m = maps[None, None] if squeeze else maps[None]
        H, W = geometry.original_size
        h, w = geometry.input_size
        x0, y0, x1, y1 = geometry.content
        dev = m.device
        xs = x0 + (torch.arange(W, device=dev, dtype=torch.float32) + 0.5) * ((x1 - x0) / W)
        ys = y0 + (torch.arange(H, device=dev, dtype=torch.float32) + 0.5) * ((y1 - y0) / H)
        gx = xs / w * 2.0 - 1.0
        gy = ys / h * 2.0 - 1.0
        grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None]
        out = F.grid_sample(m.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out[0, 0] if squeeze else out[0]
