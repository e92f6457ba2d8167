"""Can label-only proposals teach a classifier's CAM where the lesion is? (issue 19; the probe that led to
the library's ``guide_weight`` knob, which differs from it: see docs/quality.md, "CAM guidance").

Usage::

    python benchmarks/cam_distill.py DATA SPLIT SCORER OUT [--weights 0,1] [--epochs 6] [--size 128] [--stride 32]

``SCORER`` is a scorer file fit from IMAGE LABELS only (e.g. a run's ``scorer.json``, fit on the train
part of ``SPLIT``). Its chosen region on each train lesion image is a pseudo mask. A ResNet18 is
trained from scratch on the train part, once per ``--weights`` value ``w``, with the loss
``cross-entropy + w * (1 - share of the label's CAM on the pseudo mask)`` (the CAM of the head's weights
on ``layer4``, as the CAM-border term reads it; lesion images only). Augmentation: horizontal flips (the
pseudo mask flipped with the image). Then, on the VAL lesion images (``--part test``: the test ones; their
masks are read here: this is a benchmark), the paper's box prompt on GradCAM++ ``layer4`` of the lesion classes is scored with the
``classical`` segmenter: box IoU against the ground-truth box, centre point inside, Dice; and the
classifier's val macro-F1. Prints one line per weight and writes ``OUT/cam_distill_<settings>.json``; the
pseudo masks are kept in ``OUT`` and reused.

The pseudo masks come from the proposals, so a CAM taught by them can at best learn what the proposals
already know; the question is whether the classifier then localises on its own, where the proposals fail.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray


def _pseudo_masks(ds: Any, ids: Sequence[str], lesion: Sequence[bool], scorer: Path, size: int
                  ) -> list[NDArray[np.float32] | None]:
    """Per train image, the scorer's chosen region resized to the network input (None: negative image)."""
    from skimage.transform import resize

    from samprompt.proposals.select import selector_from_scorer

    sel = selector_from_scorer(str(scorer))
    out: list[NDArray[np.float32] | None] = []
    for sid, les in zip(ids, lesion):
        if not les:
            out.append(None)
            continue
        region, _ = sel.choose(ds.load_image(sid), None)
        out.append(None if region is None else
                   resize(region.astype(np.float32), (size, size), order=1, anti_aliasing=True).astype(np.float32))
    return out


def _train(xs: torch.Tensor, ys: torch.Tensor, ms: torch.Tensor, has: torch.Tensor, weight: float, epochs: int,
           seed: int, stride: int) -> torch.nn.Module:
    from samprompt.classifiers.builders import build_classifier
    from samprompt.classifiers.recipes import adapt_architecture

    torch.manual_seed(seed)
    model = adapt_architecture(build_classifier("resnet18", int(ys.max()) + 1), stride, "avg")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    counts = torch.bincount(ys).float()
    ce = torch.nn.CrossEntropyLoss(weight=counts.sum() / (len(counts) * counts))
    acts: list[torch.Tensor] = []
    model.layer4.register_forward_hook(lambda _m, _i, o: acts.append(o))
    g = torch.Generator().manual_seed(seed)
    steps = epochs * ((len(xs) + 31) // 32)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(xs), generator=g)
        for s in range(0, len(xs), 32):
            idx = order[s:s + 32]
            x, y, m, h = xs[idx].clone(), ys[idx], ms[idx].clone(), has[idx]
            flip = torch.rand(len(idx), generator=g) < 0.5
            x[flip], m[flip] = x[flip].flip(-1), m[flip].flip(-1)
            acts.clear()
            logits = model(x)
            loss = ce(logits, y)
            if weight > 0 and bool(h.any()):
                cam = F.relu(torch.einsum("bk,bkhw->bhw", model.fc.weight[y], acts[-1]))
                target = F.adaptive_avg_pool2d(m[:, None], cam.shape[-2:])[:, 0]
                share = (cam * target).sum((1, 2)) / (cam.sum((1, 2)) + 1e-6)
                loss = loss + weight * (1 - share[h]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def _score(pipe: Any, images: Sequence[NDArray[np.uint8]], cams: Sequence[NDArray[np.float32]],
           gts: Sequence[NDArray[np.bool_]]) -> tuple[list[float], list[float], list[float]]:
    """Per image: the box prompt's box IoU with the ground-truth box and its mask's Dice; whether the
    centre point lies in the lesion."""
    from samprompt.regions import box_iou, mask_to_box

    ious, dices, inside = [], [], []
    for s in range(0, len(images), 16):
        for r, m in zip(pipe.run_batch(list(images[s:s + 16]), cams=list(cams[s:s + 16])), gts[s:s + 16]):
            box = r.strategies["box"]
            ious.append(0.0 if box.prompt is None or box.prompt.box is None else
                        float(box_iou(box.prompt.box, mask_to_box(m))))
            dices.append(float(2 * np.count_nonzero(box.mask & m) / (box.mask.sum() + m.sum())))
            pt = r.strategies["center_point"].prompt
            if pt is None or not len(pt.points):
                inside.append(0.0)
                continue
            x, y = (int(np.clip(v, 0, n - 1)) for v, n in zip(pt.points[0], (m.shape[1], m.shape[0])))
            inside.append(float(m[y, x]))
    return ious, dices, inside


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("split", type=Path)
    ap.add_argument("scorer", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--weights", default="0,1")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stride", type=int, default=32, help="output stride (32, 16 or 8: dilated last stages)")
    ap.add_argument("--part", default="val", choices=["val", "test"], help="the split part scored (val)")
    args = ap.parse_args(argv)
    from samprompt.classifiers.evaluate import classification_report
    from samprompt.config import ComponentSpec, PipelineConfig
    from samprompt.data import Split, open_dataset
    from samprompt.pipeline import PromptPipeline
    from samprompt.preprocess import Preprocessing

    ds = open_dataset(args.data)
    split = Split.load(args.split, ds)
    names = sorted({ds[i].label for i in range(len(ds))})
    label = {str(ds[i].id): ds[i].label for i in range(len(ds))}
    pre = Preprocessing(input_size=args.size)
    t0 = time.perf_counter()
    train = list(split.ids("train"))
    lesion = [label[s] != "normal" for s in train]
    cache = args.out / f"pseudo_masks_{args.size}.npz"  # reused when the same OUT is given again
    if cache.exists():
        got = np.load(cache)
        masks = [got[s] if s in got.files else None for s in train]
    else:
        masks = _pseudo_masks(ds, train, lesion, args.scorer, args.size)
        args.out.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, **{s: m for s, m in zip(train, masks) if m is not None})
    print(f"pseudo masks of {sum(lesion)} train lesion images: {time.perf_counter() - t0:.0f} s", flush=True)
    xs = torch.stack([pre.to_tensor(ds.load_image(s))[0] for s in train])
    ys = torch.tensor([names.index(label[s]) for s in train])
    ms = torch.stack([torch.zeros(args.size, args.size) if m is None else torch.from_numpy(m) for m in masks])
    has = torch.tensor([m is not None and bool(m.any()) for m in masks])

    val = list(split.ids(args.part))
    vx = torch.stack([pre.to_tensor(ds.load_image(s))[0] for s in val])
    vy = np.array([names.index(label[s]) for s in val])
    les_val = [s for s in val if label[s] != "normal"]
    images = [ds.load_image(s) for s in les_val]
    gts = [ds.load_mask(s) for s in les_val]
    target = tuple(k for k, n in enumerate(names) if n != "normal")
    cfg = PipelineConfig(cam=ComponentSpec(name="gradcampp", params={"target_layer": "layer4"}),
                         prompts=[ComponentSpec(name="box", params={"margin": 5}), ComponentSpec(name="center_point")],
                         segmenter=ComponentSpec(name="classical", params={"polarity": "auto"}))
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": []}
    for w in (float(v) for v in args.weights.split(",")):
        t = time.perf_counter()
        model = _train(xs, ys, ms, has, w, args.epochs, args.seed, args.stride)
        secs = time.perf_counter() - t
        with torch.no_grad():
            pred = torch.cat([model(vx[s:s + 64]) for s in range(0, len(vx), 64)]).argmax(1).numpy()
        f1 = classification_report(vy, pred, names).macro_f1
        pipe = PromptPipeline.from_config(cfg, classifier=model, class_names=names, preprocessing=pre,
                                          target_layer="layer4", device="cpu")
        cams = []
        for s in range(0, len(images), 16):
            cams += [r.cam for r in pipe.compute_cams(images[s:s + 16], [target] * len(images[s:s + 16]))]
        ious, dices, inside = _score(pipe, images, cams, gts)
        row = {"weight": w, "train_seconds": secs, "macro_f1": f1, "box_iou": float(np.mean(ious)),
               "box_dice": float(np.mean(dices)), "centre_inside": float(np.mean(inside))}
        results["rows"].append(row)
        print(f"weight {w}: {args.part} macro-F1 {f1:.3f}, paper box IoU {row['box_iou']:.3f}, box Dice "
              f"{row['box_dice']:.3f}, centre point inside {row['centre_inside']:.2f} ({len(images)} {args.part} "
              f"lesion images; training {secs:.0f} s)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    name = (f"cam_distill_{args.part}_s{args.stride}_e{args.epochs}_px{args.size}_seed{args.seed}"
            f"_w{args.weights.replace(',', '-')}.json")
    (args.out / name).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
