"""Benchmark: how far the image-guided CAM refinement moves a run's CAM box (issue 19; a screen, VAL only).

Reads a finished ``samprompt run`` folder's saved CAMs (``cams/<stem>.png``, 8-bit, on each image's pixel
grid) and, for every lesion image of the run (an image with a mask), thresholds the CAM — as saved and
after :func:`samprompt.cams.refine.guided_filter` at each radius / eps — at 0.05, 0.10, ..., 0.95, keeps the
largest component and compares its bounding box with the mask's (box IoU, pixel edges, no margin). It
prints and saves, per variant, the mean box IoU at each threshold and at the best one.

The best threshold is chosen WITH the masks, so its figure is a ceiling for the refinement, not what a run
gets (a run fits its threshold without masks: ``pipeline.masker.params.value: fit``). Use it on a VAL run
folder to choose a radius, then run the run end to end.

Example::

    PYTHONPATH=src python benchmarks/cam_refine_screen.py runs/guided_val \\
        ../shared/data/BUSI/Dataset_BUSI_with_GT --out benchmarks/results/cam_refine_screen.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from samprompt.cams.refine import guided_filter
from samprompt.data.readers import open_dataset
from samprompt.regions import box_iou, mask_to_box

GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)


def _largest_box(cam: np.ndarray, t: float) -> np.ndarray | None:
    m = cam >= t
    lab, n = ndi.label(m)
    if n == 0:
        return None
    k = 1 + int(np.argmax(ndi.sum(m, lab, range(1, n + 1))))
    return mask_to_box(lab == k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a finished samprompt run folder (cams/, names.json)")
    ap.add_argument("data", type=Path, help="the run's data set (for the images and the masks)")
    ap.add_argument("--radius", type=float, nargs="+", default=[0.02, 0.04, 0.06, 0.08, 0.12, 0.16, 0.24])
    ap.add_argument("--eps", type=float, nargs="+", default=[1e-4, 1e-3])
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the figures")
    args = ap.parse_args()

    ds = open_dataset(args.data)
    names: dict[str, str] = json.loads((args.run / "names.json").read_text())
    variants: dict[str, tuple[float, float] | None] = {"none": None}
    variants.update({f"guided r={r} eps={e}": (r, e) for r in args.radius for e in args.eps})
    ious = {k: [] for k in variants}  # per image: box IoU at each grid threshold
    seconds = {k: 0.0 for k in variants}
    used = 0
    for image_id, stem in names.items():
        mask = ds.load_mask(image_id)
        if mask is None or not mask.any() or not (args.run / "cams" / f"{stem}.png").exists():
            continue
        used += 1
        gt = mask_to_box(mask)
        cam = np.asarray(Image.open(args.run / "cams" / f"{stem}.png"), np.float32) / 255.0
        image = ds.load_image(image_id)
        for name, setting in variants.items():
            t0 = time.perf_counter()
            c = cam if setting is None else guided_filter(cam, image, *setting)
            seconds[name] += time.perf_counter() - t0
            row = []
            for t in GRID:
                b = _largest_box(c, float(t))
                row.append(0.0 if b is None or gt is None else float(box_iou(b, gt)))
            ious[name].append(row)
    result = {"run": str(args.run), "images": used, "grid": GRID.tolist(), "variants": {}}
    print(f"{args.run}: {used} lesion images")
    for name, rows in ious.items():
        mean = np.mean(rows, axis=0)
        j = int(np.argmax(mean))
        result["variants"][name] = {"mean_box_iou": mean.round(4).tolist(), "best_threshold": float(GRID[j]),
                                    "best_box_iou": round(float(mean[j]), 4),
                                    "ms_per_image": round(1000 * seconds[name] / max(used, 1), 1)}
        print(f"{name:24s} best threshold {GRID[j]:.2f}: box IoU {mean[j]:.3f}   "
              f"({1000 * seconds[name] / max(used, 1):.1f} ms an image)")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
