"""Fixtures building small synthetic data sets with PIL for the samprompt.data tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

ImageMaker = Callable[..., NDArray[np.uint8]]


def _smooth_image(seed: int, width: int = 64, height: int = 48) -> NDArray[np.uint8]:
    """A (H, W, 3) uint8 image of smooth random structure; different seeds give unrelated pHashes."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(low).resize((width, height), Image.Resampling.BICUBIC))


def _disk_mask(width: int, height: int, cx: int, cy: int, r: int) -> NDArray[np.bool_]:
    yy, xx = np.mgrid[:height, :width]
    return np.asarray((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r)


@pytest.fixture
def make_image() -> ImageMaker:
    return _smooth_image


@pytest.fixture
def disk_mask() -> Callable[..., NDArray[np.bool_]]:
    return _disk_mask


@pytest.fixture
def class_folders(tmp_path: Path) -> Path:
    """A BUSI-like tree: benign (3 images, one with two masks), malignant (2), normal (2, empty masks).

    Image ``benign (2)`` is 80 x 60; every other image is 64 x 48.
    """
    root = tmp_path / "busi"
    spec = {
        "benign": [("benign (1)", 1), ("benign (2)", 2), ("benign (10)", 3)],
        "malignant": [("malignant (1)", 4), ("malignant (2)", 5)],
        "normal": [("normal (1)", 6), ("normal (2)", 7)],
    }
    for cls, items in spec.items():
        (root / cls).mkdir(parents=True)
        for name, seed in items:
            w, h = (80, 60) if name == "benign (2)" else (64, 48)
            Image.fromarray(_smooth_image(seed, w, h)).convert("L").save(root / cls / f"{name}.png")
            if cls == "normal":
                Image.new("RGB", (w, h)).save(root / cls / f"{name}_mask.png")
                continue
            Image.fromarray(_disk_mask(w, h, 20, 20, 5)).save(root / cls / f"{name}_mask.png")
            if name == "benign (2)":
                Image.fromarray(_disk_mask(w, h, 60, 40, 4).astype(np.uint8) * 255).save(
                    root / cls / f"{name}_mask_1.png"
                )
    return root
