"""Time of the ``candidates`` scorer fit (issue 15) on a data set's train split, and an inverted data copy.

Usage::

    python benchmarks/quality_fit.py time RUN_FOLDER [WORKERS [LEARNER]]  # a run with split.json + classifier.pt
    python benchmarks/quality_fit.py invert DATA OUT            # OUT = DATA with every image intensity-inverted

``time`` refits the run's scorer on its train split (image labels only, the run's CAM method and target,
``normal`` as the negative class when present; ``WORKERS`` worker processes, default 0) and prints the
fit's seconds (and their parts; with ``LEARNER`` — ``mil``, ``contrast``, ... — that learner instead of the
run's ``fit.learner``) next to the classifier's training seconds recorded in the run's
``train_result.json``, the machine's load average, and how far the refitted weights are from the run's
``scorer.json`` (the same fit: float noise only). ``invert`` copies a class-folder data set,
writing ``255 - image`` for every image and copying every ``*_mask*`` file unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

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
                        workers=workers, timings=parts)  # the run's fit stage's settings
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


if __name__ == "__main__":
    if len(sys.argv) in (3, 4, 5) and sys.argv[1] == "time":
        fit_time(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) >= 4 else 0,
                 sys.argv[4] if len(sys.argv) == 5 else None)
    elif len(sys.argv) == 4 and sys.argv[1] == "invert":
        invert(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(__doc__)
