"""Does the CAM count? Issue 15, item 4, on a finished label-fit run (BUSI).

Usage::

    python benchmarks/quality_cam_counts.py RUN_FOLDER [--out benchmarks/results/cam_counts_busi.json]
        [--sigma 0.05] [--seed 0] [--scratch /tmp/camcount_busi] [--limit-train N] [--limit-test N]

``RUN_FOLDER`` is a finished run with ``scorer: fit`` (``config.json``, ``split.json``, ``classifier.pt``,
``scorer.json``); it is only read. Everything is measured on the run's TEST lesion images (label not
``normal``, non-empty mask) with the ``candidates`` strategy (``output: box``) decoded by the weight-free
``classical`` segmenter with default parameters, as the run did:

(i) **a CAM that localises.** A stand-in for a perfect classifier: each image's ground-truth lesion mask
    blurred (Gaussian, sigma = ``--sigma`` x the image's shorter side) and scaled to a maximum of 1; a
    ``normal`` image's (empty) mask blurs to an all-zero map (``--normal-cam zero``, default), or a normal
    train image borrows the stand-in CAM of a random lesion train image (``--normal-cam borrowed``: a
    classifier whose per-image normalised CAM fires somewhere on every image). A scorer is fitted on the run's TRAIN split
    with these maps as the ``cams`` evidence (:func:`samprompt.proposals.fit.fit_scorer`, image labels,
    ``normal`` = the negative class: multiple-instance learning, which fits the CAM features when CAMs are
    given) and applied to the test lesion images with their stand-in CAMs. THE STAND-IN READS MASKS: it is
    a benchmark device only, never a shipped fit.
(ii) **the run's own CAM, shuffled.** The run's classifier and CAM method / target (``config.json``) give
    the real CAMs; the same images are then run with the CAMs permuted across images (a seeded
    derangement, each CAM resized to its new image's size), with the run's fitted ``scorer.json`` and with
    the shipped ``busi-v1``; and the fitted scorer with the flip-averaged real CAM (a test-time flip;
    fits before the stage-2 CAM features computed their CAM features on that map, fits since then on
    the CAM the strategy is handed). The stand-in scorer is also run with shuffled stand-in CAMs (a control).

Reported per condition: Dice (mean, 95 % bootstrap interval over images), box IoU of the prompt box with
the ground-truth box, how often the prompt box's centre falls on the lesion, the median ratio of the
prompt box's area to the ground-truth box's; paired differences (real minus
shuffled) with bootstrap intervals; each fit's stage-1 CAM-feature weights (standardised features) and
``cam_weight_norm``; and the ground-truth-box figure (the ``box`` strategy, margin 5 px, on the mask).
The real-CAM rows must reproduce the run's ``metrics.csv`` (checked image by image and printed).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi
from skimage.transform import resize

CAM_NAMES = ("cam_mean", "cam_max", "cam_mass", "cam_rank")


def standin_cam(mask: NDArray[np.bool_] | None, shape: tuple[int, int], sigma_frac: float) -> NDArray[np.float32]:
    """(H, W) float32 in [0, 1]: ``mask`` blurred (sigma = ``sigma_frac`` x shorter side), max scaled to 1;
    an empty / missing mask gives zeros."""
    if mask is None or not mask.any():
        return np.zeros(shape, np.float32)
    cam = ndi.gaussian_filter(mask.astype(np.float32), sigma_frac * min(shape))
    out: NDArray[np.float32] = (cam / max(float(cam.max()), 1e-12)).astype(np.float32)
    return out


class StandinCams:
    """``cams(images)`` for :func:`~samprompt.proposals.fit.fit_scorer`: looks each image (or its mirror) up by
    its bytes and returns its blurred mask. Masks are read here, outside the fit (benchmark only).

    ``donors`` (id -> id) gives an image the stand-in CAM of another image instead, resized to its size
    (the ``borrowed`` variant for normal images)."""

    def __init__(self, ds: Any, ids: Sequence[str], sigma_frac: float,
                 donors: dict[str, str] | None = None) -> None:
        self.ds, self.sigma, self.donors = ds, sigma_frac, dict(donors or {})
        self.known: dict[str, tuple[str, bool]] = {}
        for sid in ids:
            img = ds.load_image(sid)
            self.known[self.key(img)] = (sid, False)
            self.known[self.key(img[:, ::-1])] = (sid, True)
        self.calls = self.misses = 0

    @staticmethod
    def key(img: Any) -> str:
        a = np.ascontiguousarray(img)
        return hashlib.sha1(a.tobytes() + repr(a.shape).encode()).hexdigest()

    def cam_of(self, sid: str, shape: tuple[int, int]) -> NDArray[np.float32]:
        donor = self.donors.get(sid)
        if donor is None:
            return standin_cam(self.ds.load_mask(sid), shape, self.sigma)
        m = self.ds.load_mask(donor)
        cam = standin_cam(m, m.shape if m is not None else shape, self.sigma)
        out: NDArray[np.float32] = np.clip(resize(cam, shape, order=1, preserve_range=True), 0, 1).astype(np.float32)
        return out

    def __call__(self, images: Sequence[Any]) -> list[NDArray[np.float32]]:
        out = []
        for im in images:
            self.calls += 1
            shape = np.asarray(im).shape[:2]
            hit = self.known.get(self.key(im))
            if hit is None:
                self.misses += 1
                out.append(np.zeros(shape, np.float32))
                continue
            cam = self.cam_of(hit[0], shape)
            out.append(np.ascontiguousarray(cam[:, ::-1]) if hit[1] else cam)
        return out


def derangement(n: int, seed: int) -> NDArray[np.int64]:
    """A seeded permutation of ``range(n)`` without a fixed point (n >= 2)."""
    rng = np.random.default_rng(seed)
    while True:
        p = rng.permutation(n)
        if not np.any(p == np.arange(n)):
            return p


def shuffled(cams: Sequence[NDArray[np.float32]], perm: NDArray[np.int64]) -> list[NDArray[np.float32]]:
    """Image i gets CAM ``perm[i]``, resized (bilinear) to image i's size."""
    return [np.clip(resize(cams[j], cams[i].shape, order=1, preserve_range=True), 0, 1).astype(np.float32)
            for i, j in enumerate(perm)]


def cam_weights(sf: Any) -> dict[str, float]:
    from samprompt.proposals import FEATURE_NAMES

    return {n: float(sf.stage1.weights[FEATURE_NAMES.index(n)]) for n in CAM_NAMES}


def evaluate(pipe: Any, images: Sequence[NDArray[np.uint8]], cams: Sequence[NDArray[np.float32]],
             masks: Sequence[NDArray[np.bool_]], batch: int, gt: bool = False) -> dict[str, dict[str, list[float]]]:
    """Per strategy (and ``gt:<strategy>`` with ``gt``): per-image dice, box IoU, centre-on-lesion."""
    from samprompt.regions import box_iou, mask_to_box

    out: dict[str, dict[str, list[float]]] = {}
    for s in range(0, len(images), batch):
        sl = slice(s, s + batch)
        res = pipe.run_batch(list(images[sl]), cams=list(cams[sl]), gt_masks=list(masks[sl]) if gt else None)
        for r, m in zip(res, masks[sl]):
            gbox = mask_to_box(m)
            if gbox is None:
                raise ValueError("a test lesion image without a lesion")
            groups = [("", r.strategies)] + ([("gt:", r.gt)] if gt else [])
            for prefix, strategies in groups:
                for label, sr in strategies.items():
                    d = out.setdefault(prefix + label, {"dice": [], "box_iou": [], "on_lesion": [],
                                                            "size_ratio": []})
                    d["dice"].append(float(2 * np.count_nonzero(sr.mask & m) / (sr.mask.sum() + m.sum())))
                    b = None if sr.prompt is None else sr.prompt.box
                    d["box_iou"].append(0.0 if b is None else float(box_iou(b, gbox)))
                    if b is None:
                        d["on_lesion"].append(0.0)
                        d["size_ratio"].append(float("nan"))
                    else:
                        cx = int(np.clip((b[0] + b[2]) / 2, 0, m.shape[1] - 1))
                        cy = int(np.clip((b[1] + b[3]) / 2, 0, m.shape[0] - 1))
                        d["on_lesion"].append(float(m[cy, cx]))
                        area = max(float((b[2] - b[0]) * (b[3] - b[1])), 1.0)
                        d["size_ratio"].append(area / max(float((gbox[2] - gbox[0]) * (gbox[3] - gbox[1])), 1.0))
        print(f"    {min(s + batch, len(images))} / {len(images)}", file=sys.stderr, flush=True)
    return out


def summary(v: Sequence[float]) -> dict[str, float]:
    from samprompt.metrics import summarize

    s = summarize(v)
    return {"mean": s.mean, "low": s.ci_low, "high": s.ci_high, "n": s.n}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--sigma", type=float, default=0.05, help="stand-in blur, fraction of the shorter side")
    ap.add_argument("--seed", type=int, default=0, help="derangement seed")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/camcount_busi"))
    ap.add_argument("--limit-train", type=int, default=0, help="develop on the first N train images")
    ap.add_argument("--limit-test", type=int, default=0, help="develop on the first N test lesion images")
    ap.add_argument("--normal-cam", choices=("zero", "borrowed"), default="zero",
                    help="stand-in CAM of a negative (normal) train image: all zero (its empty mask blurred), or "
                         "borrowed = the stand-in CAM of a random lesion train image, resized (a classifier whose "
                         "per-image normalised CAM fires somewhere on every image)")
    ap.add_argument("--refit", action="store_true", help="refit the stand-in scorer even if scratch has it")
    args = ap.parse_args(argv)

    import samprompt
    from samprompt.classifiers import load_classifier
    from samprompt.config import ComponentSpec
    from samprompt.data import Split, open_dataset
    from samprompt.metrics import paired_bootstrap
    from samprompt.pipeline import PromptPipeline
    from samprompt.proposals import load_scorer, save_scorer
    from samprompt.proposals.fit import fit_scorer
    from samprompt.runner import load_run_config
    from samprompt.runner.fitting import LabelsOnly
    from samprompt.runner.stages import resolve_targets

    t_start = time.perf_counter()
    run = args.run
    cfg = load_run_config(json.loads((run / "config.json").read_text()))
    ds = open_dataset(cfg.data.path)
    split = Split.load(run / "split.json", ds)
    model, info = load_classifier(run / "classifier.pt")
    run_scorer = run / "scorer.json"
    negative = list(cfg.fit.negative_classes) if cfg.fit is not None else ["normal"]
    label_of = {sid: ds[ds.position(sid)].label for sid in ds.ids}

    # ---- (i) the stand-in fit on the TRAIN split
    train = list(split.ids("train"))[: args.limit_train or None]
    args.scratch.mkdir(parents=True, exist_ok=True)
    tag = f"standin_s{args.sigma:g}_n{len(train)}_{args.normal_cam}"
    standin_path = args.scratch / f"{tag}.json"
    fit_s = None
    if args.refit or not standin_path.exists():
        print(f"fitting the stand-in scorer on {len(train)} train images ...", file=sys.stderr, flush=True)
        view = LabelsOnly(ds, train)  # images and labels only; the stand-in reads masks by itself
        lesion = [lab not in negative for lab in view.labels]
        donors: dict[str, str] = {}
        if args.normal_cam == "borrowed":
            pos = [sid for sid, y in zip(train, lesion) if y]
            pick = np.random.default_rng(args.seed).integers(0, len(pos), len(train))
            donors = {sid: pos[k] for sid, y, k in zip(train, lesion, pick) if not y}
        cams_fn = StandinCams(ds, train, args.sigma, donors)
        t0 = time.perf_counter()
        sf = fit_scorer(view, lesion, cams=cams_fn, cam_features=True, provenance={
            "standin": f"blurred GT mask, sigma {args.sigma} x shorter side, normal images: {args.normal_cam} "
                       "(BENCHMARK ONLY, reads masks)",
            "split": {"part": "train", "file": str(run / "split.json")}, "negative_classes": negative})
        fit_s = time.perf_counter() - t0
        if cams_fn.misses:
            raise RuntimeError(f"stand-in CAM lookup missed {cams_fn.misses} of {cams_fn.calls} images")
        save_scorer(sf, standin_path)
    standin = load_scorer(standin_path)
    fitted = load_scorer(run_scorer)

    # ---- the test lesion images
    test_all = list(split.ids("test"))
    test, masks, images = [], [], []
    for sid in test_all:
        m = ds.load_mask(sid)
        if label_of[sid] in negative or m is None or not m.any():
            continue
        test.append(sid)
        masks.append(m)
        images.append(ds.load_image(sid))
        if args.limit_test and len(test) >= args.limit_test:
            break
    print(f"{len(test)} test lesion images", file=sys.stderr, flush=True)

    def pipeline(strategies: dict[str, dict[str, Any]]) -> PromptPipeline:
        prompts = [ComponentSpec(name="box" if lab == "box" else "candidates", params=p, label=lab)
                   for lab, p in strategies.items()]
        p = cfg.pipeline.model_copy(update={"prompts": prompts})
        return PromptPipeline.from_config(p, classifier=model, class_names=info.class_names,
                                          preprocessing=info.preprocessing, target_layer=info.target_layer,
                                          device="cpu")

    cand = {"output": "box"}
    s_busi, s_fit, s_std = ({**cand}, {**cand, "scorer": str(run_scorer)}, {**cand, "scorer": str(standin_path)})
    batch = cfg.batch_size
    targets = resolve_targets(cfg, info, [label_of[s] for s in test])
    pipe_real = pipeline({"busi_v1": s_busi, "fitted": s_fit, "standin": s_std, "box": {"margin": 5}})
    print("real CAMs ...", file=sys.stderr, flush=True)
    real: list[NDArray[np.float32]] = []
    for s in range(0, len(images), batch):
        real += [r.cam for r in pipe_real.compute_cams(images[s:s + batch], targets[s:s + batch])]
    # the CAM as the fit sees it (fit_scorer averages an image's CAM with its mirror's, mirrored back)
    flip_avg: list[NDArray[np.float32]] = []
    for s in range(0, len(images), batch):
        mirrored = [np.ascontiguousarray(im[:, ::-1]) for im in images[s:s + batch]]
        got = pipe_real.compute_cams(mirrored, targets[s:s + batch])
        flip_avg += [((a + r.cam[:, ::-1]) / 2).astype(np.float32) for a, r in zip(real[s:s + batch], got)]
    std_cams = [standin_cam(m, m.shape, args.sigma) for m in masks]

    def peak_on_lesion(cams: Sequence[NDArray[np.float32]]) -> float:
        """Fraction of images whose CAM maximum lies on the lesion."""
        return float(np.mean([m.flat[int(np.argmax(c))] for c, m in zip(cams, masks)]))

    peaks = {"real": peak_on_lesion(real), "real shuffled": peak_on_lesion(shuffled(real, derangement(len(test),
             args.seed))), "real flip-averaged": peak_on_lesion(flip_avg), "stand-in": peak_on_lesion(std_cams)}
    perm = derangement(len(test), args.seed)
    res: dict[str, dict[str, dict[str, list[float]]]] = {}
    print("real CAMs: busi_v1, fitted, standin, box (+ GT prompts) ...", file=sys.stderr, flush=True)
    res["real"] = evaluate(pipe_real, images, real, masks, batch, gt=True)
    print("real CAMs shuffled: busi_v1, fitted ...", file=sys.stderr, flush=True)
    res["real_shuffled"] = evaluate(pipeline({"busi_v1": s_busi, "fitted": s_fit}), images, shuffled(real, perm),
                                    masks, batch)
    print("real CAMs flip-averaged: fitted ...", file=sys.stderr, flush=True)
    res["real_flipavg"] = evaluate(pipeline({"fitted": s_fit}), images, flip_avg, masks, batch)
    print("stand-in CAMs: standin, fitted, busi_v1 ...", file=sys.stderr, flush=True)
    res["standin"] = evaluate(pipeline({"standin": s_std, "fitted": s_fit, "busi_v1": s_busi}), images, std_cams,
                              masks, batch)
    print("stand-in CAMs shuffled: standin ...", file=sys.stderr, flush=True)
    res["standin_shuffled"] = evaluate(pipeline({"standin": s_std}), images, shuffled(std_cams, perm), masks, batch)

    # ---- the run's own per-image figures (reproduction check)
    ref: dict[tuple[str, str], tuple[float, float]] = {}
    with open(run / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["source"] == "cam" and row["image"] in test:
                ref[(row["image"], row["strategy"])] = (float(row["dice"]), float(row["box_iou"] or "nan"))
    repro = {}
    for lab in ("busi_v1", "fitted", "box"):
        ours = res["real"][lab]
        if all((sid, lab) in ref for sid in test):
            dd = [abs(ours["dice"][k] - ref[(sid, lab)][0]) for k, sid in enumerate(test)]
            repro[lab] = {"run_dice": float(np.mean([ref[(s, lab)][0] for s in test])),
                          "run_box_iou": float(np.mean([ref[(s, lab)][1] for s in test])),
                          "max_abs_dice_diff": float(max(dd)), "images_differing": int(sum(d > 1e-4 for d in dd))}

    rows = [("fitted (run)", "real", "real", "fitted"), ("fitted (run)", "shuffled", "real_shuffled", "fitted"),
            ("busi-v1", "real", "real", "busi_v1"), ("busi-v1", "shuffled", "real_shuffled", "busi_v1"),
            ("stand-in fit", "stand-in", "standin", "standin"),
            ("stand-in fit", "stand-in shuffled", "standin_shuffled", "standin"),
            ("stand-in fit", "real", "real", "standin"), ("fitted (run)", "stand-in", "standin", "fitted"),
            ("busi-v1", "stand-in", "standin", "busi_v1"),
            ("fitted (run)", "real, flip-averaged", "real_flipavg", "fitted"), ("GT box (box, margin 5)", "-", "real", "gt:box"),
            ("GT box, tight (candidates' GT baseline)", "-", "real", "gt:fitted")]
    table: list[dict[str, Any]] = []
    for scorer, cam, cond, lab in rows:
        d = res[cond][lab]
        table.append({"scorer": scorer, "cam": cam, "condition": cond, "strategy": lab,
                      "dice": summary(d["dice"]), "box_iou": summary(d["box_iou"]),
                      "on_lesion": float(np.mean(d["on_lesion"])),
                      "size_ratio_median": float(np.nanmedian(d["size_ratio"]))})
    pairs: dict[str, dict[str, dict[str, float]]] = {}
    for name, (ca, la), (cb, lb) in [
        ("fitted: real - shuffled", ("real", "fitted"), ("real_shuffled", "fitted")),
        ("busi-v1: real - shuffled", ("real", "busi_v1"), ("real_shuffled", "busi_v1")),
        ("stand-in fit: stand-in - shuffled stand-in", ("standin", "standin"), ("standin_shuffled", "standin")),
        ("stand-in fit with stand-in - fitted (run) with real", ("standin", "standin"), ("real", "fitted")),
        ("fitted (run): stand-in - real CAM", ("standin", "fitted"), ("real", "fitted")),
        ("fitted (run): flip-averaged - plain real CAM", ("real_flipavg", "fitted"), ("real", "fitted")),
    ]:
        pairs[name] = {}
        for metric in ("dice", "box_iou"):
            ps = paired_bootstrap(res[ca][la][metric], res[cb][lb][metric])
            pairs[name][metric] = {"mean": ps.mean_diff, "low": ps.ci_low, "high": ps.ci_high}
    weights: dict[str, dict[str, Any]] = {"standin": {"cam_weights": cam_weights(standin),
                           "cam_weight_norm": standin.provenance["fit"]["cam_weight_norm"],
                           "polarity": standin.polarity, "fit": standin.provenance["fit"]},
               "fitted (run)": {"cam_weights": cam_weights(fitted),
                                "cam_weight_norm": fitted.provenance["fit"]["cam_weight_norm"],
                                "polarity": fitted.polarity},
               "busi-v1": {"cam_weights": cam_weights(load_scorer("busi-v1"))}}
    for w in weights.values():
        w["abs_weight_rank_of_cam_features"] = None
    from samprompt.proposals import FEATURE_NAMES
    for name, sf in (("standin", standin), ("fitted (run)", fitted)):
        order = list(np.argsort(-np.abs(sf.stage1.weights[1:])) + 1)
        weights[name]["abs_weight_rank_of_cam_features"] = {
            n: order.index(FEATURE_NAMES.index(n)) + 1 for n in CAM_NAMES}
        weights[name]["largest_weights"] = {FEATURE_NAMES[i]: float(sf.stage1.weights[i]) for i in order[:6]}

    # ---- print
    print(f"\n{len(test)} test lesion images of {run} (split.json, test part); classical segmenter, output box")
    print(f"stand-in CAM: GT mask blurred, sigma {args.sigma} x shorter side; normal train images: "
          f"{args.normal_cam}; derangement seed {args.seed}\n")
    print("| scorer | CAM at test | Dice [95 % CI] | box IoU [95 % CI] | box centre on lesion | box area / GT box "
          "area (median) |")
    print("|---|---|---|---|---|---|")
    for t in table:
        d, b = t["dice"], t["box_iou"]
        print(f"| {t['scorer']} | {t['cam']} | {d['mean']:.3f} [{d['low']:.3f}, {d['high']:.3f}] | "
              f"{b['mean']:.3f} [{b['low']:.3f}, {b['high']:.3f}] | {100 * t['on_lesion']:.0f} % | "
              f"{t['size_ratio_median']:.2f} |")
    print("\n| paired difference | Dice [95 % CI] | box IoU [95 % CI] |\n|---|---|---|")
    for name, p in pairs.items():
        print(f"| {name} | {p['dice']['mean']:+.3f} [{p['dice']['low']:+.3f}, {p['dice']['high']:+.3f}] | "
              f"{p['box_iou']['mean']:+.3f} [{p['box_iou']['low']:+.3f}, {p['box_iou']['high']:+.3f}] |")
    print("\n| scorer | " + " | ".join(CAM_NAMES) + " | norm | rank of |w| among 20 (mean, max, mass, rank) |")
    print("|---|---|---|---|---|---|---|")
    for name in ("standin", "fitted (run)"):
        w = weights[name]
        ranks = w["abs_weight_rank_of_cam_features"]
        print(f"| {name} | " + " | ".join(f"{w['cam_weights'][n]:+.3f}" for n in CAM_NAMES)
              + f" | {w['cam_weight_norm']:.3f} | {', '.join(str(ranks[n]) for n in CAM_NAMES)} |")
    print("\nCAM maximum on the lesion: " + ", ".join(f"{k} {100 * v:.0f} %" for k, v in peaks.items()))
    print("\nreproduction of the run's metrics.csv (real CAMs):")
    for lab, r in repro.items():
        print(f"  {lab}: run Dice {r['run_dice']:.3f} box IoU {r['run_box_iou']:.3f}; max |dice diff| "
              f"{r['max_abs_dice_diff']:.2g} on {r['images_differing']} images")
    if fit_s is None:  # reused from scratch: its own record
        fit_s = float(standin.provenance["fit"]["seconds"])
    print(f"stand-in fit: {fit_s:.0f} s on {len(train)} train images")
    total_s = time.perf_counter() - t_start
    print(f"total {total_s:.0f} s")

    if args.out is not None:
        blob = {
            "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
            "run": str(run), "split": {"file": str(run / "split.json"), "train_images": len(train),
                                       "test_lesion_images": len(test), "seed": cfg.seed},
            "standin": {"sigma_fraction_of_shorter_side": args.sigma, "normal_images": args.normal_cam,
                        "scorer_file": str(standin_path), "fit_seconds": fit_s},
            "derangement_seed": args.seed, "table": table, "paired": pairs, "weights": weights,
            "reproduction": repro, "cam_peak_on_lesion": peaks,
            "seconds": total_s,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "note": "2-core CPU shared with other jobs (loaded); timings are noisy"},
            "samprompt": samprompt.__version__,
            "per_image": {"ids": test, "derangement": perm.tolist(),
                          **{f"{c}/{lab}/{m}": [round(x, 5) for x in v] for c, r in res.items()
                             for lab, d in r.items() for m, v in d.items()}},
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(blob, indent=1, default=float) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
