"""Write the run configs of the label-fit measurements (docs/quality.md, issues 15 and 19) and print the
commands that reproduce them, in order.

Usage::

    python benchmarks/labelfit_configs.py BUSI_DIR WORK_DIR

``BUSI_DIR`` is ``Dataset_BUSI_with_GT`` (class folders ``benign``, ``malignant``, ``normal``). Everything
is written under ``WORK_DIR``: the configs (``*.json``), the inverted copy of the data (made by the printed
``quality_fit.py invert`` command), the split of the runs without ``normal`` (written once the first run
has made ``split.json``) and the run folders. The configs are those of the docs' tables:

* ``fit.json`` — ResNet18 from scratch at 128 px, 6 epochs, split 0.7 / 0.15 / 0.15 seed 0, GradCAM++
  ``layer4`` of benign + malignant, the ``classical`` segmenter (``polarity: auto``); prompts: ``candidates``
  with ``busi-v1`` and with the scorer fit in the run (box, and box + point), the paper's CAM box.
* ``inv.json`` — the same on the intensity-inverted copy, with the first run's split file.
* ``inv_nonormal.json`` / ``inv_nonormal_prior.json`` — the inverted copy without ``normal`` (training and
  fitting), a 2-class classifier; the second keeps ``busi-v1``'s weights (``fit.prior``);
  ``inv_nonormal_val.json`` / ``inv_nonormal_border_val.json``: the first on val, and with a classifier
  trained with the border terms (weights learnt from a better CAM);
  ``inv_nonormal_contrast_val.json`` / ``_test.json``: the ``inv_nonormal`` classifier (for the paper's
  rows only) with the scorer fit by class contrast (``fit.learner: contrast``), fresh folders;
  ``contrast_val.json`` / ``contrast_test.json``: the same learner on the original images with ``normal``
  as a third class (the ``fit`` run's classifier and split); ``nonormal_contrast_val.json``: the original
  images without ``normal``.
* ``ablation.json`` / ``localise.json`` (issue 19) — the paper's prompts (box, centre point, max point) and
  the fitted ``candidates`` box on the ``plain`` and the ``localise`` recipe; ``*_val.json`` = on val;
  ``*_tta_val.json`` = on val with the CAM averaged with its mirror's (``tta``, flips ``h``).
* ``ing_*_val.json`` (issue 19's ablation, val only) — ``localise_val.json`` with one ingredient set
  instead of the recipe (``output_stride`` 16; ``border_erase`` + ``cam_border_weight``), or the recipe
  plus ``flip_consistency`` 1; adversarial erasing (``adversarial_erase`` 1) alone and with border
  erasing + the CAM-border term; ``ing224_*``: 224 px and 15 epochs, ``plain`` and border erasing + the
  CAM-border term; ``*_mstta_val.json``: the ``ablation`` / ``ing_erase_border`` classifiers with the CAM
  averaged over the image, its mirror and a 1.5x input (``tta``, ``scales: [1.5]``); ``*_l34_val.json``:
  the same with the ``best`` preset's CAM (layer3 + layer4, flip); ``*_seed1_val.json`` /
  ``*_seed2_val.json``: the ``plain``, border-terms, ``localise`` + flip and lesion-head rows (alone and
  with the border terms) trained with seeds 1 and 2; ``ing_lse`` / ``ing_topk``: log-sum-exp and top-k pooling; ``ing_lesion_head*``: the
  auxiliary lesion-vs-normal head (weight 1), alone and with the border terms, its CAM read with
  ``head: lesion`` (``*_classes_val``: the same net's benign + malignant CAM; ``*_mstta_val``: with the
  image, its mirror and a 1.5x input; ``*_camfeat_val``: with ``fit.cam_features``).
* ``guided*_val.json`` / ``guided*_test.json`` (issue 19) — ``localise_val.json`` with the CAM guided by
  the run's label-only fit (``guide_weight`` 4, stride 16; ``guided_flip``: flips only, as
  ``cam_distill.py``; ``guided_flip224``: the same at 224 px; ``guided_flip_cover`` / ``guided_flip_cover1``: plus
  the coverage term (``guide_cover`` 4 / 1); ``guided_flip0``: flips only without the
  guide); ``*_t05_*``: the same classifier with the CAM thresholded at 0.5 instead of 0.8 (run in a copy of
  its folder); the test twins run in a copy of the val folder (its classifier and fit reused);
  ``guided_e12_fit``: ``guided_flip_cover1`` for 12 epochs with ``guide_cover`` 2, the multi-scale CAM and
  the masker's threshold fitted from the data (``value: fit``; the final choice of docs/quality.md, "A CAM
  threshold chosen without masks"; ``--set classifier.train.guide_cover=1`` for the first choice; seed 1:
  ``--set seed=1`` in a fresh folder); ``guided_e12_refined``: the same with the CAM refined with the image
  as the guide (``refine: guided``, radius 0.08; docs/quality.md, "Image-guided CAM refinement"; the
  ``guided`` preset's settings). Run it in a copy of the ``guided_e12_fit`` folder to reuse its classifier.
* ``selftrain_val.json`` / ``selftrain_test.json`` — ``fit.json`` plus self-training, the fitted scorer
  with agreement weights 0, 2, 4, 8, 16 (chosen on val; test once).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any


def base(data: Path) -> dict[str, Any]:
    """The ``fit.json`` config on ``data``."""
    return {
        "name": "busi-fit", "data": {"path": str(data)},
        "split": {"fractions": [0.7, 0.15, 0.15], "use": "test"}, "seed": 0,
        "classifier": {"task": "multiclass", "train": {
            "arch": "resnet18", "epochs": 6, "batch_size": 32, "lr": 1e-3, "weight_decay": 1e-2,
            "class_weights": "auto", "patience": None, "preprocessing": {"input_size": 128, "mode": "resize"}}},
        "target": ["benign", "malignant"], "device": "cpu",
        "pipeline": {
            "cam": {"name": "gradcampp", "params": {"target_layer": "layer4"}},
            "masker": {"name": "threshold", "params": {"value": 0.8}},
            "prompts": [
                {"name": "candidates", "label": "busi_v1", "params": {"output": "box"}},
                {"name": "candidates", "label": "fitted", "params": {"output": "box", "scorer": "fit"}},
                {"name": "box", "params": {"margin": 5}},
                {"name": "candidates", "label": "fitted_point", "params": {"output": "box_point", "scorer": "fit"}},
            ],
            "segmenter": {"name": "classical", "params": {"polarity": "auto"}},
        },
        "report": {"panels": 4, "gallery": 2, "thumb": 96},
    }


#: Issue 19's ablation: each ingredient of ``localise`` alone (or added to it), as ``TrainConfig`` fields.
INGREDIENTS: dict[str, dict[str, Any]] = {
    "ing_os16": {"output_stride": 16},
    "ing_erase_border": {"border_erase": 0.15, "cam_border_weight": 1.0},
    "ing_localise_flip": {"recipe": "localise", "flip_consistency": 1.0},
    "ing_adv_erase": {"adversarial_erase": 1.0},
    "ing_erase_border_adv": {"border_erase": 0.15, "cam_border_weight": 1.0, "adversarial_erase": 1.0},
    "ing_lse": {"pooling": "lse"},
    "ing_topk": {"pooling": "topk"},
    # a larger input and longer training (the budget is 20 min of training on the 2-core machine)
    "ing224_plain": {"preprocessing": {"input_size": 224, "mode": "resize"}, "epochs": 15},
    "ing224_erase_border": {"preprocessing": {"input_size": 224, "mode": "resize"}, "epochs": 15,
                            "border_erase": 0.15, "cam_border_weight": 1.0},
}
#: The auxiliary lesion-vs-normal head (issue 19), read with ``head: lesion`` (and, ``*_classes``, the
#: same classifier's summed benign + malignant CAM).
LESION_HEAD: dict[str, dict[str, Any]] = {
    "ing_lesion_head": {"lesion_head": 1.0},
    "ing_lesion_head_border": {"lesion_head": 1.0, "border_erase": 0.15, "cam_border_weight": 1.0},
}
#: Multi-scale test-time CAMs (issue 19): the CAM averaged over the image, its mirror and a 1.5x input.
MSTTA = {"name": "tta",
         "params": {"method": "gradcampp", "target_layer": "layer4", "flips": ["h"], "scales": [1.5]}}
#: The rows trained again with seed 1 (issue 19's seed check).
SEEDED = ("ablation", "ing_erase_border", "ing_localise_flip", "ing_lesion_head", "ing_lesion_head_border")
#: The training seeds of the seed check.
SEEDS = (1, 2)
#: CAM guidance (issue 19): the label-only fit runs before the training and its chosen region on each
#: train lesion image guides the CAM (``guide_weight``); stride 16 as in ``benchmarks/cam_distill.py``.
#: ``guided_flip``: that probe's augmentation (horizontal flips only); ``guided``: the default augmentation.
GUIDED: dict[str, dict[str, Any]] = {
    "guided": {"output_stride": 16, "guide_weight": 4.0},
    "guided_flip": {"output_stride": 16, "guide_weight": 4.0,
                    "augmentation": {"rotation": 0.0, "scale": [1.0, 1.0], "translate": 0.0, "brightness": 0.0,
                                     "contrast": 0.0}},
    "guided_flip224": {"output_stride": 16, "guide_weight": 4.0, "preprocessing": {"input_size": 224, "mode": "resize"},
                       "augmentation": {"rotation": 0.0, "scale": [1.0, 1.0], "translate": 0.0, "brightness": 0.0,
                                        "contrast": 0.0}},
    "guided_flip_cover": {"output_stride": 16, "guide_weight": 4.0, "guide_cover": 4.0,
                          "augmentation": {"rotation": 0.0, "scale": [1.0, 1.0], "translate": 0.0, "brightness": 0.0,
                                           "contrast": 0.0}},
    "guided_flip_cover1": {"output_stride": 16, "guide_weight": 4.0, "guide_cover": 1.0,
                           "augmentation": {"rotation": 0.0, "scale": [1.0, 1.0], "translate": 0.0, "brightness": 0.0,
                                            "contrast": 0.0}},
    "guided_flip0": {"output_stride": 16,
                     "augmentation": {"rotation": 0.0, "scale": [1.0, 1.0], "translate": 0.0, "brightness": 0.0,
                                      "contrast": 0.0}},
}
#: GradCAM++ of layer4 over the image, its mirror and a 1.5x input (the multi-scale CAM at inference).
MSTTA = {"name": "tta", "params": {"method": "gradcampp", "target_layer": "layer4", "flips": ["h"], "scales": [1.5]}}
#: The ``best`` preset's CAM: GradCAM++ of layer3 and layer4 fused, averaged with the mirror's.
L34TTA = {"name": "tta",
          "params": {"method": "gradcampp", "target_layer": ["layer3", "layer4"], "flips": ["h"]}}


def configs(busi: Path, work: Path) -> dict[str, dict[str, Any]]:
    """Every config by file stem."""
    split = str(work / "runs" / "fit" / "split.json")
    out: dict[str, dict[str, Any]] = {"fit": base(busi)}
    inv = copy.deepcopy(out["fit"])
    inv.update(name="busi-inv-fit", data={"path": str(work / "busi_inv")}, split={"file": split, "use": "test"})
    out["inv"] = inv
    nn = copy.deepcopy(inv)
    nn.update(name="busi-inv-nonormal-fit", data={"path": str(work / "busi_inv_nonormal")},
              split={"file": str(work / "split_nonormal.json"), "use": "test"})
    out["inv_nonormal"] = nn
    prior = copy.deepcopy(nn)
    prior.update(name="busi-inv-nonormal-prior", fit={"prior": "busi-v1"})
    out["inv_nonormal_prior"] = prior
    v = copy.deepcopy(nn)  # no normal class: val, and a classifier trained with the border terms
    v["split"]["use"] = "val"
    out["inv_nonormal_val"] = v
    v = copy.deepcopy(v)
    v["name"] = "busi-inv-nonormal-border"
    v["classifier"]["train"].update(border_erase=0.15, cam_border_weight=1.0)
    out["inv_nonormal_border_val"] = v
    for part in ("val", "test"):  # class contrast (no negative class, no classifier evidence); fresh folders
        c = copy.deepcopy(nn)
        c.update(name=f"busi-inv-nonormal-contrast-{part}", fit={"learner": "contrast"},
                 classifier={"checkpoint": str(work / "runs" / "inv_nonormal" / "classifier.pt"),
                             "task": "multiclass"})
        c["split"]["use"] = part
        c["pipeline"]["prompts"] = [
            {"name": "candidates", "label": "busi_v1", "params": {"output": "box"}},
            {"name": "candidates", "label": "fitted", "params": {"output": "box", "scorer": "fit"}},
            {"name": "candidates", "label": "fitted_pt", "params": {"output": "box_point", "scorer": "fit"}},
            {"name": "box", "params": {"margin": 5}}]
        out[f"inv_nonormal_contrast_{part}"] = c
        o = copy.deepcopy(c)  # the original images with normal: normal is a third class
        o.update(name=f"busi-contrast-{part}", data=copy.deepcopy(out["fit"]["data"]),
                 split={"file": split, "use": part},
                 classifier={"checkpoint": str(work / "runs" / "fit" / "classifier.pt"), "task": "multiclass"})
        o["pipeline"]["prompts"] = o["pipeline"]["prompts"][:3]
        out[f"contrast_{part}"] = o
    o = copy.deepcopy(out["inv_nonormal_contrast_val"])  # the original images without normal
    o.update(name="busi-nonormal-contrast-val", data={"path": str(work / "busi_nonormal")})
    out["nonormal_contrast_val"] = o
    abl = copy.deepcopy(out["fit"])
    abl["pipeline"]["prompts"] = [
        {"name": "box", "params": {"margin": 5}}, {"name": "center_point"}, {"name": "max_point"},
        {"name": "candidates", "label": "fitted", "params": {"output": "box", "scorer": "fit"}}]
    out["ablation"] = abl  # run in a copy of the fit run's folder: its split, classifier and fit are reused
    loc = copy.deepcopy(abl)
    loc["name"] = "busi-localise"
    loc["split"] = {"file": split, "use": "test"}
    loc["classifier"]["train"]["recipe"] = "localise"
    out["localise"] = loc
    tta = {"name": "tta", "params": {"method": "gradcampp", "target_layer": "layer4", "flips": ["h"]}}
    for k in ("ablation", "localise"):
        v = copy.deepcopy(out[k])
        v["split"]["use"] = "val"
        out[f"{k}_val"] = v
        t = copy.deepcopy(v)  # the same with the CAM averaged with its mirror's (test-time flip)
        t["pipeline"]["cam"] = tta
        out[f"{k}_tta_val"] = t
    for stem, knobs in INGREDIENTS.items():  # issue 19's ingredients one at a time, on val
        v = copy.deepcopy(out["localise_val"])
        v["name"] = f"busi-{stem.replace('_', '-')}"
        train = v["classifier"]["train"]
        train.pop("recipe")
        train.update(knobs)
        out[f"{stem}_val"] = v
    for stem, knobs in LESION_HEAD.items():  # the lesion head, its CAM and the class CAM of the same net
        v = copy.deepcopy(out["localise_val"])
        v["name"] = f"busi-{stem.replace('_', '-')}"
        train = v["classifier"]["train"]
        train.pop("recipe")
        train.update(knobs)
        c = copy.deepcopy(v)
        v["pipeline"]["cam"] = {"name": "gradcampp", "params": {"target_layer": "layer4", "head": "lesion"}}
        out[f"{stem}_val"] = v
        out[f"{stem}_classes_val"] = c
    for stem in ("ablation", "ing_erase_border"):  # the same classifiers, multi-scale / two-layer CAMs
        v = copy.deepcopy(out[f"{stem}_val"])
        v["pipeline"]["cam"] = MSTTA
        out[f"{stem}_mstta_val"] = v
        v = copy.deepcopy(out[f"{stem}_val"])
        v["pipeline"]["cam"] = L34TTA
        out[f"{stem}_l34_val"] = v
    v = copy.deepcopy(out["ing_lesion_head_border_val"])  # the lesion head's CAM, multi-scale
    v["pipeline"]["cam"] = {"name": "tta", "params": {**MSTTA["params"], "head": "lesion"}}
    out["ing_lesion_head_border_mstta_val"] = v
    v = copy.deepcopy(out["ing_lesion_head_border_val"])  # the label-only prompts weigh its CAM (item 5)
    v["fit"] = {"cam_features": True}
    out["ing_lesion_head_border_camfeat_val"] = v
    for stem in SEEDED:  # the seed check (training seeds 1 and 2)
        for seed in SEEDS:
            v = copy.deepcopy(out[f"{stem}_val"])
            v["split"] = {"file": split, "use": "val"}  # the seed-0 split: the run's seed makes a split's seed
            v["seed"] = seed
            v["name"] = f"{v['name']}-seed{seed}"
            out[f"{stem}_seed{seed}_val"] = v
    for stem in ("ablation", "ing_erase_border"):  # the seed check's one test look: plain vs border terms
        for seed in (0, *SEEDS):
            src = f"{stem}_val" if seed == 0 else f"{stem}_seed{seed}_val"
            v = copy.deepcopy(out[src])
            v["split"]["use"] = "test"  # the val config's split (its classifier is reused)
            out[src.replace("_val", "_test")] = v
    for stem, knobs in GUIDED.items():  # CAM guidance by the label-only fit's regions (issue 19), val
        v = copy.deepcopy(out["localise_val"])
        v["name"] = f"busi-{stem.replace('_', '-')}"
        train = v["classifier"]["train"]
        train.pop("recipe")
        train.update(copy.deepcopy(knobs))
        h = copy.deepcopy(v)  # the same classifier, the CAM thresholded at 0.5 (cam_distill.py's masker)
        h["pipeline"]["masker"] = {"name": "threshold", "params": {"value": 0.5}}
        for sfx, c in (("", v), ("_t05", h)):
            out[f"{stem}{sfx}_val"] = c
            t = copy.deepcopy(c)
            t["split"]["use"] = "test"  # the val config's folder: its classifier and fit are reused
            out[f"{stem}{sfx}_test"] = t
    # the choice of "A CAM threshold chosen without masks": guided_flip_cover1 for 12 epochs with guide_cover 2,
    # the multi-scale CAM, and the masker's threshold fitted on val against the label-only regions (value: fit)
    g = copy.deepcopy(out["guided_flip_cover1_val"])
    g["name"] = "busi-guided-e12-fit"
    g["classifier"]["train"]["epochs"] = 12
    g["classifier"]["train"]["guide_cover"] = 2.0  # chosen on val after guide_cover 1 (docs/quality.md)
    g["pipeline"]["cam"] = copy.deepcopy(MSTTA)
    g["pipeline"]["masker"] = {"name": "threshold", "params": {"value": "fit"}}
    out["guided_e12_fit_val"] = g
    gt = copy.deepcopy(g)
    gt["split"]["use"] = "test"
    out["guided_e12_fit_test"] = gt
    for stem, cfg in (("guided_e12_refined_val", g), ("guided_e12_refined_test", gt)):
        r = copy.deepcopy(cfg)  # the CAM refined with the image as the guide (chosen on val; the guided preset)
        r["pipeline"]["cam"]["params"].update({"refine": "guided", "refine_radius": 0.08, "refine_eps": 1e-4})
        out[stem] = r
    st = copy.deepcopy(out["fit"])
    st["name"] = "busi-fit-selftrain"
    st["selftrain"] = {}
    st["pipeline"]["prompts"] = (
        [{"name": "candidates", "label": "fitted", "params": {"output": "box", "scorer": "fit", "agreement_weight": 0.0}}]
        + [{"name": "candidates", "label": f"fitted_st{w}",
            "params": {"output": "box", "scorer": "fit", "agreement_weight": float(w)}} for w in (2, 4, 8, 16)]
        + [{"name": "box", "params": {"margin": 5}}])
    st["split"]["use"] = "val"
    out["selftrain_val"] = st
    st_test = copy.deepcopy(st)
    st_test["split"]["use"] = "test"
    out["selftrain_test"] = st_test
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    busi, work = Path(argv[0]).absolute(), Path(argv[1]).absolute()
    work.mkdir(parents=True, exist_ok=True)
    for stem, cfg in configs(busi, work).items():
        (work / f"{stem}.json").write_text(json.dumps(cfg, indent=1) + "\n", encoding="utf-8")
    run = "samprompt -v --no-progress run"
    r = work / "runs"

    def go(stem: str, folder: str, copy_from: str | None = None) -> list[str]:
        pre = [f"cp -r {r / copy_from} {r / folder}"] if copy_from else []  # reuse its classifier (and fit)
        return pre + [f"{run} {work / f'{stem}.json'} --out {r / folder}"]

    lines = [
        f"python benchmarks/quality_fit.py invert {busi} {work / 'busi_inv'}",
        (f"mkdir -p {work / 'busi_inv_nonormal'} && ln -sfn {work / 'busi_inv/benign'} "
         f"{work / 'busi_inv_nonormal/benign'} && ln -sfn {work / 'busi_inv/malignant'} "
         f"{work / 'busi_inv_nonormal/malignant'}"),
        *go("fit", "fit"),
        f"python benchmarks/labelfit_configs.py --drop-normal {r / 'fit/split.json'} {work / 'split_nonormal.json'}",
        *go("inv", "inv"), *go("inv_nonormal", "inv_nonormal"),
        *go("inv_nonormal_prior", "inv_nonormal_prior", "inv_nonormal"),
        *go("inv_nonormal_val", "inv_nonormal_val", "inv_nonormal"),
        *go("inv_nonormal_border_val", "inv_nonormal_border"),
        *go("inv_nonormal_contrast_val", "inv_nonormal_contrast_val"),
        *go("inv_nonormal_contrast_test", "inv_nonormal_contrast_test"),
        *go("contrast_val", "contrast_val"), *go("contrast_test", "contrast_test"),
        (f"mkdir -p {work / 'busi_nonormal'} && ln -sfn {busi / 'benign'} {work / 'busi_nonormal/benign'} && "
         f"ln -sfn {busi / 'malignant'} {work / 'busi_nonormal/malignant'}"),
        *go("nonormal_contrast_val", "nonormal_contrast_val"),
        *go("ablation", "ablation", "fit"), f"cp {r / 'ablation/summary.csv'} {r / 'ablation_test_summary.csv'}",
        *go("ablation_val", "ablation"),
        *go("localise", "localise"), f"cp {r / 'localise/summary.csv'} {r / 'localise_test_summary.csv'}",
        *go("localise_val", "localise"),
        *go("ablation_tta_val", "ablation_tta", "ablation"), *go("localise_tta_val", "localise_tta", "localise"),
        *go("selftrain_val", "selftrain", "fit"), f"cp {r / 'selftrain/summary.csv'} {r / 'selftrain_val_summary.csv'}",
        *go("selftrain_test", "selftrain"),
        *[c for stem in INGREDIENTS for c in go(f"{stem}_val", stem)],
        *[c for stem in LESION_HEAD for c in go(f"{stem}_val", stem)
          + go(f"{stem}_classes_val", f"{stem}_classes", stem)],
        *go("ablation_mstta_val", "ablation_mstta", "ablation"),
        *go("ing_erase_border_mstta_val", "ing_erase_border_mstta", "ing_erase_border"),
        *go("ing_lesion_head_border_mstta_val", "ing_lesion_head_border_mstta", "ing_lesion_head_border"),
        f"cp -r {r / 'ing_lesion_head_border'} {r / 'ing_lesion_head_border_camfeat'}",
        f"rm {r / 'ing_lesion_head_border_camfeat/scorer.json'}",
        *go("ing_lesion_head_border_camfeat_val", "ing_lesion_head_border_camfeat"),
        *go("ablation_l34_val", "ablation_l34", "ablation"),
        *go("ing_erase_border_l34_val", "ing_erase_border_l34", "ing_erase_border"),
        *[c for seed in SEEDS for stem in SEEDED for c in go(f"{stem}_seed{seed}_val", f"{stem}_seed{seed}")],
        *[c for stem in ("ablation", "ing_erase_border") for sfx in ("", "_seed1", "_seed2")
          for c in go(f"{stem}{sfx}_test", f"{stem}{sfx}_test", f"{stem}{sfx}")],
        *[c for stem in GUIDED for c in go(f"{stem}_val", stem) + go(f"{stem}_t05_val", f"{stem}_t05", stem)],
        *[c for stem in GUIDED for sfx in ("", "_t05")
          for c in go(f"{stem}{sfx}_test", f"{stem}{sfx}_test", f"{stem}{sfx}")],
        *go("guided_e12_fit_val", "guided_e12_fit"), *go("guided_e12_fit_test", "guided_e12_fit_test", "guided_e12_fit"),
    ]
    print("\n".join(lines))
    return 0


def drop_normal(src: Path, dst: Path) -> None:
    """A split file without the ``normal`` images (ids ``normal/...``) and without a fingerprint."""
    blob = json.loads(src.read_text(encoding="utf-8"))
    for part in ("train", "val", "test"):
        blob[part] = [i for i in blob[part] if not i.startswith("normal/")]
    blob["fingerprint"] = ""
    dst.write_text(json.dumps(blob), encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--drop-normal":
        drop_normal(Path(sys.argv[2]), Path(sys.argv[3]))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
