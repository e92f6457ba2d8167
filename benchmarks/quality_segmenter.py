"""Weight-free segmenter given ground-truth prompts, on BUSI lesion images (samprompt split, seed 0).

    .venv/bin/python benchmarks/quality_segmenter.py --split test            # report (test)
    .venv/bin/python benchmarks/quality_segmenter.py --split train --grid    # parameter search (train)

For every lesion image of the split: the box of the ground-truth mask (tight, pixel edges) and one
inside point (distance-transform peak of the mask) are prompts; Dice per class for the ellipse inscribed
in the box ("box prior"), the old random-walker segmenter, and the polar segmenter. Writes
``$QUALITY_CACHE/segmenter_<split>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from quality_common import CACHE, lesions, load_records

from samprompt.metrics import dice, summarize
from samprompt.prompts.base import Prompt
from samprompt.prompts.builtin import inside_point
from samprompt.regions import ellipse_in_box, mask_to_box
from samprompt.segmenters.classical import ClassicalSegmenter


def run(recs, method, kind="box"):
    out = {"benign": [], "malignant": []}
    t = 0.0
    for r in recs:
        m = r["mask"]
        box = mask_to_box(m)
        if method == "ellipse":
            pred = ellipse_in_box(box, *m.shape)
        else:
            emb = method.embed(r["grey"])
            prompt = Prompt(box=box) if kind == "box" else Prompt(points=inside_point(m)[None], point_labels=[1])
            t0 = time.perf_counter()
            pred = method.decode(emb, [prompt]).masks[0]
            t += time.perf_counter() - t0
        out[r["label"]].append(dice(pred, m))
    return {k: summarize(v).to_dict() for k, v in out.items()}, 1000 * t / len(recs)


def fmt(res):
    d, ms = res
    return " ".join(f"{k} {v['mean']:.4f} [{v['ci_low']:.3f},{v['ci_high']:.3f}] n={v['n']}" for k, v in d.items()) + f"  {ms:.1f} ms/prompt"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--grid", action="store_true", help="search polar weights (use on train/val only)")
    ap.add_argument("--limit", type=int, default=0, help="random subset of this many images (0 = all)")
    args = ap.parse_args()
    recs = lesions(load_records(), args.split)
    if args.limit:
        rng = np.random.default_rng(1)
        recs = [recs[i] for i in sorted(rng.choice(len(recs), args.limit, replace=False))]
    results = {}
    if args.grid:
        if args.split == "test":
            raise SystemExit("no parameter search on the test split")
        grid = [(1.0, 1.0, 0.3, 0.3), (0.5, 1.0, 0.3, 0.15), (0.5, 1.0, 0.3, 0.3), (1.0, 1.0, 0.3, 0.15),
                (1.0, 2.0, 0.3, 0.3), (0.5, 0.5, 0.3, 0.15), (1.0, 1.0, 0.6, 0.3), (2.0, 1.0, 0.3, 0.3)]
        for wp, we, wr, ws in grid:
            seg = ClassicalSegmenter(w_prior=wp, w_edge=we, w_region=wr, w_smooth=ws)
            res = run(recs, seg)
            results[f"polar wp={wp} we={we} wr={wr} ws={ws}"] = res
            print(f"wp={wp} we={we} wr={wr} ws={ws}", fmt(res), flush=True)
    else:
        rows = {
            "box prior (ellipse in GT box)": ("ellipse", "box"),
            "classical random_walker (old default), GT box": (ClassicalSegmenter(method="random_walker"), "box"),
            "classical polar (new default), GT box": (ClassicalSegmenter(), "box"),
            "classical polar, no stretch, GT box": (ClassicalSegmenter(stretch_to_box=False), "box"),
            "classical polar, 1 GT inside point": (ClassicalSegmenter(), "point"),
            "classical random_walker, 1 GT inside point": (ClassicalSegmenter(method="random_walker"), "point"),
        }
        for name, (seg, kind) in rows.items():
            res = run(recs, seg, kind)
            results[name] = res
            print(f"{name:50s}", fmt(res), flush=True)
    out = CACHE / f"segmenter_{args.split}{'_grid' if args.grid else ''}.json"
    out.write_text(json.dumps(results, indent=1))
    print("saved", out)


if __name__ == "__main__":
    main()
