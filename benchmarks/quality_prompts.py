"""Prompts from image labels only: candidate regions scored with the CAM (BUSI, samprompt split seed 0).

Stages (each caches to $QUALITY_CACHE, default /tmp/qcache):

    .venv/bin/python benchmarks/quality_prompts.py candidates   # image candidates + features, all splits
    .venv/bin/python benchmarks/quality_prompts.py cams         # CAMs of the from-scratch classifier
    .venv/bin/python benchmarks/quality_prompts.py eval [CAM_VARIANT] [--no-seg] [--report]
        # fit scorers on train, select on val; --report also evaluates the TEST split (report only)
    .venv/bin/python benchmarks/quality_prompts.py refine       # polar refinement of the top-k candidates
    .venv/bin/python benchmarks/quality_prompts.py eval2 [--report]
        # second-stage scorer on the refined regions (MIL labels only; supervised reference)
    .venv/bin/python benchmarks/quality_prompts.py shadow       # wrong choices; shadow_penalty grid (train/val)
    .venv/bin/python benchmarks/quality_prompts.py strategy val [refine_top_k=0 ...]
        # the shipped strategy end to end on one split (fresh proposals; params as key=JSON)

Scorers: "prior" (HAND_WEIGHTS below), "mil" (logistic multiple-instance model fit on TRAIN image
labels only: an image is abnormal iff its best candidate is a lesion; L2 chosen on VAL by image-level
AUC, labels only), "sup" (reference that USES TRAIN MASKS: logistic on candidate IoU > 0.5 with the
ground truth; L2 chosen on val masks). Baseline: the paper's prompt (CAM > 0.8, largest component box).
Reported on the TEST lesion images: box IoU vs GT box, hit rate (IoU > 0.5), positive point inside the
lesion, end-to-end Dice with the weight-free classical segmenter.
"""

from __future__ import annotations

import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from quality_common import CACHE, lesions, load_records

from samprompt.prompts.candidates import (
    CAM_FEATURES,
    FEATURE_NAMES,
    REFINED_FEATURE_NAMES,
    Candidate,
    CandidateScorer,
    cam_features,
    candidate_features,
    propose_candidates,
    refine_candidates,
    region_prompt,
)
from samprompt.regions import box_iou, mask_to_box

CAND = CACHE / "cands.pkl"
REFINED = CACHE / "refined.pkl"

#: Hand-set weights on standardised features (FEATURE_NAMES order): the "hand" row of docs/quality.md.
HAND_WEIGHTS = (0.0, 0.0, -0.5, 0.7, 0.5, -0.3, -0.7, 0.0, 0.0, -0.7, 0.3, 0.5, 0.7, 0.5, -0.3, 0.3, 0.3,
                1.0, 0.0, 0.3, 0.3)


def select_mil(Z, lab, tr, va, l2s, tag):  # type: ignore[no-untyped-def]
    """Fit the labels-only MIL scorer for each L2 in ``l2s`` on ``tr``; keep the best val image-AUC.

    Returns ``(auc, weights, l2)``; prints each candidate's AUC under ``tag``.
    """
    best = None
    for l2 in l2s:
        w = fit_logistic([Z[k] for k in tr], lab[tr], l2, mil=True)
        a = auc([float(np.max(Z[k] @ w)) for k in va], lab[va])
        print(f"{tag} l2={l2} val image-AUC {a:.3f}", flush=True)
        if best is None or a > best[0]:
            best = (a, w, l2)
    return best


def stage_candidates() -> None:
    from skimage.transform import resize

    recs = load_records()
    out = []
    t = time.time()
    for k, r in enumerate(recs):
        cands = propose_candidates(r["grey"])
        F = candidate_features(r["grey"], cands)
        shape = cands[0].mask.shape if cands else (1, 1)
        gt = resize(r["mask"].astype(np.float32), shape, order=1) > 0.5 if cands else None
        gtbox = mask_to_box(r["mask"])
        ious, bious = [], []
        for c in cands:
            ious.append(np.count_nonzero(c.mask & gt) / max(1, np.count_nonzero(c.mask | gt)))
            bious.append(box_iou(c.box(), gtbox))
        out.append({"id": r["id"], "masks": np.packbits(np.array([c.mask for c in cands]), axis=-1) if cands else None,
                    "shape": shape, "scale": cands[0].scale if cands else None, "hits": [c.hits for c in cands],
                    "F": F, "iou": np.array(ious), "biou": np.array(bious)})
        if k % 50 == 0:
            print(k, len(recs), f"{time.time() - t:.0f}s", flush=True)
    with open(CAND, "wb") as f:
        pickle.dump(out, f, protocol=4)


def unpack(entry) -> list[Candidate]:
    if entry["masks"] is None:
        return []
    w = entry["shape"][1]
    ms = np.unpackbits(entry["masks"], axis=-1)[..., :w].astype(bool)
    return [Candidate(mask=m, scale=entry["scale"], hits=hh) for m, hh in zip(ms, entry["hits"])]


def stage_cams() -> None:
    """CAM variants at 128 px long side per image: gradcampp layer4, layer3+4 fused, with flip TTA."""
    import torch
    from skimage.transform import resize

    from samprompt.cams.fused import TTACamExtractor
    from samprompt.classifiers import load_classifier

    torch.set_num_threads(1)
    model, info = load_classifier(str(CACHE / "clf_resnet18_128.pt"), device="cpu")
    names = list(info.class_names)
    lesion = tuple(i for i, n in enumerate(names) if n != "normal")
    recs = load_records()
    variants = {
        "gcpp_l4": {"method": "gradcampp", "target_layer": "layer4", "flips": []},
        "gcpp_l34": {"method": "gradcampp", "target_layer": ["layer3", "layer4"], "flips": []},
        "gcpp_l34_tta": {"method": "gradcampp", "target_layer": ["layer3", "layer4"], "flips": ["h"]},
        "layercam_l34_tta": {"method": "layercam", "target_layer": ["layer3", "layer4"], "flips": ["h"]},
    }
    out = {}
    for vname, kw in variants.items():
        ext = TTACamExtractor(fusion="mean", target=list(lesion), **kw)
        cams, probs = [], []
        t = time.time()
        for s in range(0, len(recs), 32):
            chunk = [np.repeat(r["grey"][..., None], 3, axis=2) for r in recs[s:s + 32]]
            res = ext(model, chunk, preprocessing=info.preprocessing)
            for r, c in zip(recs[s:s + 32], res):
                H, W = r["grey"].shape
                sc = min(1.0, 128 / max(H, W))
                cams.append(resize(c.cam, (max(8, round(H * sc)), max(8, round(W * sc))), order=1).astype(np.float16))
                probs.append(c.probabilities)
        out[vname] = {"cams": cams, "probs": probs}
        print(vname, f"{time.time() - t:.0f}s", flush=True)
    out["class_names"] = names
    with open(CACHE / "cams.pkl", "wb") as f:
        pickle.dump(out, f, protocol=4)


def fit_logistic(Xs, ys, l2, mil):
    import torch

    w = torch.zeros(Xs[0].shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")
    if mil:
        tens = [torch.tensor(x) for x in Xs]
        y = torch.tensor(ys, dtype=torch.float64)
        pos_w = (len(y) - y.sum()) / max(1.0, float(y.sum()))

        def loss_fn():
            s = torch.stack([torch.logsumexp(x @ w, 0) for x in tens])
            return torch.nn.functional.binary_cross_entropy_with_logits(s, y, pos_weight=pos_w) + l2 * (w[1:] ** 2).sum()
    else:
        X = torch.tensor(np.concatenate(Xs))
        y = torch.tensor(np.concatenate(ys), dtype=torch.float64)
        pos_w = (len(y) - y.sum()) / max(1.0, float(y.sum()))

        def loss_fn():
            return torch.nn.functional.binary_cross_entropy_with_logits(X @ w, y, pos_weight=pos_w) + l2 * (w[1:] ** 2).sum()

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy()


def auc(scores, labels):
    scores, labels = np.asarray(scores), np.asarray(labels)
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    return float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())


def stage_eval(cam_variant: str = "gcpp_l34_tta", segment: bool = True, splits=("val",)) -> dict:
    from skimage.transform import resize

    from samprompt.maskers.builtin import ThresholdMasker
    from samprompt.metrics import dice, summarize
    from samprompt.prompts.base import Prompt
    from samprompt.prompts.builtin import inside_point
    from samprompt.segmenters.classical import ClassicalSegmenter

    seg = ClassicalSegmenter()
    seg_loose = ClassicalSegmenter(stretch_to_box=False)
    recs = load_records()
    with open(CAND, "rb") as f:
        cands = pickle.load(f)
    cams = None
    if (CACHE / "cams.pkl").exists() and cam_variant != "none":
        with open(CACHE / "cams.pkl", "rb") as f:
            cams = pickle.load(f)[cam_variant]["cams"]
    data = []
    for k, (r, e) in enumerate(zip(recs, cands)):
        F = e["F"].copy()
        if cams is not None and len(F):
            cl = unpack(e)
            F[:, list(CAM_FEATURES)] = cam_features(cl, cams[k].astype(np.float32))
        data.append(F)
    tr = [k for k, r in enumerate(recs) if r["split"] == "train" and len(data[k])]
    mu = np.concatenate([data[k] for k in tr]).mean(0)
    sd = np.concatenate([data[k] for k in tr]).std(0) + 1e-9
    mu[0], sd[0] = 0.0, 1.0
    Z = [(F - mu) / sd if len(F) else F for F in data]
    for F in Z:
        if len(F):
            F[:, 0] = 1.0
    lab = np.array([0 if r["label"] == "normal" else 1 for r in recs])

    def pick(split, w):
        return {k: int(np.argmax(Z[k] @ w)) for k, r in enumerate(recs) if r["split"] == split and len(Z[k])}

    scorers = {}
    scorers["prior (hand weights)"] = (np.asarray(HAND_WEIGHTS), "none")
    # MIL, label only; model selection on val by image AUC (labels only)
    va = [k for k, r in enumerate(recs) if r["split"] == "val" and len(Z[k])]
    a, w, l2 = select_mil(Z, lab, tr, va, (1e-4, 1e-3, 1e-2), "mil")
    scorers["mil (labels only)"] = (w, f"l2={l2}, val AUC {a:.3f}")
    # supervised reference (uses train masks, val masks for l2)
    trl = [k for k in tr if lab[k] == 1]
    best = None
    for l2 in (1e-3, 1e-2, 1e-1):
        w = fit_logistic([Z[k] for k in trl], [(cands[k]["iou"] > 0.5).astype(float) for k in trl], l2, mil=False)
        sel = pick("val", w)
        m = np.mean([cands[k]["biou"][j] for k, j in sel.items() if lab[k] == 1])
        if best is None or m > best[0]:
            best = (m, w, l2)
    scorers["sup (uses train masks)"] = (best[1], f"l2={best[2]}, val box IoU {best[0]:.3f}")

    report = {"cam_variant": cam_variant, "features": list(FEATURE_NAMES), "norm_mean": mu.tolist(),
              "norm_scale": sd.tolist(), "rows": {}}
    for split in splits:
        ids = [k for k, r in enumerate(recs) if r["split"] == split and lab[k] == 1 and r["mask"].any()]
        rows = {}
        if cams is not None:  # paper baseline: CAM > 0.8, largest component, its box
            b = {"biou": [], "inside": [], "dice": []}
            for k in ids:
                r = recs[k]
                cam = resize(cams[k].astype(np.float32), r["mask"].shape, order=1)
                pm = ThresholdMasker(value=0.8)(cam)
                box = mask_to_box(pm)
                b["biou"].append(box_iou(box, mask_to_box(r["mask"])))
                pt = inside_point(pm)
                b["inside"].append(pt is not None and bool(r["mask"][int(pt[1]), int(pt[0])]))
                if segment:
                    emb = seg.embed(r["grey"])
                    b["dice"].append(dice(seg_loose.decode(emb, [Prompt(box=box)]).masks[0], r["mask"]) if box is not None else 0.0)
            rows["paper: CAM>0.8 largest component"] = b
        for name, (w, note) in scorers.items():
            sel = pick(split, w)
            b = {"biou": [], "inside": [], "dice": [], "dice_loose": [], "biou_cascade": [], "dice_cascade": [],
                 "dice_pts": [], "note": note}
            for k in ids:
                r = recs[k]
                if k not in sel:
                    for key in b:
                        if key != "note":
                            b[key].append(0.0)
                    continue
                c = unpack(cands[k])[sel[k]]
                region = c.full_mask(r["mask"].shape)
                b["biou"].append(float(cands[k]["biou"][sel[k]]))
                pt = inside_point(region)
                b["inside"].append(pt is not None and bool(r["mask"][int(pt[1]), int(pt[0])]))
                if segment:
                    emb = seg.embed(r["grey"])
                    p = region_prompt(region, "box")
                    b["dice"].append(dice(seg.decode(emb, [p]).masks[0], r["mask"]))
                    loose = seg_loose.decode(emb, [p]).masks[0]
                    b["dice_loose"].append(dice(loose, r["mask"]))
                    # cascade: the loose mask's box, decoded again as a tight box
                    p2 = region_prompt(loose, "box") if loose.any() else p
                    b["biou_cascade"].append(box_iou(p2.box, mask_to_box(r["mask"])))
                    b["dice_cascade"].append(dice(seg.decode(emb, [p2]).masks[0], r["mask"]))
                    p3 = region_prompt(region, "box_points", n_points=3, n_negative=4)
                    b["dice_pts"].append(dice(seg_loose.decode(emb, [p3]).masks[0], r["mask"]))
            rows[name] = b
        # oracle: best candidate available (upper bound of any scorer)
        rows["oracle (best candidate by GT box IoU)"] = {
            "biou": [float(cands[k]["biou"].max()) if len(cands[k]["biou"]) else 0.0 for k in ids]}
        report["rows"][split] = {}
        print(f"--- {split}: {len(ids)} lesion images, CAM {cam_variant}")
        for name, b in rows.items():
            s = {m: summarize(np.asarray(v, float)).to_dict() for m, v in b.items() if m != "note"}
            s["hit50"] = float(np.mean(np.asarray(b["biou"]) > 0.5))
            s["note"] = b.get("note", "")
            report["rows"][split][name] = s
            print(f"{name:42s} boxIoU {s['biou']['mean']:.3f} hit50 {s['hit50']:.2f}"
                  + (f" inside {s['inside']['mean']:.2f}" if "inside" in s else "")
                  + (f" dice(loose box) {s['dice']['mean']:.3f}" if "dice" in s and "dice_loose" not in s and s["dice"]["n"] else "")
                  + (f" dice {s['dice']['mean']:.3f} loose {s['dice_loose']['mean']:.3f} cascade: boxIoU {s['biou_cascade']['mean']:.3f}"
                     f" dice {s['dice_cascade']['mean']:.3f} box+pts(loose) {s['dice_pts']['mean']:.3f}" if s.get("dice_loose") and s["dice"]["n"] else "")
                  + f"  {s['note']}", flush=True)
    report["weights"] = {n: w.tolist() for n, (w, _) in scorers.items()}
    (CACHE / f"prompts_eval_{cam_variant}.json").write_text(json.dumps(report, indent=1))
    return report


def stage_refine(top_k: int = 6, margin: float = 0.1) -> None:
    """Refine the top-k first-stage candidates of every image (module defaults) and cache their features."""
    from samprompt.prompts.builtin import inside_point
    from samprompt.segmenters.classical import ClassicalSegmenter

    recs = load_records()
    with open(CAND, "rb") as f:
        cands = pickle.load(f)
    scorer = CandidateScorer()
    seg = ClassicalSegmenter(stretch_to_box=False)
    out = []
    t = time.time()
    for k, (r, e) in enumerate(zip(recs, cands)):
        cl = unpack(e)
        if not cl:
            out.append(None)
            continue
        t1 = time.time()
        _, full, F = refine_candidates(r["grey"], cl, scorer(e["F"]), top_k=top_k, margin=margin, segmenter=seg)
        gt = r["mask"]
        gtbox = mask_to_box(gt) if gt.any() else None
        boxes = [mask_to_box(m) for m in full]
        pts = [inside_point(m) for m in full]
        out.append({"F": F, "boxes": np.array(boxes), "pts": np.array(pts),
                    "biou": np.array([box_iou(b, gtbox) if gtbox is not None else np.nan for b in boxes]),
                    "inside": np.array([bool(gt[int(p[1]), int(p[0])]) for p in pts]),
                    "miou": np.array([np.count_nonzero(m & gt) / max(1, np.count_nonzero(m | gt)) for m in full]),
                    "seconds": time.time() - t1})
        if k % 100 == 0:
            print(k, len(recs), f"{time.time() - t:.0f}s", flush=True)
    with open(REFINED, "wb") as f:
        pickle.dump(out, f, protocol=4)


def stage_eval2(splits=("val",), point_quantile: float = 0.5) -> dict:
    """Second-stage scorers on the refined top-k regions: MIL (labels only) and a supervised reference."""
    from samprompt.metrics import dice, summarize
    from samprompt.prompts.base import Prompt
    from samprompt.segmenters.classical import ClassicalSegmenter

    recs = load_records()
    with open(REFINED, "rb") as f:
        ref = pickle.load(f)
    lab = np.array([0 if r["label"] == "normal" else 1 for r in recs])
    cols = [i for i, n in enumerate(REFINED_FEATURE_NAMES) if not n.startswith("cam_")]
    X = [e["F"] if e is not None else np.zeros((0, len(REFINED_FEATURE_NAMES))) for e in ref]
    tr = [k for k, r in enumerate(recs) if r["split"] == "train" and len(X[k])]
    va = [k for k, r in enumerate(recs) if r["split"] == "val" and len(X[k])]
    allx = np.concatenate([X[k] for k in tr])
    mu, sd = allx.mean(0), allx.std(0) + 1e-9
    mu[0], sd[0] = 0.0, 1.0
    mu[[i for i in range(len(mu)) if i not in cols]] = 0.0
    sd[[i for i in range(len(sd)) if i not in cols]] = 1.0

    def z(x):
        out = (x - mu) / sd
        out[:, 0] = 1.0
        return out[:, cols]

    Z = [z(x) if len(x) else x[:, cols] for x in X]
    scorers = {}
    a, w, l2 = select_mil(Z, lab, tr, va, (1e-3, 1e-2, 3e-2), "mil2")
    scorers["refined + MIL (labels only)"] = (w, f"l2={l2}, val AUC {a:.3f}")
    trl = [k for k in tr if lab[k] == 1]
    best = None
    for l2 in (1e-3, 1e-2):
        w = fit_logistic([Z[k] for k in trl], [(ref[k]["biou"] > 0.5).astype(float) for k in trl], l2, mil=False)
        vl = [k for k in va if lab[k] == 1]
        m = np.mean([ref[k]["biou"][int(np.argmax(Z[k] @ w))] for k in vl])
        if best is None or m > best[0]:
            best = (m, w, l2)
    scorers["refined + supervised (uses train masks)"] = (best[1], f"l2={best[2]}, val box IoU {best[0]:.3f}")
    scorers["refined, first-stage choice"] = (None, "top-1 of the first stage, refined")
    # point threshold: the score quantile over TRAIN lesion+normal images' chosen regions (labels only)
    w_mil = scorers["refined + MIL (labels only)"][0]
    top_tr = np.array([float(np.max(Z[k] @ w_mil)) for k in tr if lab[k] == 1])
    thr = float(np.quantile(top_tr, point_quantile))
    full_w = np.zeros(len(REFINED_FEATURE_NAMES))
    full_w[cols] = w_mil
    report = {"features": list(REFINED_FEATURE_NAMES), "weights": full_w.tolist(), "mean": mu.tolist(),
              "scale": sd.tolist(), "point_min_score": thr, "rows": {}}
    print("REFINED_DEFAULT_WEIGHTS", tuple(float(f"{v:.4g}") for v in full_w))
    print("REFINED_DEFAULT_MEAN", tuple(float(f"{v:.4g}") for v in mu))
    print("REFINED_DEFAULT_SCALE", tuple(float(f"{v:.4g}") for v in sd))
    print(f"point_min_score (train lesion median of the chosen score) {thr:.3f}")
    seg = ClassicalSegmenter()
    for split in splits:
        ids = [k for k, r in enumerate(recs) if r["split"] == split and lab[k] == 1 and r["mask"].any()]
        report["rows"][split] = {}
        print(f"--- {split}: {len(ids)} lesion images")
        for name, (w, note) in scorers.items():
            b = {"biou": [], "inside": [], "dice": [], "dice_pt": [], "score": [], "seconds": []}
            for k in ids:
                r = recs[k]
                if not len(Z[k]):
                    for key, values in b.items():
                        values.append(0.0 if key != "score" else -np.inf)
                    continue
                e = ref[k]
                sc = Z[k] @ (w if w is not None else w_mil)
                j = 0 if w is None else int(np.argmax(sc))
                b["biou"].append(float(e["biou"][j]))
                b["inside"].append(float(e["inside"][j]))
                b["score"].append(float(sc[j]))
                b["seconds"].append(e["seconds"])
                emb = seg.embed(r["grey"])
                box = e["boxes"][j].astype(np.float32)
                b["dice"].append(dice(seg.decode(emb, [Prompt(box=box)]).masks[0], r["mask"]))
                pt = Prompt(box=box, points=e["pts"][j][None].astype(np.float32), point_labels=np.ones(1, np.int64))
                b["dice_pt"].append(dice(seg.decode(emb, [pt]).masks[0], r["mask"]))
            sc = np.asarray(b["score"])
            conf = sc >= thr
            s = {m: summarize(np.asarray(v, float)).to_dict() for m, v in b.items() if m not in ("score",)}
            s["hit50"] = float(np.mean(np.asarray(b["biou"]) > 0.5))
            s["inside_confident"] = float(np.mean(np.asarray(b["inside"])[conf])) if conf.any() else float("nan")
            s["point_coverage"] = float(conf.mean())
            s["note"] = note
            report["rows"][split][name] = s
            print(f"{name:42s} boxIoU {s['biou']['mean']:.3f} hit50 {s['hit50']:.2f} inside {s['inside']['mean']:.2f}"
                  f" inside(score>=thr) {s['inside_confident']:.2f} on {s['point_coverage']:.0%}"
                  f" dice {s['dice']['mean']:.3f} dice(box+pt) {s['dice_pt']['mean']:.3f}"
                  f" s/img {s['seconds']['mean']:.2f}  {note}", flush=True)
        s = {"biou": summarize(np.array([ref[k]["biou"].max() if ref[k] else 0.0 for k in ids])).to_dict()}
        report["rows"][split]["oracle (best refined region by GT box IoU)"] = s
        print(f"{'oracle (best refined region)':42s} boxIoU {s['biou']['mean']:.3f}")
    (CACHE / "prompts_eval_refined.json").write_text(json.dumps(report, indent=1))
    return report


def stage_shadow(penalties=(0.0, 0.5, 1.0, 2.0, 4.0)) -> None:
    """Where the shipped second-stage choice goes wrong (train + val), and the ``shadow_penalty`` grid:
    shipped refined score minus ``penalty`` x :func:`under_smaller_region` of the 6 refined boxes."""
    from samprompt.prompts.candidates import under_smaller_region

    recs = load_records()
    with open(REFINED, "rb") as f:
        ref = pickle.load(f)
    scorer = CandidateScorer(names=REFINED_FEATURE_NAMES)
    rows = []
    for k, r in enumerate(recs):
        if r["split"] not in ("train", "val") or r["label"] == "normal" or not r["mask"].any() or ref[k] is None:
            continue
        e = ref[k]
        j = int(np.argmax(scorer(e["F"])))
        b, g = e["boxes"][j], mask_to_box(r["mask"])
        gw, gh = g[2] - g[0], g[3] - g[1]
        rows.append((e["biou"][j], ((b[0] + b[2]) - (g[0] + g[2])) / 2 / gw, ((b[1] + b[3]) - (g[1] + g[3])) / 2 / gh,
                     (b[2] - b[0]) * (b[3] - b[1]) / (gw * gh), e["biou"].max()))
    a = np.array(rows)
    wrong = a[:, 0] < 0.1
    print(f"train+val lesion images {len(a)}: chosen box IoU < 0.1 on {wrong.mean():.1%}; of those "
          f"{np.mean(a[wrong, 4] > 0.5):.0%} have a refined region with IoU > 0.5, "
          f"{np.mean((a[wrong, 2] > 0.5) & (np.abs(a[wrong, 1]) < 1)):.0%} lie under the lesion, "
          f"{np.mean(np.abs(a[wrong, 1]) >= 1):.0%} beside it, {np.mean((a[wrong, 2] < -0.5) & (np.abs(a[wrong, 1]) < 1)):.0%} "
          f"above it; median area ratio to the lesion's box {np.median(a[wrong, 3]):.1f}")
    for split in ("train", "val"):
        ids = [k for k, r in enumerate(recs) if r["split"] == split and r["label"] != "normal" and r["mask"].any()
               and ref[k] is not None]
        for pen in penalties:
            ch = [int(np.argmax(scorer(ref[k]["F"]) - pen * under_smaller_region(ref[k]["boxes"]))) for k in ids]
            bi = np.array([ref[k]["biou"][j] for k, j in zip(ids, ch)])
            ins = np.array([ref[k]["inside"][j] for k, j in zip(ids, ch)])
            print(f"shadow_penalty {pen:g} {split} (n={len(ids)}): box IoU {bi.mean():.3f} hit50 {(bi > 0.5).mean():.2f} "
                  f"inside {ins.mean():.2f} wrong place {(bi < 0.1).mean():.3f}")
    # the flag as a 30th feature of the labels-only MIL scorer instead of a hand-set penalty
    lab = np.array([0 if r["label"] == "normal" else 1 for r in recs])
    cols = [i for i, n in enumerate(REFINED_FEATURE_NAMES) if not n.startswith("cam_")]

    def z(e):  # type: ignore[no-untyped-def]
        x = (e["F"] - scorer.mean) / np.where(scorer.scale > 0, scorer.scale, 1)
        x[:, 0] = 1.0
        return np.concatenate([x[:, cols], under_smaller_region(e["boxes"])[:, None].astype(float)], 1)

    Z = [z(e) if e is not None and len(e["F"]) else np.zeros((0, len(cols) + 1)) for e in ref]
    tr = [k for k, r in enumerate(recs) if r["split"] == "train" and len(Z[k])]
    va = [k for k, r in enumerate(recs) if r["split"] == "val" and len(Z[k])]
    _, w, _ = select_mil(Z, lab, tr, va, (1e-3, 1e-2, 3e-2), "MIL with the flag as a feature")
    vl = [k for k in va if lab[k] == 1 and recs[k]["mask"].any()]
    bi = np.array([ref[k]["biou"][int(np.argmax(Z[k] @ w))] for k in vl])
    print(f"MIL with the flag as a feature: its weight {w[-1]:.3f}, val box IoU {bi.mean():.3f}")


def stage_strategy(split: str = "val", **params) -> dict:
    """The SHIPPED ``candidates`` strategy end to end (fresh proposals, module defaults + ``params``), as the
    runner calls it (no CAM, empty pseudo mask), then the ``classical`` segmenter on its prompt.

    Points inside is counted as the runner does: over the images whose prompt carries a positive point.
    """
    from samprompt.metrics import dice, summarize
    from samprompt.prompts.candidates import CandidatePromptStrategy
    from samprompt.segmenters.classical import ClassicalSegmenter

    recs = load_records()
    strat = CandidatePromptStrategy(**{"output": "box_point", **params})
    seg = ClassicalSegmenter()
    b = {"biou": [], "dice": [], "seconds": []}
    inside = []
    for r in lesions(recs, split):
        img = np.repeat(r["grey"][..., None], 3, axis=2)
        H, W = r["grey"].shape
        t = time.time()
        p = strat(np.zeros((H, W), bool), np.zeros((H, W), np.float32), image=img)
        b["seconds"].append(time.time() - t)
        if p is None:
            b["biou"].append(0.0)
            b["dice"].append(0.0)
            continue
        b["biou"].append(box_iou(p.box, mask_to_box(r["mask"])) if p.box is not None else 0.0)
        b["dice"].append(dice(seg.decode(seg.embed(img), [p]).masks[0], r["mask"]))
        for x, y in p.points[p.point_labels == 1]:
            inside.append(bool(r["mask"][int(y), int(x)]))
    s = {m: summarize(np.asarray(v, float)).to_dict() for m, v in b.items()}
    s["hit50"] = float(np.mean(np.asarray(b["biou"]) > 0.5))
    s["inside"] = float(np.mean(inside)) if inside else float("nan")
    s["point_coverage"] = len(inside) / len(b["biou"])
    s["n"] = len(b["biou"])
    s["params"] = strat.params.model_dump(mode="json")
    print(f"strategy {split} n={s['n']} {params}: boxIoU {s['biou']['mean']:.3f} [{s['biou']['ci_low']:.3f}, "
          f"{s['biou']['ci_high']:.3f}] hit50 {s['hit50']:.2f} points inside {s['inside']:.3f} on "
          f"{s['point_coverage']:.0%} of the images, dice {s['dice']['mean']:.3f} [{s['dice']['ci_low']:.3f}, "
          f"{s['dice']['ci_high']:.3f}] s/img {s['seconds']['mean']:.2f}", flush=True)
    tag = "_".join(f"{k}={Path(str(v)).name}" for k, v in params.items())
    (CACHE / f"prompts_strategy_{split}{'_' + tag if tag else ''}.json").write_text(json.dumps(s, indent=1))
    return s


if __name__ == "__main__":
    stage = sys.argv[1]
    if stage == "candidates":
        stage_candidates()
    elif stage == "cams":
        stage_cams()
    elif stage == "refine":  # refine [TOP_K]
        stage_refine(top_k=int(sys.argv[2]) if len(sys.argv) > 2 else 6)
    elif stage == "strategy":  # strategy SPLIT [key=json-value ...]
        stage_strategy(sys.argv[2] if len(sys.argv) > 2 else "val",
                       **{a.split("=", 1)[0]: json.loads(a.split("=", 1)[1]) for a in sys.argv[3:]})
    elif stage == "shadow":
        stage_shadow()
    elif stage == "eval2":
        stage_eval2(splits=("val", "test") if "--report" in sys.argv else ("val",))
    else:
        stage_eval(sys.argv[2] if len(sys.argv) > 2 else "gcpp_l34_tta", segment="--no-seg" not in sys.argv,
                   splits=("val", "test") if "--report" in sys.argv else ("val",))
