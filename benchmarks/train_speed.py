"""Benchmark: images/s of samprompt's training loop against a plain torchvision loop, in ONE run.

Both train the same torchvision ResNet from scratch with AdamW on the same in-memory images, at the same
input size and batch size, for the same number of epochs, on the CPU:

* ``plain``: the images are decoded and resized ONCE into a uint8 tensor; each step takes a shuffled batch,
  flips it horizontally with probability 1/2 per image, normalises it and runs forward/backward/step —
  the leanest loop a user would write by hand (contiguous memory layout, torch's default threads);
* ``samprompt``: :func:`samprompt.classifiers.train_classifier` with the same settings
  (``cache_images=True``), once with augmentation off (flip only, like ``plain``) and once with its default
  augmentation (flip + small affine + brightness/contrast), no validation set; ``_cl`` runs add
  ``channels_last=True``.

The two loops run INTERLEAVED, one plain epoch after each samprompt epoch, so that both see the same
load of a shared machine; the figure is the median over epoch pairs (samprompt's first epoch, which fills
its image cache, is left out). Images are synthetic (random noise with shapes, 300 x 400 px) so no data set is needed.

Example (the figures in docs/benchmarks.rst)::

    PYTHONPATH=src python benchmarks/train_speed.py --arch resnet18 --input-size 128 --batch 16 \\
        --images 64 --epochs 6 --out benchmarks/results/train_speed_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from samprompt.classifiers import TaskSpec, TrainConfig, train_classifier
from samprompt.classifiers.inputs import AugmentConfig
from samprompt.preprocess import Preprocessing

MEAN = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
STD = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = (rng.random((300, 400, 3)) * 80).astype(np.uint8)
        y, x = rng.integers(20, 200, 2)
        img[y : y + 60, x : x + 80] = 200 if i % 2 else 30
        out.append(img)
    return out


class PlainLoop:
    """The hand-written baseline: images decoded and resized once; :meth:`epoch` trains one epoch."""

    def __init__(self, images: list[np.ndarray], labels: list[int], arch: str, size: int, batch: int,
                 seed: int) -> None:
        torch.manual_seed(seed)
        self.x_all = torch.stack([
            F.interpolate(torch.from_numpy(im).permute(2, 0, 1)[None].float(), size=(size, size),
                          mode="bilinear", align_corners=False, antialias=True)[0].round().clamp(0, 255)
            .to(torch.uint8)
            for im in images
        ])
        self.y_all = torch.tensor(labels)
        self.batch = batch
        self.model = torchvision.models.get_model(arch, weights=None, num_classes=2)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=1e-4)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.g = torch.Generator().manual_seed(seed)

    def epoch(self) -> float:
        """Train one epoch; returns its seconds."""
        t = time.perf_counter()
        self.model.train()
        order = torch.randperm(len(self.y_all), generator=self.g)
        for s in range(0, len(order) - 1, self.batch):
            idx = order[s : s + self.batch]
            if len(idx) < 2:
                continue
            x = self.x_all[idx].float().div_(255.0)
            flip = torch.rand(len(idx), generator=self.g) < 0.5
            x[flip] = x[flip].flip(-1)
            x = (x - MEAN) / STD
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.model(x), self.y_all[idx])
            loss.backward()
            self.opt.step()
        return time.perf_counter() - t


def samprompt_loop(images: list[np.ndarray], labels: list[int], arch: str, size: int, batch: int,
                   epochs: int, seed: int, augment: bool, channels_last: bool, plain: PlainLoop) -> dict[str, Any]:
    """samprompt's ``train_classifier``, one plain epoch after each of its epochs (so that both see the
    same machine load); returns the seconds per epoch of both."""
    aug = AugmentConfig() if augment else AugmentConfig(rotation=0.0, scale=(1.0, 1.0), translate=0.0,
                                                        brightness=0.0, contrast=0.0)
    cfg = TrainConfig(arch=arch, epochs=epochs, batch_size=batch, device="cpu", seed=seed, patience=None,
                      preprocessing=Preprocessing(input_size=size), augmentation=aug, class_weights=None, channels_last=channels_last)
    task = TaskSpec(class_names=("a", "b"))
    plain_secs: list[float] = []
    res = train_classifier(list(zip(images, labels, strict=True)), None, task=task, config=cfg,
                           callback=lambda _s: plain_secs.append(plain.epoch()))
    return {"epoch_seconds": [h.seconds for h in res.history], "plain_epoch_seconds": plain_secs}


def _summary(r: dict[str, Any], n: int) -> dict[str, float]:
    own, plain = r["epoch_seconds"][1:], r["plain_epoch_seconds"][1:]
    ratios = [p / o for o, p in zip(own, plain, strict=True)]  # > 1: samprompt faster
    return {"images_per_s": float(np.median([n / o for o in own])),
            "plain_images_per_s": float(np.median([n / p for p in plain])),
            "speed_vs_plain": float(np.median(ratios))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--input-size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["samprompt", "samprompt_aug", "samprompt_cl", "samprompt_aug_cl"],
                    action="append", help="samprompt variants, in order (repeatable; default: all)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    if a.epochs < 2:
        ap.error("--epochs must be >= 2 (the first epoch is reported apart)")
    images = _images(a.images, a.seed)
    labels = [i % 2 for i in range(a.images)]
    load_before = os.getloadavg()
    runs: dict[str, dict[str, Any]] = {}
    for name in a.only or ["samprompt", "samprompt_aug", "samprompt_cl", "samprompt_aug_cl"]:
        plain = PlainLoop(images, labels, a.arch, a.input_size, a.batch, a.seed)
        plain.epoch()  # warm-up, not counted
        r = samprompt_loop(images, labels, a.arch, a.input_size, a.batch, a.epochs, a.seed,
                           augment="aug" in name, channels_last=name.endswith("_cl"), plain=plain)
        r.update(_summary(r, a.images))
        runs[name] = r
        print(f"{name:16s} {r['images_per_s']:6.1f} images/s, plain loop {r['plain_images_per_s']:6.1f} "
              f"images/s: {r['speed_vs_plain']:.2f} x plain (median of {a.epochs - 1} epoch pairs)   "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
    result = {
        "arch": a.arch, "input_size": a.input_size, "batch": a.batch, "images": a.images, "epochs": a.epochs,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "machine": platform.platform(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "runs": runs,
    }
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
