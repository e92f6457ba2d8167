"""Synthetic scenes for the fit tests: a lesion (dark, bright or coloured) among distractors."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi


def scene(kind: str, seed: int, lesion: bool = True, H: int = 96, W: int = 128, faint: bool = False,
          flat: bool = False) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:
    """Speckled mid-grey tissue with a dark band along the bottom (a distractor in every image) and a
    second distractor blob of the OTHER polarity; with ``lesion``, one elliptic lesion that is ``dark``,
    ``bright`` or ``colour`` (same grey level as the tissue, another hue), oval (semi-axes 10-16 by 8-12
    pixels). A second lesion class that differs from the first only in the lesion: ``faint`` halves the
    lesion's contrast, ``flat`` makes it flat and wide (16-22 by 6-8). Returns (RGB uint8, lesion mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    grey = 128 + 10 * rng.standard_normal((H, W))
    grey[-14:] = 60 + 8 * rng.standard_normal((14, W))  # dark band
    img = np.repeat(grey[..., None], 3, axis=2)
    # distractor: a compact blob of the opposite polarity at a random place in the upper part
    dx, dy = rng.uniform(20, W - 20), rng.uniform(15, 35)
    dist = ((xx - dx) / 9) ** 2 + ((yy - dy) / 7) ** 2 <= 1
    mask = np.zeros((H, W), bool)
    if lesion:
        for _ in range(1000):
            cx, cy = rng.uniform(22, W - 22), rng.uniform(25, H - 35)
            ax, ay = rng.uniform(10, 16), rng.uniform(8, 12)  # (drawn either way: the same scenes as before)
            if flat:
                ax, ay = ax + 6, 6 + (ay - 8) / 2
            mask = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1
            if not (mask & ndi.binary_dilation(dist, iterations=6)).any():
                break
        else:
            raise ValueError(f"no room for a lesion in a {H} x {W} scene")
    img[dist] = (200 if kind == "dark" else 50) + 8 * rng.standard_normal((int(dist.sum()), 1))
    k = 0.5 if faint else 1.0
    if kind == "dark":
        img[mask] = 128 - k * 83 + 8 * rng.standard_normal((int(mask.sum()), 1))
    elif kind == "bright":
        img[mask] = 128 + k * 87 + 8 * rng.standard_normal((int(mask.sum()), 1))
    else:  # a reddish lesion of the tissue's grey level
        n = int(mask.sum())
        img[mask] = np.stack([128 + k * 72 + 8 * rng.standard_normal(n), 128 - k * 28 + 8 * rng.standard_normal(n),
                              128 - k * 44 + 8 * rng.standard_normal(n)], 1)
    return np.clip(img, 0, 255).astype(np.uint8), mask


class LocalisingCam:
    """A stand-in for a classifier that localises: the CAM of a known image (or its mirror) is its lesion
    mask, blurred and shifted a little; unknown images get a flat CAM. Test-only (never in a fit shipped)."""

    def __init__(self, pairs: Sequence[tuple[NDArray[np.uint8], NDArray[np.bool_]]]) -> None:
        self.known: dict[str, NDArray[np.float32]] = {}
        for img, m in pairs:
            cam = ndi.gaussian_filter(np.roll(m.astype(np.float32), 3, axis=1), 5)
            cam = cam / max(float(cam.max()), 1e-6)
            self.known[self._key(img)] = cam
            self.known[self._key(img[:, ::-1])] = cam[:, ::-1]
        self.calls = 0

    @staticmethod
    def _key(img: Any) -> str:
        return hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest()

    def __call__(self, images: Sequence[Any]) -> list[NDArray[np.float32]]:
        self.calls += len(images)
        return [self.known.get(self._key(im), np.full(np.asarray(im).shape[:2], 0.5, np.float32))
                for im in images]
