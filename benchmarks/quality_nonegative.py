"""Fitting without a negative class: which teacher signal? (issue 15; docs/quality.md, "BUSI inverted").

Usage::

    python benchmarks/quality_nonegative.py RUN_FOLDER [--images 120] [--variants sum,pred,label,label_nocam]

``RUN_FOLDER`` is a finished run on data WITHOUT a negative class (e.g. ``inv_nonormal`` of
``benchmarks/labelfit_configs.py``); it is only read. Scorers are fit on ``--images`` train images (a seeded
sample) with the classifier evidence computed in different ways, then each is scored on the run's VAL
lesion images (val masks are read here, to compare the variants: this is a benchmark, not a fit):

* ``sum`` — CAM and erasure score of the run's target classes summed (what the run's fit stage does);
* ``pred`` — CAM of the predicted class; erasure score = the probability of the class predicted for the
  unerased image;
* ``label`` — CAM and erasure score of the image's own (labelled) class;
* ``label_nocam`` — ``label`` with the CAM features left out of the learner (their columns zeroed).

Each fitted scorer and ``busi-v1`` with the ``bright`` polarity run as ``candidates`` (``output: box``)
with the run's segmenter, under the run's CAM target and under ``predicted``; printed: Dice, box IoU and
box centre on the lesion. Scorer files are kept under ``--scratch``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).parent))
from quality_cam_counts import evaluate


def _key(a: Any) -> str:
    arr = np.ascontiguousarray(a)
    return hashlib.sha1(arr.tobytes() + repr(arr.shape).encode()).hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--images", type=int, default=120, help="train images the scorers are fit on")
    ap.add_argument("--variants", default="sum,pred,label,label_nocam")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/quality_nonegative"))
    args = ap.parse_args(argv)

    import samprompt.proposals._fit_models as models  # the fit's statistics (the learner patched below)
    import samprompt.proposals.fit as fitmod
    from samprompt.classifiers import load_classifier
    from samprompt.config import ComponentSpec
    from samprompt.data import Split, open_dataset
    from samprompt.pipeline import PromptPipeline
    from samprompt.proposals import save_scorer
    from samprompt.runner import load_run_config
    from samprompt.runner.fitting import LabelsOnly

    run = args.run
    cfg = load_run_config(json.loads((run / "config.json").read_text()))
    ds = open_dataset(cfg.data.path)
    split = Split.load(run / "split.json", ds)
    model, info = load_classifier(run / "classifier.pt")
    names = list(info.class_names)
    train = list(split.ids("train"))
    pick = np.random.default_rng(0).choice(len(train), min(args.images, len(train)), replace=False)
    train = [train[k] for k in sorted(pick)]
    view = LabelsOnly(ds, train)
    label_of: dict[str, int] = {}
    for sid, lab in zip(train, view.labels):
        im = ds.load_image(sid)
        label_of[_key(im)] = label_of[_key(im[:, ::-1])] = names.index(lab)
    base = cfg.pipeline.model_copy(update={"prompts": [ComponentSpec(name="box")]})
    pipe = PromptPipeline.from_config(base, classifier=model, class_names=names, preprocessing=info.preprocessing,
                                      target_layer=info.target_layer, device="cpu")
    every = tuple(range(len(names)))

    def evidence(v: str) -> tuple[Any, Any]:
        def target(im: Any) -> Any:
            return every if v == "sum" else "predicted" if v == "pred" else label_of[_key(im)]

        def cams(images: Sequence[Any]) -> list[NDArray[np.float32]]:
            return [r.cam for r in pipe.compute_cams(list(images), [target(im) for im in images])]

        def score(images: Sequence[Any]) -> NDArray[np.float64]:
            res = pipe.compute_cams(list(images), [target(images[0])] * len(images))
            if v == "sum":
                return np.array([float(r.probabilities[list(every)].sum()) for r in res])
            c = int(np.argmax(res[0].probabilities)) if v == "pred" else label_of[_key(images[0])]
            return np.array([float(r.probabilities[c]) for r in res])

        return cams, score

    cam_cols = [fitmod.FEATURE_NAMES.index(n) for n in ("cam_mean", "cam_max", "cam_mass", "cam_rank")]
    real_instances = models._instances

    def without_cam(X: NDArray[np.float64], y: NDArray[np.bool_], l2: float) -> Any:
        X = np.array(X, np.float64, copy=True)
        if X.shape[1] == len(fitmod.FEATURE_NAMES):
            X[:, cam_cols] = 0.0
        return real_instances(X, y, l2)

    args.scratch.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for v in args.variants.split(","):
        path = args.scratch / f"{run.name}_{v}_{len(train)}.json"
        if not path.exists():
            cams, score = evidence(v.removesuffix("_nocam"))
            models._instances = without_cam if v.endswith("_nocam") else real_instances  # type: ignore[assignment]
            t0 = time.perf_counter()
            try:
                # the CAM features are fitted, as when these figures were measured (docs: quality)
                sf = fitmod.fit_scorer(view, [True] * len(view), cams=cams, score=score, cam_features=True)
            finally:
                models._instances = real_instances  # type: ignore[assignment]
            print(f"{v}: fit {time.perf_counter() - t0:.0f} s, polarity {sf.polarity}", flush=True)
            save_scorer(sf, path)
        files[v] = path

    val, masks, images = [], [], []
    for sid in split.ids("val"):
        m = ds.load_mask(sid)
        if m is None or not m.any():
            continue
        val.append(sid)
        masks.append(m)
        images.append(ds.load_image(sid))
    prompts = [ComponentSpec(name="candidates", label=v, params={"output": "box", "scorer": str(p)})
               for v, p in files.items()]
    prompts.append(ComponentSpec(name="candidates", label="busi_v1_bright", params={"output": "box",
                                                                                    "polarity": "bright"}))
    pv = PromptPipeline.from_config(cfg.pipeline.model_copy(update={"prompts": prompts}), classifier=model,
                                    class_names=names, preprocessing=info.preprocessing,
                                    target_layer=info.target_layer, device="cpu")
    run_target = cfg.target_classes(names)
    for tname, t in (("run", tuple(names.index(c) for c in run_target) if run_target else "predicted"),
                     ("predicted", "predicted")):
        cams_val: list[NDArray[np.float32]] = []
        for s in range(0, len(images), 16):
            cams_val += [r.cam for r in pv.compute_cams(images[s:s + 16], [t] * len(images[s:s + 16]))]
        for k, d in evaluate(pv, images, cams_val, masks, 16).items():
            print(f"val ({len(d['dice'])} lesion images), CAM target {tname}, {k}: Dice {np.mean(d['dice']):.3f}, "
                  f"box IoU {np.mean(d['box_iou']):.3f}, centre on lesion {np.mean(d['on_lesion']):.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
