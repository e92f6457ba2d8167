"""Which learner picks the lesion? First-stage regions of a run, scored on val (issue 15, "Class contrast").

Usage::

    python benchmarks/quality_learners.py RUN_FOLDER POLARITY OUT [--per-class 30,60,100 --draws 3]

``RUN_FOLDER`` is a finished run (its ``config.json``, ``split.json`` and ``classifier.pt`` are read; the
classifier only gives the CAM evidence of the evidence rows). The first-stage regions of the train and val
images in ``POLARITY`` (``dark`` or ``bright``) are made once (kept in ``OUT``). Then each learner is fit on
the train images from their image labels, and its top-scored region on each val lesion image is compared
with the ground-truth box (val masks are read here: this is a benchmark). Printed and written to
``OUT/learners.json``: box IoU and whether the box centre lies in the lesion, for

* the regions' best possible box (upper bound) and ``busi-v1``'s first stage (reference);
* the CAM evidence's top region and the evidence learner (the run's classifier);
* MIL (when the train split has ``normal`` images);
* class contrast of the lesion classes, and of every class (``normal`` included), at each L2 penalty of
  the fit and at the one the fit chooses (held-out class likelihood).

With ``--per-class``, class contrast of the lesion classes is also fit on ``n`` train images per class
(``--draws`` seeded draws), with the polarity chosen between ``dark`` and ``bright`` as the fit does (the
other polarity's regions are made too).

With ``--with-negative 10,20,...`` (data with a ``normal`` class), multiple-instance learning and class
contrast of every class (``normal`` included) are fit on the same ``n`` train images per class (``--draws``
seeded draws), each choosing the polarity between ``dark`` and ``bright`` by its own held-out score (MIL
without the fit's "both polarities when uncertain" step); each is judged in the polarity it chose (the
val regions of both polarities are made). This is the table behind ``fit.contrast_min_images`` (docs:
quality, "Class contrast by default"). With ``--merge-lesions`` every class but ``normal`` is one
``lesion`` class (data with one lesion class and a negative class).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _regions(run: Path, part: str, polarity: str, out: Path) -> dict[str, Any]:
    """``{"ids", "regions", "gt"}``: pass-1 regions (with CAM evidence) of a split part, cached in ``out``."""
    cache = out / f"regions_{part}_{polarity}.pkl"
    if cache.exists():
        with cache.open("rb") as f:
            got: dict[str, Any] = pickle.load(f)
        return got
    import samprompt.proposals.fit as fitmod
    from samprompt.classifiers import load_classifier
    from samprompt.data import Split, open_dataset
    from samprompt.regions import mask_to_box
    from samprompt.runner import load_run_config
    from samprompt.runner.fitting import LabelsOnly, classifier_evidence

    cfg = load_run_config(json.loads((run / "config.json").read_text()))
    ds = open_dataset(cfg.data.path)
    split = Split.load(run / "split.json", ds)
    model, info = load_classifier(run / "classifier.pt")
    ids = list(split.ids(part))
    gt = {}
    if part != "train":
        keep = []
        for sid in ids:
            m = ds.load_mask(sid)
            if m is not None and m.any():
                keep.append(sid)
                gt[sid] = (mask_to_box(m), m)
        ids = keep
    cams, score = classifier_evidence(model, info.class_names, info.preprocessing, info.target_layer,
                                      cam=cfg.pipeline.cam, target=cfg.target_classes(info.class_names) or "predicted")
    got = {}

    class Stop(Exception):
        pass

    def capture(regions: Any, *_: Any) -> Any:
        got["regions"] = list(regions)
        raise Stop

    real = fitmod._fit_stage
    fitmod._fit_stage = capture  # type: ignore[assignment]
    try:  # every image as a lesion image: the evidence path makes the regions of one polarity with evidence
        fitmod.fit_scorer(LabelsOnly(ds, ids), [True] * len(ids), cams=cams, score=score, polarity=polarity)
    except Stop:
        pass
    finally:
        fitmod._fit_stage = real  # type: ignore[assignment]
    res = {"ids": ids, "regions": got["regions"], "gt": gt}
    out.mkdir(parents=True, exist_ok=True)
    with cache.open("wb") as f:
        pickle.dump(res, f)
    return res


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("polarity", choices=["dark", "bright"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--per-class", default="", help="e.g. 30,60,100: class contrast on n train images per class")
    ap.add_argument("--with-negative", default="", help="e.g. 10,20,30: MIL against class contrast of every "
                    "class on n train images per class, normal included")
    ap.add_argument("--merge-lesions", action="store_true", help="with --with-negative: every class but normal "
                    "as one lesion class")
    ap.add_argument("--draws", type=int, default=3)
    args = ap.parse_args(argv)

    from samprompt.proposals._fit_models import (
        CONTRAST_L2,
        _contrast,
        _instances,
        _mil,
        _polarity_score,
        _pseudo_labels,
    )
    from samprompt.proposals.scorer import load_scorer
    from samprompt.regions import box_iou

    tr = _regions(args.run, "train", args.polarity, args.out)
    va = _regions(args.run, "val", args.polarity, args.out)
    cls_name = [sid.split("/")[0] for sid in tr["ids"]]  # folder-per-class data (BUSI): the class is the folder
    ok = [k for k, r in enumerate(tr["regions"]) if r is not None]

    def judge(pick: Callable[[Any], int]) -> dict[str, float]:
        ious, inside = [], []
        for sid, r in zip(va["ids"], va["regions"]):
            gbox, m = va["gt"][sid]
            if r is None:
                ious.append(0.0)
                inside.append(0.0)
                continue
            b = r.boxes[pick(r)]
            ious.append(float(box_iou(b, gbox)))
            cx = int(np.clip((b[0] + b[2]) / 2, 0, m.shape[1] - 1))
            cy = int(np.clip((b[1] + b[3]) / 2, 0, m.shape[0] - 1))
            inside.append(float(m[cy, cx]))
        return {"box_iou": float(np.mean(ious)), "centre_inside": float(np.mean(inside))}

    rows: dict[str, dict[str, float]] = {}

    def add(name: str, row: dict[str, float]) -> None:
        rows[name] = row
        print(f"{name:60s} val box IoU {row['box_iou']:.3f}, centre inside {100 * row['centre_inside']:.0f} %",
              flush=True)

    ious = [0.0 if r is None else max(float(box_iou(b, va["gt"][s][0])) for b in r.boxes)
            for s, r in zip(va["ids"], va["regions"])]
    add("best possible region (upper bound)", {"box_iou": float(np.mean(ious)), "centre_inside": float("nan")})
    b1 = load_scorer("busi-v1").stage1
    add("busi-v1 stage 1", judge(lambda r: int(np.argmax(b1(r.F)))))
    add("CAM evidence, top region", judge(lambda r: int(np.argmax(r.evidence))))
    X, t = _pseudo_labels([tr["regions"][k] for k in ok])
    ev = _instances(X, t, 1e-2)
    add("evidence learner", judge(lambda r: int(np.argmax(ev(r.F)))))
    normal = np.array([cls_name[k] == "normal" for k in ok])
    if normal.any():
        mil = _mil([tr["regions"][k].F for k in ok], ~normal, 1e-2)
        add("MIL (lesion images against normal)", judge(lambda r: int(np.argmax(mil(r.F)))))
    for which, keep in (("lesion classes", [k for k in ok if cls_name[k] != "normal"]),
                        ("every class", ok if normal.any() else [])):
        names = sorted({cls_name[k] for k in keep})
        if len(names) < 2:
            continue
        cls = np.array([names.index(cls_name[k]) for k in keep])
        regs = [tr["regions"][k] for k in keep]
        for l2 in CONTRAST_L2:
            sc = _contrast([r.F for r in regs], cls, l2).scorer()
            add(f"class contrast, {which}, L2 {l2}", judge(lambda r, sc=sc: int(np.argmax(sc(r.F)))))
        _, _, chosen = _polarity_score(regs, np.ones(len(regs), bool), 1e-2, "contrast", cls)
        sc = _contrast([r.F for r in regs], cls, chosen).scorer()
        add(f"class contrast, {which}, L2 chosen ({chosen})", judge(lambda r, sc=sc: int(np.argmax(sc(r.F)))))

    sweep = []
    if args.per_class:
        other = _regions(args.run, "train", "dark" if args.polarity == "bright" else "bright", args.out)
        lesion_names = sorted({c for c in cls_name if c != "normal"})
        all_cls = np.array([lesion_names.index(c) if c in lesion_names else -1 for c in cls_name])
        for n in (int(v) for v in args.per_class.split(",")):
            for draw in range(args.draws):
                rng = np.random.default_rng(draw)
                idx = np.concatenate([rng.choice(np.flatnonzero(all_cls == c), min(n, int((all_cls == c).sum())),
                                                 replace=False) for c in range(len(lesion_names))])
                cls = all_cls[idx]
                yes = np.ones(len(idx), bool)
                s_here, _, l2_here = _polarity_score([tr["regions"][k] for k in idx], yes, 1e-2, "contrast", cls)
                s_other, _, _ = _polarity_score([other["regions"][k] for k in idx], yes, 1e-2, "contrast", cls)
                sc = _contrast([tr["regions"][k].F for k in idx], cls, l2_here).scorer()
                row = {"per_class": n, "draw": draw, "polarity_right": bool(s_here > s_other), "l2": l2_here,
                       **judge(lambda r, sc=sc: int(np.argmax(sc(r.F))))}
                sweep.append(row)
                print(f"{n} per class, draw {draw}: polarity {'right' if row['polarity_right'] else 'WRONG'}, "
                      f"L2 {l2_here}, box IoU in the right polarity {row['box_iou']:.3f}", flush=True)
    negsweep = []
    if args.with_negative:
        other_pol = "dark" if args.polarity == "bright" else "bright"
        regs_of = {args.polarity: tr, other_pol: _regions(args.run, "train", other_pol, args.out)}
        val_of = {args.polarity: va, other_pol: _regions(args.run, "val", other_pol, args.out)}
        names_all = np.array(["lesion" if c != "normal" and args.merge_lesions else c for c in cls_name])
        for n in (int(v) for v in args.with_negative.split(",")):
            for draw in range(args.draws):
                rng = np.random.default_rng(draw)
                idx = np.concatenate([rng.choice(np.flatnonzero(names_all == c), min(n, int((names_all == c).sum())),
                                                 replace=False) for c in sorted(set(names_all.tolist()))])
                y = names_all[idx] != "normal"
                codes = np.unique(names_all[idx], return_inverse=True)[1]
                row2: dict[str, Any] = {"per_class": n, "draw": draw}
                for mode in ("mil", "contrast"):
                    got = {p: _polarity_score([regs_of[p]["regions"][k] for k in idx], y, 1e-2, mode, codes)
                           for p in regs_of}
                    pol = max(got, key=lambda p: got[p][0])
                    regs = [regs_of[pol]["regions"][k] for k in idx]
                    keep = [i for i, r in enumerate(regs) if r is not None]
                    if mode == "mil":
                        sc = _mil([regs[i].F for i in keep], y[keep], got[pol][2])
                    else:
                        sc = _contrast([regs[i].F for i in keep], np.unique(codes[keep], return_inverse=True)[1],
                                       got[pol][2]).scorer()
                    va_pol = val_of[pol]
                    ious_n = [0.0 if r is None else
                              float(box_iou(r.boxes[int(np.argmax(sc(r.F)))], va_pol["gt"][sid][0]))
                              for sid, r in zip(va_pol["ids"], va_pol["regions"])]
                    row2[mode] = {"polarity": pol, "box_iou": float(np.mean(ious_n))}
                negsweep.append(row2)
                print(f"{n} per class with normal, draw {draw}: MIL {row2['mil']['polarity']} "
                      f"{row2['mil']['box_iou']:.3f}, contrast {row2['contrast']['polarity']} "
                      f"{row2['contrast']['box_iou']:.3f}", flush=True)
    (args.out / "learners.json").write_text(json.dumps({"rows": rows, "per_class": sweep, "with_negative": negsweep},
                                                       indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
