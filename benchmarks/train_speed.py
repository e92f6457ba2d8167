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

The first epoch of each (model warm-up, image cache filled) is reported separately; images/s is over the
remaining epochs. Images are synthetic (random noise with shapes, 300 x 400 px) so no data set is needed.

Example (the figures in docs/benchmarks.rst)::

    PYTHONPATH=src python benchmarks/train_speed.py --arch resnet18 --input-size 128 --batch 16 \\
        --images 96 --epochs 3 --rounds 3 --out benchmarks/results/train_speed_cpu.json
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


def plain_loop(images: list[np.ndarray], labels: list[int], arch: str, size: int, batch: int,
               epochs: int, seed: int) -> dict[str, Any]:
    """The hand-written baseline; returns seconds per epoch."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    x_all = torch.stack([
        F.interpolate(torch.from_numpy(im).permute(2, 0, 1)[None].float(), size=(size, size), mode="bilinear",
                      align_corners=False, antialias=True)[0].round().clamp(0, 255).to(torch.uint8)
        for im in images
    ])
    y_all = torch.tensor(labels)
    prep = time.perf_counter() - t0
    model = torchvision.models.get_model(arch, weights=None, num_classes=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    secs = []
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        t = time.perf_counter()
        order = torch.randperm(len(images), generator=g)
        for s in range(0, len(order) - 1, batch):
            idx = order[s : s + batch]
            if len(idx) < 2:
                continue
            x = x_all[idx].float().div_(255.0)
            flip = torch.rand(len(idx), generator=g) < 0.5
            x[flip] = x[flip].flip(-1)
            x = (x - MEAN) / STD
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y_all[idx])
            loss.backward()
            opt.step()
        secs.append(time.perf_counter() - t)
    secs[0] += prep
    return {"epoch_seconds": secs}


def samprompt_loop(images: list[np.ndarray], labels: list[int], arch: str, size: int, batch: int,
                   epochs: int, seed: int, augment: bool, channels_last: bool = False) -> dict[str, Any]:
    """samprompt's ``train_classifier``; returns seconds per epoch."""
    aug = AugmentConfig() if augment else AugmentConfig(rotation=0.0, scale=(1.0, 1.0), translate=0.0,
                                                        brightness=0.0, contrast=0.0)
    cfg = TrainConfig(arch=arch, epochs=epochs, batch_size=batch, device="cpu", seed=seed, patience=None,
                      preprocessing=Preprocessing(input_size=size), augmentation=aug, class_weights=None, channels_last=channels_last)
    task = TaskSpec(class_names=("a", "b"))
    res = train_classifier(list(zip(images, labels, strict=True)), None, task=task, config=cfg)
    return {"epoch_seconds": [h.seconds for h in res.history]}


def _rate(r: dict[str, Any], n: int) -> float:
    rest = r["epoch_seconds"][1:]
    return n * len(rest) / sum(rest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--input-size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=1, help="repeat all runs, interleaved; medians reported")
    ap.add_argument("--only", choices=["plain", "samprompt", "samprompt_aug", "samprompt_cl", "samprompt_aug_cl"],
                    action="append", help="runs, in order (repeatable; default: all)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    if a.epochs < 2:
        ap.error("--epochs must be >= 2 (the first epoch is reported apart)")
    images = _images(a.images, a.seed)
    labels = [i % 2 for i in range(a.images)]
    load_before = os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {}
    default = ["plain", "samprompt", "samprompt_aug", "samprompt_cl", "samprompt_aug_cl"]
    for _ in range(a.rounds):
        for name in a.only or default:
            if name == "plain":
                r = plain_loop(images, labels, a.arch, a.input_size, a.batch, a.epochs, a.seed)
            else:
                r = samprompt_loop(images, labels, a.arch, a.input_size, a.batch, a.epochs, a.seed,
                                   augment="aug" in name, channels_last=name.endswith("_cl"))
            r["images_per_s"] = _rate(r, a.images)
            runs.setdefault(name, []).append(r)
            print(f"{name:16s} first epoch {r['epoch_seconds'][0]:6.2f}s   "
                  f"{r['images_per_s']:6.1f} images/s after it   load {os.getloadavg()[0]:.2f}", flush=True)
    median = {k: float(np.median([r["images_per_s"] for r in v])) for k, v in runs.items()}
    for k, v in median.items():
        print(f"median {k:16s} {v:6.1f} images/s ({v / median.get('plain', v):.2f} x plain)")
    result = {
        "arch": a.arch, "input_size": a.input_size, "batch": a.batch, "images": a.images, "epochs": a.epochs,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "machine": platform.platform(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "rounds": a.rounds, "median_images_per_s": median, "runs": runs,
    }
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
