"""Benchmark: does a training recipe make the classifier's CAM find the lesion? (issue 19 ablation)

For each variant (a set of :class:`~samprompt.classifiers.TrainConfig` fields on top of the common
settings) a classifier is trained from scratch on the split's TRAIN part (best epoch by VAL macro-F1) and
scored on VAL (or, with ``--eval-split test``, on TEST — do that once, for the chosen variant):

* ``macro_f1`` of the classifier;
* on lesion images (a non-empty mask), GradCAM of layer4 for the SUM of the lesion classes (every class
  but ``--negative``): ``peak_inside`` = share of images whose CAM maximum lies in the lesion mask;
  ``box_iou`` = mean IoU of the bounding box of the largest component of ``CAM >= 0.5`` with the mask's
  bounding box; ``centre_inside`` = share of those boxes whose centre lies in the lesion.

The end-to-end Dice of the paper's prompt strategies with a segmenter is NOT computed here (use
``samprompt run`` with the checkpoint for that).

Example (BUSI, 2 CPU cores, small settings)::

    PYTHONPATH=src python benchmarks/cam_recipe.py --data /work/shared/data/BUSI/Dataset_BUSI_with_GT \\
        --out runs/cam_recipe --input-size 96 --epochs 4 \\
        --variant plain='{}' --variant localise='{"recipe": "localise"}'
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from samprompt.cams import CAM_EXTRACTORS
from samprompt.classifiers import (
    TaskSpec,
    TrainConfig,
    evaluate_classifier,
    examples_from_dataset,
    train_classifier,
)
from samprompt.preprocess import Preprocessing


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    return None if len(xs) == 0 else (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def cam_scores(model: torch.nn.Module, pre: Preprocessing, ds: Any, ids: list[str],
               lesion_classes: tuple[int, ...]) -> dict[str, float]:
    """CAM localisation scores on the lesion images among ``ids``."""
    cam = CAM_EXTRACTORS.create("gradcam", {"target_layer": "layer4"})
    peak, ious, centre, n = 0, [], 0, 0
    for sid in ids:
        mask = ds.load_mask(sid)
        if mask is None or not mask.any():
            continue
        img = ds.load_image(sid)
        c = cam(model, [img], preprocessing=pre, targets=lesion_classes)[0].cam
        n += 1
        py, px = np.unravel_index(int(np.argmax(c)), c.shape)
        peak += int(mask[py, px])
        lab, k = ndimage.label(c >= 0.5)
        if k == 0:
            ious.append(0.0)
            continue
        sizes = ndimage.sum(np.ones_like(c), lab, index=range(1, k + 1))
        comp = lab == (int(np.argmax(sizes)) + 1)
        b, g = _box(comp), _box(mask)
        if b is None or g is None:
            continue
        ious.append(_iou(b, g))
        cy, cx = (b[1] + b[3]) // 2, (b[0] + b[2]) // 2
        centre += int(mask[min(cy, mask.shape[0] - 1), min(cx, mask.shape[1] - 1)])
    return {"lesion_images": n, "peak_inside": peak / max(n, 1), "box_iou": float(np.mean(ious)) if ious else 0.0,
            "centre_inside": centre / max(n, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", type=Path, default=None, help="split JSON (default: make a leak-free one)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--input-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--negative", default="normal", help="the class without lesions")
    ap.add_argument("--eval-split", choices=["val", "test"], default="val")
    ap.add_argument("--variant", action="append", required=True, help="NAME=JSON of TrainConfig fields")
    a = ap.parse_args()
    from samprompt.data.readers import open_dataset
    from samprompt.data.splits import Split, make_split

    ds = open_dataset(a.data)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.split is None:
        sp = make_split(ds, seed=a.seed)
        sp.save(a.out / "split.json")
    else:
        sp = Split.load(a.split, ds)
    classes = tuple(sorted({ds[i].label for i in range(len(ds))}))
    task = TaskSpec(class_names=classes)
    lesion = tuple(i for i, c in enumerate(classes) if c != a.negative)
    train, val = examples_from_dataset(ds, list(sp.train)), examples_from_dataset(ds, list(sp.val))
    ids = list(sp.val if a.eval_split == "val" else sp.test)
    rows: dict[str, Any] = {}
    for spec in a.variant:
        name, _, js = spec.partition("=")
        cfg = TrainConfig.parse({"arch": a.arch, "epochs": a.epochs, "batch_size": a.batch, "seed": a.seed,
                                 "device": "cpu", "preprocessing": {"input_size": a.input_size},
                                 **json.loads(js or "{}")})
        t = time.perf_counter()
        res = train_classifier(train, val, task=task, config=cfg, checkpoint=a.out / f"{name}.pt")
        secs = time.perf_counter() - t
        rep = evaluate_classifier(res.model, res.info, examples_from_dataset(ds, ids))
        row = {"config": json.loads(js or "{}"), "train_seconds": secs, "best_epoch": res.best_epoch,
               "macro_f1": rep.macro_f1, **cam_scores(res.model, res.info.preprocessing, ds, ids, lesion)}
        rows[name] = row
        print(name, json.dumps(row), flush=True)
        (a.out / "cam_recipe.json").write_text(json.dumps({"eval_split": a.eval_split, "arch": a.arch,
                                                           "input_size": a.input_size, "epochs": a.epochs,
                                                           "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
