"""Time of the ``candidates`` scorer fit (issue 15) on a data set's train split, and an inverted data copy.

Usage::

    python benchmarks/quality_fit.py time RUN_FOLDER [WORKERS [LEARNER]]  # a run with split.json + classifier.pt
    python benchmarks/quality_fit.py invert DATA OUT            # OUT = DATA with every image intensity-inverted
    python benchmarks/quality_fit.py draws DATA SPLIT CLASSIFIER OUT [--cap 60] [--draws 4] [--part val]

``time`` refits the run's scorer on its train split (image labels only, the run's CAM method and target,
``normal`` as the negative class when present; ``WORKERS`` worker processes, default 0) and prints the
fit's seconds (and their parts; with ``LEARNER`` — ``mil``, ``contrast``, ... — that learner instead of the
run's ``fit.learner``) next to the classifier's training seconds recorded in the run's
``train_result.json``, the machine's load average, and how far the refitted weights are from the run's
``scorer.json`` (the same fit: float noise only). ``invert`` copies a class-folder data set,
writing ``255 - image`` for every image and copying every ``*_mask*`` file unchanged.

``draws`` asks how much a capped fit depends on its draw (docs: quality, "More draws: the cap of 60
withdrawn"): it fits the scorer on the train part of ``SPLIT`` (image labels only, ``normal`` as the negative
class when the data has it; 2 worker processes) ``--draws`` times on ``--cap`` images per class, drawn with
seeds 0, 1, ..., once on all train images, and makes the bag of the draws (the average of their linear
scores, written as one scorer file; the majority polarity). It writes the scorer files to
``OUT/scorers/`` and ``OUT/config.json``: a run over the ``--part`` images (default ``val``) with one
``candidates`` prompt (``output: box_point``) per scorer, the ``best`` preset's CAM on ``CLASSIFIER`` (read
only for the fallback box) and the ``classical`` segmenter, and prints the ``samprompt run`` command whose
``summary.md`` holds each scorer's Dice, box IoU and points inside.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def fit_time(run: Path, workers: int = 0, learner: str | None = None) -> None:
    from samprompt.classifiers import load_classifier
    from samprompt.data import Split, open_dataset
    from samprompt.runner import load_run_config
    from samprompt.runner.config import FitSpec
    from samprompt.runner.fitting import classifier_evidence, fit_on_dataset

    cfg = load_run_config(json.loads((run / "config.json").read_text()))
    ds = open_dataset(cfg.data.path)
    split = Split.load(run / "split.json")
    model, info = load_classifier(run / "classifier.pt")
    target = cfg.target_classes(info.class_names) or "predicted"  # as the run's fit stage
    ev = classifier_evidence(model, info.class_names, info.preprocessing, info.target_layer, cam=cfg.pipeline.cam,
                             target=target)  # one torch thread, as the run's fit stage
    spec = cfg.fit if cfg.fit is not None else FitSpec()
    if learner is not None:
        spec = spec.model_copy(update={"learner": learner})
    load0 = os.getloadavg()
    parts: dict[str, float] = {}
    t0 = time.perf_counter()
    sf = fit_on_dataset(ds, split.ids("train"), negative_classes=spec.negative_classes, evidence=ev,
                        polarity=spec.polarity, l2=spec.l2, min_images=spec.min_images, erase=spec.erase,
                        prior=spec.prior, cam_features=spec.cam_features, learner=spec.learner,
                        max_images=spec.max_images, seed=cfg.seed, contrast_min_images=spec.contrast_min_images,
                        contrast_max_images=spec.contrast_max_images, workers=workers,
                        timings=parts)  # the run's fit stage's settings
    fit_s = time.perf_counter() - t0
    hist = json.loads((run / "train_result.json").read_text()).get("history", [])
    train_s = sum(float(h.get("seconds", 0.0)) for h in hist)
    print(f"train images {len(split.ids('train'))}; fit {fit_s:.1f} s (polarity {sf.polarity}, "
          f"{sf.provenance['fit']['method']}, workers {workers}); "
          f"classifier training {train_s:.1f} s (sum of its epochs); ratio {fit_s / max(train_s, 1e-9):.2f}")
    print("fit parts (s): " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
    print(f"load average (1 min) before {load0[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    stored = run / "scorer.json"
    if stored.exists():
        from samprompt.proposals.scorer import load_scorer

        old = load_scorer(stored)
        diff = max(float(np.max(np.abs(getattr(getattr(sf, st), a) - getattr(getattr(old, st), a))))
                   for st in ("stage1", "stage2") for a in ("weights", "mean", "scale"))
        print(f"vs the run's scorer.json: polarity {old.polarity} -> {sf.polarity}; largest difference of "
              f"weights / means / scales {diff:.3g}")


def invert(data: Path, out: Path) -> None:
    for p in sorted(data.rglob("*")):
        if not p.is_file():
            continue
        q = out / p.relative_to(data)
        q.parent.mkdir(parents=True, exist_ok=True)
        if "_mask" in p.name or p.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
            shutil.copy2(p, q)
        else:
            Image.fromarray(255 - np.asarray(Image.open(p).convert("RGB"))).save(q)


def bag(files: list[Any]) -> Any:
    """One scorer file whose stage scores are the mean of ``files``' (of their majority polarity); exact,
    since each stage is linear in the features: ``mean_k (w_k0 + sum_j w_kj (x_j - m_kj) / s_kj)``."""
    from samprompt.proposals.scorer import CandidateScorer, ScorerFile

    polarities = [f.polarity for f in files]
    polarity = max(polarities, key=polarities.count)
    kept = [f for f in files if f.polarity == polarity]

    def mean_of(stages: list[CandidateScorer]) -> CandidateScorer:
        mean = np.mean([s.mean for s in stages], axis=0)
        scale = np.mean([np.where(s.scale > 0, s.scale, 1.0) for s in stages], axis=0)
        w = np.zeros_like(mean)
        for s in stages:
            per = s.weights[1:] / np.where(s.scale > 0, s.scale, 1.0)[1:]  # weight per raw feature unit
            w[1:] += per * scale[1:]
            w[0] += s.weights[0] - float(per @ (s.mean[1:] - mean[1:]))
        return CandidateScorer(w / len(stages), mean, scale, names=stages[0].names)

    return ScorerFile(mean_of([f.stage1 for f in kept]), mean_of([f.stage2 for f in kept]), polarity=polarity,
                      name="bag", provenance={"bag_of": len(kept), "polarities": polarities, "mask_tuned": []})


def draws(data: Path, split_file: Path, classifier: Path, out: Path, cap: int, n: int, part: str) -> None:
    from samprompt.data import Split, open_dataset
    from samprompt.proposals.scorer import save_scorer
    from samprompt.runner.fitting import fit_on_dataset

    ds = open_dataset(data)
    ids = Split.load(split_file).ids("train")
    scorers = out / "scorers"
    scorers.mkdir(parents=True, exist_ok=True)
    fitted: dict[str, Any] = {}
    for label, cap_n, seed in [*((f"cap{cap}_draw{k}", cap, k) for k in range(n)), ("all", None, 0)]:
        t0 = time.perf_counter()
        fitted[label] = sf = fit_on_dataset(ds, ids, negative_classes=["normal"], contrast_max_images=cap_n,
                                            seed=seed, workers=2)
        print(f"{label}: {sf.provenance['fit']['method']}, polarity {sf.polarity}, {sf.provenance['images']} "
              f"images, {time.perf_counter() - t0:.1f} s", flush=True)
    fitted[f"bag{cap}x{n}"] = bag([fitted[f"cap{cap}_draw{k}"] for k in range(n)])
    for label, sf in fitted.items():
        save_scorer(sf, scorers / f"{label}.json")
    config = {
        "name": f"draws-{part}", "data": {"path": str(data.absolute())},
        "split": {"file": str(split_file.absolute()), "use": part}, "seed": 0,
        "classifier": {"checkpoint": str(classifier.absolute())}, "target": "lesion", "device": "cpu",
        "pipeline": {
            "cam": {"name": "tta", "params": {"method": "gradcampp", "target_layer": ["layer3", "layer4"],
                                              "flips": ["h"]}},
            "masker": {"name": "threshold", "params": {"value": 0.8}},
            "prompts": [{"name": "candidates", "label": label,
                         "params": {"output": "box_point", "scorer": str((scorers / f"{label}.json").absolute())}}
                        for label in fitted],
            "segmenter": {"name": "classical", "params": {"polarity": "auto"}},
            "prompt_workers": 2,
        },
    }
    (out / "config.json").write_text(json.dumps(config, indent=1))
    print(f"now: samprompt run {out / 'config.json'} --out {out / 'run'}   (then read {out / 'run' / 'summary.md'})")


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "draws":
        import argparse

        ap = argparse.ArgumentParser(prog="quality_fit.py draws")
        ap.add_argument("data", type=Path)
        ap.add_argument("split", type=Path)
        ap.add_argument("classifier", type=Path)
        ap.add_argument("out", type=Path)
        ap.add_argument("--cap", type=int, default=60)
        ap.add_argument("--draws", type=int, default=4)
        ap.add_argument("--part", default="val", choices=["train", "val", "test"])
        a = ap.parse_args(sys.argv[2:])
        draws(a.data, a.split, a.classifier, a.out, a.cap, a.draws, a.part)
    elif len(sys.argv) in (3, 4, 5) and sys.argv[1] == "time":
        fit_time(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) >= 4 else 0,
                 sys.argv[4] if len(sys.argv) == 5 else None)
    elif len(sys.argv) == 4 and sys.argv[1] == "invert":
        invert(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(__doc__)
