"""Helpers of the reliability tests: tiny images and data sets, a tiny classifier checkpoint, run configs."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

H, W = 64, 80
CLASSES = ("benign", "malignant", "normal")


def lesion_image(rng: np.random.Generator, kind: str, h: int = H, w: int = W) -> tuple[np.ndarray, np.ndarray]:
    """(h, w) uint8 speckle image and its (h, w) bool mask: a dark ellipse (benign), a dark rectangle
    (malignant) or nothing (normal)."""
    yy, xx = np.mgrid[0:h, 0:w]
    mask = np.zeros((h, w), bool)
    if kind == "benign":
        cx, cy = rng.uniform(0.3 * w, 0.7 * w), rng.uniform(0.3 * h, 0.7 * h)
        mask = ((xx - cx) / (0.15 * w)) ** 2 + ((yy - cy) / (0.15 * h)) ** 2 <= 1
    elif kind == "malignant":
        y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
        mask[y0:y0 + h // 4, x0:x0 + w // 4] = True
    base = np.where(mask, 45.0, 150.0) + 30.0 * rng.standard_normal((h, w))
    return np.clip(base, 0, 255).astype(np.uint8), mask


def write_pair(folder: Path, stem: str, kind: str, rng: np.random.Generator, *, mask: bool = True,
               suffix: str = ".png") -> tuple[Path, np.ndarray]:
    """Write ``folder/<stem><suffix>`` (and ``<stem>_mask.png`` unless ``mask=False``); return the image
    path and the mask array."""
    folder.mkdir(parents=True, exist_ok=True)
    img, m = lesion_image(rng, kind)
    path = folder / f"{stem}{suffix}"
    Image.fromarray(img).save(path)
    if mask:
        Image.fromarray(m.astype(np.uint8) * 255).save(folder / f"{stem}_mask.png")
    return path, m


def make_dataset(root: Path, per_class: int = 3, seed: int = 0) -> Path:
    """``root/<class>/<class> (k).png`` + masks, ``per_class`` images of 64 x 80 px per class."""
    rng = np.random.default_rng(seed)
    for cls in CLASSES:
        for k in range(per_class):
            write_pair(root / cls, f"{cls} ({k + 1})", cls, rng)
    return root


def png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    (Image.fromarray(arr, mode) if mode else Image.fromarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG file whose header claims ``width`` x ``height`` 8-bit grey pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def save_tiny_checkpoint(path: Path, class_names: tuple[str, ...] = CLASSES, seed: int = 0) -> Path:
    """An untrained ``tiny_cnn`` classifier checkpoint (32 px inputs), written with ``save_classifier``."""
    import torch

    from samprompt.classifiers import ClassifierInfo, TaskSpec, build_classifier, save_classifier
    from samprompt.preprocess import Preprocessing

    torch.manual_seed(seed)
    model = build_classifier("tiny_cnn", len(class_names))
    info = ClassifierInfo.for_model(model, arch="tiny_cnn", task=TaskSpec(class_names=class_names),
                                    preprocessing=Preprocessing(input_size=32))
    return save_classifier(path, model, info)


STRATEGIES: list[dict[str, Any]] = [
    {"name": "box", "params": {"margin": 2}},
    {"name": "center_point"},
    {"name": "candidates", "params": {"work_size": 48, "segments": []}},
]


def run_config(data: Path, *, checkpoint: Path | None = None, **extra: Any) -> dict[str, Any]:
    """A fast run config on ``data``: every image processed (split ``all``), the classical segmenter,
    and either ``checkpoint`` or a ``tiny_cnn`` trained for one epoch at 32 px."""
    classifier: dict[str, Any] = (
        {"checkpoint": str(checkpoint)} if checkpoint is not None else
        {"task": "multiclass", "train": {"arch": "tiny_cnn", "epochs": 1, "batch_size": 4, "patience": None,
                                         "preprocessing": {"input_size": 32}, "device": "cpu"}})
    cfg: dict[str, Any] = {
        "name": "rel",
        "data": {"path": str(data)},
        "split": {"fractions": [0.5, 0.0, 0.5], "use": "all"},
        "classifier": classifier,
        "device": "cpu",
        "batch_size": 3,
        "target": "predicted",
        "pipeline": {
            "cam": {"name": "gradcam"},
            "masker": {"name": "threshold", "params": {"value": 0.5}},
            "prompts": [dict(s) for s in STRATEGIES],
            "segmenter": {"name": "classical", "params": {"work_size": 48}},
        },
        "report": {"panels": 2, "gallery": 1, "thumb": 48},
    }
    cfg.update(extra)
    return cfg



@contextlib.contextmanager
def deny_read(*paths: Path) -> Iterator[None]:
    """Make ``paths`` unreadable for this process inside the block, as files or folders without read
    permission are.

    Not running as root: ``chmod 000``, restored on exit. As root, which permissions do not stop, opening
    (``open``) or listing (``os.listdir``, ``os.scandir``) them raises the ``PermissionError`` the kernel
    would raise for another user.
    """
    import builtins
    import io as _io

    if os.geteuid() != 0:
        modes = [(p, p.stat().st_mode) for p in paths]
        try:
            for p, _ in modes:
                os.chmod(p, 0)
            yield
        finally:
            for p, mode in modes:
                os.chmod(p, mode)
        return
    denied = {os.path.abspath(os.fspath(p)) for p in paths}

    def check(target: Any) -> None:
        if isinstance(target, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(target)) in denied:
            raise PermissionError(13, "Permission denied", os.fsdecode(target))

    real_open, real_listdir, real_scandir = builtins.open, os.listdir, os.scandir

    def fake_open(file: Any, *a: Any, **k: Any) -> Any:
        check(file)
        return real_open(file, *a, **k)

    def fake_listdir(path: Any = ".") -> Any:
        check(path)
        return real_listdir(path)

    def fake_scandir(path: Any = ".") -> Any:
        check(path)
        return real_scandir(path)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(builtins, "open", fake_open)
        mp.setattr(_io, "open", fake_open)
        mp.setattr(os, "listdir", fake_listdir)
        mp.setattr(os, "scandir", fake_scandir)
        yield
