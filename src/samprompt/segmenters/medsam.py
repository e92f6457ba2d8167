"""MedSAM's image preprocessing, shared by the ``sam`` and ``hf_sam`` segmenters (``preprocessing="medsam"``).

MedSAM (Ma et al., *Segment anything in medical images*, Nature Communications 15, 654, 2024) feeds its
encoder differently from SAM: the RGB image is resized to the full ``S x S`` square (1024 for MedSAM; the
aspect ratio is NOT kept and nothing is padded), cast back to uint8, min-max normalised to ``[0, 1]``
over the whole image and given to the encoder as it is (no ImageNet mean / std). Boxes are scaled by
``S / W`` and ``S / H``, and the low-resolution logits are resized back to the original size.

This module is samprompt's own implementation of that recipe: the resize is torch's antialiased bicubic
(MedSAM's reference code uses scikit-image's order-3 spline), so inputs agree with MedSAM's to about one
grey level before normalisation, not bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

__all__ = ["medsam_input"]


def medsam_input(image: NDArray[np.uint8], size: int, device: torch.device) -> torch.Tensor:
    """Turn one image into MedSAM's encoder input.

    Args:
        image: (H, W, 3) uint8 RGB at the original size.
        size: Side ``S`` of the square encoder input (the model's image size, 1024 for MedSAM).
        device: Where to compute.

    Returns:
        (3, S, S) float32 in ``[0, 1]``: bicubic antialiased resize to ``S x S`` rounded to the uint8 grid,
        then ``(x - min) / max(max - min, 1e-8)`` over the whole resized image. A constant image gives 0.
    """
    host = torch.from_numpy(np.ascontiguousarray(image))
    x = host.to(device).permute(2, 0, 1)[None].float()
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, (size, size), mode="bicubic", align_corners=False, antialias=True)
        x = x.round_().clamp_(0, 255)
    lo, hi = x.amin(), x.amax()
    return ((x - lo) / torch.clamp(hi - lo, min=1e-8))[0]
