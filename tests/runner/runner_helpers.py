"""Helpers of the runner tests: a tiny synthetic class-folder data set and a fast run config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

H, W = 64, 80


def _image_and_mask(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Speckle noise; lesions are a dark ellipse (benign) or a dark rectangle (malignant)."""
    yy, xx = np.mgrid[0:H, 0:W]
    mask = np.zeros((H, W), bool)
    if kind == "benign":
        cx, cy = rng.uniform(25, 55), rng.uniform(20, 44)
        mask = ((xx - cx) / 12.0) ** 2 + ((yy - cy) / 9.0) ** 2 <= 1
    elif kind == "malignant":
        x0, y0 = int(rng.integers(10, 50)), int(rng.integers(8, 36))
        mask[y0:y0 + 18, x0:x0 + 20] = True
    base = np.where(mask, 45.0, 150.0) + 30.0 * rng.standard_normal((H, W))
    return np.clip(base, 0, 255).astype(np.uint8), mask


def make_dataset(root: Path, per_class: int = 4, names: dict[str, list[str]] | None = None, seed: int = 0) -> Path:
    """Write ``root/<class>/<name>.png`` + ``<name>_mask.png`` for benign, malignant and normal.

    Args:
        root: Folder to create.
        per_class: Images per class.
        names: Optional file stems per class (default ``<class> (k)``).
        seed: Seed of the noise and shapes.
    """
    rng = np.random.default_rng(seed)
    for cls in ("benign", "malignant", "normal"):
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        stems = (names or {}).get(cls) or [f"{cls} ({k + 1})" for k in range(per_class)]
        for stem in stems:
            img, mask = _image_and_mask(rng, cls)
            Image.fromarray(img).save(folder / f"{stem}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{stem}_mask.png")
    return root


def fast_config(data: Path, **extra: Any) -> dict[str, Any]:
    """A run config that trains ``tiny_cnn`` for one epoch at 32 px and uses the classical segmenter."""
    cfg: dict[str, Any] = {
        "name": "t",
        "data": {"path": str(data)},
        "split": {"fractions": [0.5, 0.0, 0.5], "use": "test"},
        "classifier": {"task": "multiclass", "train": {
            "arch": "tiny_cnn", "epochs": 1, "batch_size": 4, "patience": None,
            "preprocessing": {"input_size": 32}, "device": "cpu"}},
        "device": "cpu",
        "batch_size": 3,
        "target": "label",
        "pipeline": {
            "cam": {"name": "gradcam"},
            "masker": {"name": "threshold", "params": {"value": 0.5}},
            "prompts": [{"name": "box", "params": {"margin": 2}}, {"name": "center_point"},
                        {"name": "box_center_point"}],
            "segmenter": {"name": "classical", "params": {"work_size": 48}},
        },
        "report": {"panels": 3, "gallery": 2, "thumb": 64},
    }
    cfg.update(extra)
    return cfg
