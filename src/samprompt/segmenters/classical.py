"""The weight-free default segmenter: a box/point prior refined by a random walker (scikit-image).

Nothing is downloaded and no weights are needed, so the whole pipeline runs anywhere. For each prompt:

1. a prior probability map is built from the prompt — the ellipse inscribed in the box (soft-edged),
   disks around positive points, zero around negative points, and the dense ``mask_logits`` if given;
2. a random walker on the smoothed grey image, seeded with the confident core of the prior as
   foreground and everything well outside it as background, gives an image-driven probability;
3. the two are blended (``prior_weight``) and thresholded at 0.5; the component touching the prompt is kept.

The walker runs on a crop around the prompt, downsampled to at most ``work_size`` pixels on its long side,
so a decode costs milliseconds to tens of milliseconds on a CPU core.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import Field
from scipy import ndimage as ndi
from skimage.segmentation import random_walker
from skimage.transform import resize

from samprompt._arrays import as_image
from samprompt.component import ComponentParams
from samprompt.prompts.base import Prompt
from samprompt.regions import keep_components
from samprompt.segmenters import SEGMENTERS
from samprompt.segmenters.base import ImageEmbedding, Segmentation, Segmenter

__all__ = ["ClassicalSegmenter"]


def _soft_ellipse(box: NDArray[np.float32], H: int, W: int) -> NDArray[np.float32]:
    """Prior in [0, 1]: 1 within half the radii, 0.5 on the inscribed ellipse, 0 beyond 1.5 x the radii."""
    x0, y0, x1, y1 = (float(v) for v in box)
    rx, ry = max((x1 - x0) / 2.0, 0.5), max((y1 - y0) / 2.0, 0.5)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    ys = (np.arange(H, dtype=np.float32) + 0.5 - cy) / ry
    xs = (np.arange(W, dtype=np.float32) + 0.5 - cx) / rx
    r = np.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
    return np.clip(1.5 - r, 0.0, 1.0)


@SEGMENTERS.register("classical")
class ClassicalSegmenter(Segmenter):
    """Weight-free promptable segmenter (see the module docstring).

    Params:
        beta: Random-walker edge sensitivity (higher = edges matter more).
        prior_weight: Weight of the prompt prior in the blend with the walker's probability (0..1).
        smoothing: Gaussian sigma (pixels, original scale) applied before the walker.
        work_size: Long side, in pixels, of the crop the walker runs on.
        point_radius: Radius of the prior disk around a point, as a fraction of the image's short side,
            used when a prompt has points but no box.
    """

    class Params(ComponentParams):
        beta: float = Field(default=130.0, gt=0.0)
        prior_weight: float = Field(default=0.6, ge=0.0, le=1.0)
        smoothing: float = Field(default=1.5, ge=0.0)
        work_size: int = Field(default=128, ge=16)
        point_radius: float = Field(default=0.08, gt=0.0, le=1.0)

    def embed(self, image: NDArray[np.uint8]) -> ImageEmbedding:
        """Store the smoothed grey image in [0, 1]; image (H, W) or (H, W, 3) uint8."""
        img = as_image(image).astype(np.float32).mean(axis=2) / 255.0
        if self.params.smoothing > 0:  # type: ignore[attr-defined]
            img = ndi.gaussian_filter(img, self.params.smoothing)  # type: ignore[attr-defined]
        return ImageEmbedding(original_size=img.shape, data=img)  # type: ignore[arg-type]

    def _prior(self, prompt: Prompt, H: int, W: int) -> NDArray[np.float32]:
        p = self.params
        prior = np.zeros((H, W), np.float32)
        if prompt.box is not None:
            prior = _soft_ellipse(prompt.box, H, W)
        pos = prompt.points[prompt.point_labels == 1]
        neg = prompt.points[prompt.point_labels == 0]
        if len(pos) and prompt.box is None:
            rad = p.point_radius * min(H, W)  # type: ignore[attr-defined]
            yy, xx = np.mgrid[0:H, 0:W].astype(np.float32) + 0.5
            for x, y in pos:
                d = np.sqrt((xx - x) ** 2 + (yy - y) ** 2) / rad
                prior = np.maximum(prior, np.clip(1.5 - d, 0.0, 1.0))
        if prompt.mask_logits is not None:
            logits = prompt.mask_logits
            if logits.shape != (H, W):
                logits = resize(logits, (H, W), order=1, preserve_range=True).astype(np.float32)
            prior = np.maximum(prior, 1.0 / (1.0 + np.exp(-np.clip(logits, -30, 30))))
        if len(neg):
            yy, xx = np.mgrid[0:H, 0:W].astype(np.float32) + 0.5
            rad = 0.03 * min(H, W) + 1
            for x, y in neg:
                prior[(xx - x) ** 2 + (yy - y) ** 2 <= rad**2] = 0.0
        return prior

    def _decode_one(self, img: NDArray[np.float32], prompt: Prompt) -> tuple[NDArray[np.bool_], float]:
        H, W = img.shape
        prior = self._prior(prompt, H, W)
        if not (prior > 0.5).any():
            return np.zeros((H, W), bool), 0.0
        # Crop around the prior's support, with context.
        ys, xs = np.nonzero(prior > 0)
        pad = max(4, int(0.15 * max(np.ptp(ys) + 1, np.ptp(xs) + 1)))
        y0, y1 = max(0, ys.min() - pad), min(H, ys.max() + 1 + pad)
        x0, x1 = max(0, xs.min() - pad), min(W, xs.max() + 1 + pad)
        crop, pcrop = img[y0:y1, x0:x1], prior[y0:y1, x0:x1]
        scale = min(1.0, self.params.work_size / max(crop.shape))  # type: ignore[attr-defined]
        shape = (max(2, round(crop.shape[0] * scale)), max(2, round(crop.shape[1] * scale)))
        small = resize(crop, shape, order=1, anti_aliasing=True).astype(np.float64)
        psmall = resize(pcrop, shape, order=1).astype(np.float32)
        seeds = np.zeros(shape, np.int32)
        seeds[psmall >= 0.85] = 1
        seeds[psmall <= 0.0] = 2
        seeds[[0, -1], :] = np.where(seeds[[0, -1], :] == 1, 1, 2)
        seeds[:, [0, -1]] = np.where(seeds[:, [0, -1]] == 1, 1, 2)
        walk = psmall
        if (seeds == 1).any() and (seeds == 2).any() and (seeds == 0).any():
            lo, hi = float(small.min()), float(small.max())
            norm = (small - lo) / (hi - lo) if hi > lo else small * 0
            try:
                walk = random_walker(norm, seeds, beta=self.params.beta, mode="cg_j", return_full_prob=True)[0]  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - degenerate systems fall back to the prior
                walk = psmall
        w = self.params.prior_weight  # type: ignore[attr-defined]
        prob_small = w * psmall + (1.0 - w) * walk.astype(np.float32)
        prob = resize(prob_small, crop.shape, order=1).astype(np.float32)
        full = np.zeros((H, W), bool)
        full[y0:y1, x0:x1] = prob > 0.5
        full = keep_components(full, "max_cam", cam=prior)
        score = float(prob[full[y0:y1, x0:x1]].mean()) if full.any() else 0.0
        return full, score

    def decode(self, embedding: ImageEmbedding, prompts: Sequence[Prompt]) -> Segmentation:
        """Decode each prompt; returns (K, H, W) masks and (K,) mean-probability scores."""
        img: Any = embedding.data
        if not prompts:
            return self.empty(embedding)
        outs = [self._decode_one(img, p) for p in prompts]
        return Segmentation(
            masks=np.stack([o[0] for o in outs]), scores=np.array([o[1] for o in outs], np.float32)
        )
