"""Three label-only ideas for choosing among the refined candidates that did NOT pay off (docs/quality.md).

All three start from the cache of ``quality_prompts.py refine`` (the 6 refined candidate regions of every
image, their features, boxes and scores against the ground truth) and the from-scratch classifier of
``quality_train_classifier.py``; choices are made on train / val, the numbers printed are val unless said.

    .venv/bin/python benchmarks/quality_ideas.py pseudo              # pseudo masks of the shipped strategy
    .venv/bin/python benchmarks/quality_ideas.py selftrain r1 0.0    # segmentation net on all pseudo masks
    .venv/bin/python benchmarks/quality_ideas.py selftrain r1q 0.4   # ... on the 60 % most confident ones
    .venv/bin/python benchmarks/quality_ideas.py selfeval r1         # its val figures
    .venv/bin/python benchmarks/quality_ideas.py selfagree r1q --test # agreement re-scoring (val; test once)
    .venv/bin/python benchmarks/quality_ideas.py selfagree r1q --shadow  # ... on top of the shadow penalty
    .venv/bin/python benchmarks/quality_ideas.py cropmil             # MIL: linear features + crop CNN
    .venv/bin/python benchmarks/quality_ideas.py occlusion           # classifier occlusion test per region
    .venv/bin/python benchmarks/quality_ideas.py anomaly 128         # patch anomaly vs normal images
    .venv/bin/python benchmarks/quality_ideas.py agreement [KEEP [SEED]]  # the SHIPPED self-training recipe

* ``selftrain`` — self-training: the shipped ``candidates`` strategy's region of every TRAIN image, decoded
  by the ``classical`` segmenter, is a pseudo mask (normal images: empty); a ResNet18 (initialised from the
  classifier) with an FPN decoder is trained on them at 128 px (BCE + Dice, flips, 20 epochs), and on val
  its map gives (a) a box (component of map > 0.5 with the most mass), (b) a re-scoring of the 6 refined
  regions (mean map in the ellipse of each box); ``selfagree`` adds ``lam`` x (box IoU of each refined
  region with the net's box) to the shipped score, ``lam`` chosen on val.
* ``cropmil`` — a multiple-instance scorer trained on image labels only (lesion vs normal image,
  log-sum-exp over the 6 refined regions): linear in the refined features (initialised at the shipped
  weights) plus a small CNN on a 64 px crop of each region's box with 25 % context; epoch chosen by val
  image-level AUC.
* ``occlusion`` — each refined region (the ellipse of its box, grown by 15 %) is erased from the image
  (filled with a mask-aware blur of its surroundings) and the classifier's lesion log-odds
  ``logsumexp(benign, malignant) - normal`` (flip-averaged) are recomputed; the drop is the region's
  evidence, alone or added to the shipped score with weight beta.
* ``anomaly`` — how unlike the NORMAL train images each region looks (PaDiM-style Gaussian on the
  classifier's layer2 + layer3 patch features), alone or added to the current default score.
"""

from __future__ import annotations

import pickle
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from skimage.transform import resize
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from quality_common import CACHE, load_records

from samprompt.prompts.base import Prompt
from samprompt.prompts.candidate_regions import REFINED_FEATURE_NAMES, CandidateScorer
from samprompt.prompts.selftrain import SelfTrainNet
from samprompt.regions import box_iou, mask_to_box

SIZE = 128
PSEUDO = CACHE / "pseudo.pkl"
CLASSIFIER = CACHE / "clf_resnet18_128.pt"
MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]


def load_refined() -> list:
    with open(CACHE / "refined.pkl", "rb") as f:
        return pickle.load(f)


def shipped_scores(entry) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The built-in second-stage scores of one image's refined regions (without ``shadow_penalty``)."""
    return CandidateScorer(names=REFINED_FEATURE_NAMES)(entry["F"])


def auc(s, y) -> float:  # type: ignore[no-untyped-def]
    s, y = np.asarray(s), np.asarray(y)
    pos, neg = s[y == 1], s[y == 0]
    return float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())


# ---------------------------------------------------------------------------------------- self-training
def stage_pseudo() -> None:
    """The shipped strategy's choice among the cached refined regions, decoded by ``classical``."""
    from samprompt.segmenters.classical import ClassicalSegmenter

    recs, ref = load_records(), load_refined()
    seg = ClassicalSegmenter()
    out = []
    for r, e in zip(recs, ref):
        if e is None:
            out.append(None)
            continue
        s = shipped_scores(e)
        j = int(np.argmax(s))
        m = seg.decode(seg.embed(r["grey"]), [Prompt(box=e["boxes"][j].astype(np.float32))]).masks[0]
        out.append({"j": j, "score": float(s[j]), "mask": np.packbits(m, axis=-1), "shape": m.shape})
    with open(PSEUDO, "wb") as f:
        pickle.dump(out, f, protocol=4)


def _unpack(e) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.unpackbits(e["mask"], axis=-1)[:, : e["shape"][1]].astype(bool)


def _load_net(tag: str) -> SelfTrainNet:
    """A net written by ``stage_selftrain`` (state dicts of the first measurements name the FPN laterals
    ``lat.*``; the library's :class:`SelfTrainNet` calls them ``lateral.*``)."""
    state = torch.load(CACHE / f"selftrain_{tag}.pt", map_location="cpu", weights_only=True)
    net = _net(from_classifier=False)
    net.load_state_dict({("lateral." + k[4:] if k.startswith("lat.") else k): v for k, v in state.items()})
    return net.eval()


def _to_input(grey: np.ndarray) -> np.ndarray:
    g = resize(grey.astype(np.float32) / 255.0, (SIZE, SIZE), order=1, anti_aliasing=True).astype(np.float32)
    return (np.repeat(g[None], 3, 0) - MEAN) / STD


def _net(from_classifier: bool) -> SelfTrainNet:
    import torchvision

    from samprompt.classifiers.checkpoint import load_classifier

    enc = load_classifier(CLASSIFIER)[0] if from_classifier else torchvision.models.resnet18(num_classes=3)
    return SelfTrainNet(enc)


def stage_selftrain(tag: str, quantile: float, epochs: int = 20, seed: int = 0) -> None:
    """Train the segmentation net on the TRAIN pseudo masks whose score is above ``quantile`` + normals."""
    recs = load_records()
    with open(PSEUDO, "rb") as f:
        ps = pickle.load(f)
    tr = [k for k, r in enumerate(recs) if r["split"] == "train"]
    les = [k for k in tr if recs[k]["label"] != "normal" and ps[k] is not None]
    thr = np.quantile([ps[k]["score"] for k in les], quantile) if quantile > 0 else -np.inf
    use = [k for k in les if ps[k]["score"] >= thr] + [k for k in tr if recs[k]["label"] == "normal"]
    print(f"train images {len(use)}", flush=True)
    X = torch.from_numpy(np.stack([_to_input(recs[k]["grey"]) for k in use]))
    Y = torch.from_numpy(np.stack([
        resize(_unpack(ps[k]).astype(np.float32), (SIZE, SIZE), order=1) if recs[k]["label"] != "normal"
        else np.zeros((SIZE, SIZE), np.float32) for k in use])[:, None])
    torch.manual_seed(seed)
    net = _net(from_classifier=True)
    opt = torch.optim.AdamW(net.parameters(), lr=5e-4, weight_decay=1e-4)
    sch = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-4, total_steps=epochs * int(np.ceil(len(use) / 16)),
                                              pct_start=0.1)
    rng = np.random.default_rng(seed)
    t = time.time()
    for ep in range(epochs):
        net.train()
        for b in np.array_split(rng.permutation(len(use)), int(np.ceil(len(use) / 16))):
            x, y = X[b].clone(), Y[b].clone()
            flip = torch.from_numpy(rng.random(len(b)) < 0.5)
            x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
            x = (x * torch.from_numpy(rng.uniform(0.8, 1.2, (len(b), 1, 1, 1)).astype(np.float32))
                 + torch.from_numpy(rng.uniform(-0.2, 0.2, (len(b), 1, 1, 1)).astype(np.float32)))
            logit = net(x)
            p = torch.sigmoid(logit)
            pos = y.sum((1, 2, 3)) > 0
            soft_dice = 1 - (2 * (p * y).sum((1, 2, 3)) + 1) / (p.sum((1, 2, 3)) + y.sum((1, 2, 3)) + 1)
            loss = F.binary_cross_entropy_with_logits(logit, y) + (soft_dice[pos].mean() if pos.any() else 0.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sch.step()
        print(f"epoch {ep} {time.time() - t:.0f}s", flush=True)
    torch.save(net.state_dict(), CACHE / f"selftrain_{tag}.pt")


def stage_selfeval(tag: str, split: str = "val") -> None:
    from samprompt.metrics import dice
    from samprompt.segmenters.classical import ClassicalSegmenter

    recs, ref = load_records(), load_refined()
    with open(PSEUDO, "rb") as f:
        ps = pickle.load(f)
    net = _load_net(tag)
    seg = ClassicalSegmenter()
    ids = [k for k, r in enumerate(recs) if r["split"] == split]
    rows: dict[str, list[tuple[float, float]]] = {"shipped choice": [], "net box": [], "net re-scores the 6": []}
    normal_area = []
    for k in ids:
        r = recs[k]
        H, W = r["grey"].shape
        x = torch.from_numpy(_to_input(r["grey"]))[None]
        with torch.no_grad():
            p = ((torch.sigmoid(net(x)) + torch.sigmoid(net(x.flip(-1))).flip(-1)) / 2)[0, 0].numpy()
        P = resize(p, (H, W), order=1)
        if r["label"] == "normal":
            normal_area.append(float((P > 0.5).mean()))
            continue
        if not r["mask"].any():
            continue
        gt, gb, e = r["mask"], mask_to_box(r["mask"]), ref[k]
        emb = seg.embed(r["grey"])

        def decoded(box, emb=emb, gt=gt, gb=gb):  # type: ignore[no-untyped-def]
            return box_iou(box, gb), dice(seg.decode(emb, [Prompt(box=np.asarray(box, np.float32))]).masks[0], gt)

        rows["shipped choice"].append(decoded(e["boxes"][ps[k]["j"]]) if e is not None else (0.0, 0.0))
        lab, n = ndi.label(P > 0.5)
        if n:
            comp = lab == 1 + int(np.argmax(ndi.sum(P, lab, range(1, n + 1))))
            rows["net box"].append(decoded(mask_to_box(comp)))
        else:
            rows["net box"].append((0.0, 0.0))
        if e is not None:
            yy, xx = np.mgrid[0:H, 0:W] + 0.5
            means = []
            for b in e["boxes"]:
                rx, ry = max(1.0, (b[2] - b[0]) / 2), max(1.0, (b[3] - b[1]) / 2)
                el = ((xx - (b[0] + b[2]) / 2) / rx) ** 2 + ((yy - (b[1] + b[3]) / 2) / ry) ** 2 <= 1
                means.append(P[el].mean() if el.any() else 0.0)
            rows["net re-scores the 6"].append(decoded(e["boxes"][int(np.argmax(means))]))
        else:
            rows["net re-scores the 6"].append((0.0, 0.0))
    for name, v in rows.items():
        a = np.array(v)
        print(f"selftrain {tag} {split} {name:22s} n={len(a)} box IoU {a[:, 0].mean():.3f} "
              f"hit50 {(a[:, 0] > 0.5).mean():.2f} Dice {a[:, 1].mean():.3f}")
    print(f"selftrain {tag} {split} normal images: mean area of map > 0.5 {np.mean(normal_area):.3f}")


def stage_selfagree(tag: str, splits: tuple[str, ...] = ("val",), penalty: float = 0.0) -> None:
    """Re-score the 6 refined regions by agreement with the net's box: shipped score + lam x box IoU
    (``penalty``: the shadow penalty of the current default subtracted too)."""
    from samprompt.metrics import dice
    from samprompt.prompts.candidate_regions import under_smaller_region
    from samprompt.segmenters.classical import ClassicalSegmenter

    seg = ClassicalSegmenter()
    recs, ref = load_records(), load_refined()
    net = _load_net(tag)
    for split in splits:
        rows = []
        for k, r in enumerate(recs):
            if r["split"] != split or r["label"] == "normal" or not r["mask"].any() or ref[k] is None:
                continue
            x = torch.from_numpy(_to_input(r["grey"]))[None]
            with torch.no_grad():
                p = ((torch.sigmoid(net(x)) + torch.sigmoid(net(x.flip(-1))).flip(-1)) / 2)[0, 0].numpy()
            P = resize(p, r["grey"].shape, order=1)
            lab, n = ndi.label(P > 0.5)
            net_box = mask_to_box(lab == 1 + int(np.argmax(ndi.sum(P, lab, range(1, n + 1))))) if n else None
            agree = np.array([box_iou(b, net_box) if net_box is not None else 0.0 for b in ref[k]["boxes"]])
            base = shipped_scores(ref[k]) - penalty * under_smaller_region(ref[k]["boxes"])
            rows.append((base, agree, ref[k]["biou"], ref[k]["inside"], k))
        for lam in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0):
            ch = [int(np.argmax(s + lam * a)) for s, a, _, _, _ in rows]
            bi = np.array([row[2][j] for row, j in zip(rows, ch)])
            ins = np.array([row[3][j] for row, j in zip(rows, ch)])
            extra = ""
            if lam in (0.0, 8.0):  # end to end: the chosen box + deepest point, decoded by `classical`
                d = [dice(seg.decode(seg.embed(recs[k]["grey"]), [Prompt(
                    box=ref[k]["boxes"][j].astype(np.float32), points=ref[k]["pts"][j][None].astype(np.float32),
                    point_labels=np.ones(1, np.int64))]).masks[0], recs[k]["mask"]) for (*_, k), j in zip(rows, ch)]
                extra = f" Dice {np.mean(d):.3f}"
            print(f"selfagree {tag} {split} penalty {penalty:g} lambda {lam:g}: box IoU {bi.mean():.3f} "
                  f"hit50 {(bi > 0.5).mean():.2f} inside {ins.mean():.2f}{extra} (n={len(rows)})")


# ---------------------------------------------------------------------------------------- crop MIL
class CropMIL(nn.Module):
    """Instance score = linear(standardised refined features) + CNN(64 px crop)."""

    def __init__(self, w0: np.ndarray) -> None:
        super().__init__()

        def blk(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(), nn.MaxPool2d(2))

        self.cnn = nn.Sequential(blk(1, 16), blk(16, 32), blk(32, 64), blk(64, 64), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Dropout(0.3), nn.Linear(64, 1))
        self.lin = nn.Linear(len(w0), 1, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor(w0, dtype=torch.float32)[None])
            self.cnn[-1].weight.zero_()
            self.cnn[-1].bias.zero_()

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.lin(z)[:, 0] + self.cnn(x[:, None])[:, 0]


def stage_cropmil(epochs: int = 15, context: float = 0.25, crop: int = 64, seed: int = 0) -> None:
    recs, ref = load_records(), load_refined()
    lab = np.array([0 if r["label"] == "normal" else 1 for r in recs])
    keys = [k for k, e in enumerate(ref) if e is not None and len(e["F"])]
    sc = CandidateScorer(names=REFINED_FEATURE_NAMES)
    cols = [i for i, n in enumerate(REFINED_FEATURE_NAMES) if not n.startswith("cam_")]
    crops, Z = {}, {}
    for k in keys:
        g = recs[k]["grey"].astype(np.float32) / 255.0
        H, W = g.shape
        cs = []
        for b in ref[k]["boxes"]:
            w, h = b[2] - b[0], b[3] - b[1]
            x0, y0 = int(max(0, b[0] - context * w)), int(max(0, b[1] - context * h))
            x1, y1 = int(min(W, np.ceil(b[2] + context * w))), int(min(H, np.ceil(b[3] + context * h)))
            cs.append(resize(g[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)], (crop, crop), order=1, anti_aliasing=True))
        crops[k] = ((np.stack(cs) - 0.3) / 0.2).astype(np.float32)
        z = (ref[k]["F"] - sc.mean) / np.where(sc.scale > 0, sc.scale, 1)
        z[:, 0] = 1.0
        Z[k] = z[:, cols].astype(np.float32)
    split = {k: recs[k]["split"] for k in keys}
    tr = [k for k in keys if split[k] == "train"]
    va = [k for k in keys if split[k] == "val"]

    def report(S: dict, name: str) -> float:
        les = [k for k in va if lab[k] == 1 and recs[k]["mask"].any()]
        bi = np.array([ref[k]["biou"][int(np.argmax(S[k]))] for k in les])
        ins = np.array([ref[k]["inside"][int(np.argmax(S[k]))] for k in les])
        a = auc([S[k].max() for k in va], lab[va])
        print(f"cropmil {name}: val image AUC {a:.3f} box IoU {bi.mean():.3f} hit50 {(bi > 0.5).mean():.2f} "
              f"inside {ins.mean():.2f}", flush=True)
        return a

    report({k: shipped_scores(ref[k]) for k in va}, "shipped scorer")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = CropMIL(np.asarray(sc.weights)[cols])
    opt = torch.optim.AdamW([{"params": net.cnn.parameters(), "weight_decay": 1e-3},
                             {"params": net.lin.parameters(), "weight_decay": 0.0}], lr=1e-3)
    pos_weight = torch.tensor((lab[tr] == 0).sum() / (lab[tr] == 1).sum(), dtype=torch.float32)
    best = (-1.0, -1)
    for ep in range(epochs):
        net.train()
        perm = rng.permutation(tr)
        for i in range(0, len(perm), 16):
            b = perm[i:i + 16]
            x = torch.from_numpy(np.concatenate([crops[k] for k in b]))
            flip = torch.from_numpy(rng.random(len(x)) < 0.5)
            x[flip] = x[flip].flip(-1)
            x = x * torch.from_numpy(rng.uniform(0.85, 1.15, (len(x), 1, 1)).astype(np.float32))
            s = net(x, torch.from_numpy(np.concatenate([Z[k] for k in b])))
            img = torch.stack([torch.logsumexp(v, 0) for v in torch.split(s, [len(Z[k]) for k in b])])
            loss = F.binary_cross_entropy_with_logits(img, torch.tensor(lab[b], dtype=torch.float32),
                                                      pos_weight=pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            S = {k: net(torch.from_numpy(crops[k]), torch.from_numpy(Z[k])).numpy() for k in va}
        a = report(S, f"epoch {ep}")
        best = max(best, (a, ep))
    print(f"cropmil: best epoch by val image AUC: {best[1]} (AUC {best[0]:.3f}); its box IoU is printed above")


# ---------------------------------------------------------------------------------------- occlusion
def stage_occlusion(grow: float = 0.15) -> None:
    from samprompt.classifiers.checkpoint import load_classifier

    recs, ref = load_records(), load_refined()
    model, info = load_classifier(CLASSIFIER)
    mean = torch.tensor(info.preprocessing.mean).view(1, 3, 1, 1)
    std = torch.tensor(info.preprocessing.std).view(1, 3, 1, 1)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    drop = {}
    for k, (r, e) in enumerate(zip(recs, ref)):
        if e is None or not len(e["F"]):
            continue
        H, W = r["grey"].shape
        g = resize(r["grey"].astype(np.float32) / 255.0, (SIZE, SIZE), order=1, anti_aliasing=True).astype(np.float32)
        imgs = [g]
        for b in e["boxes"]:
            x0, y0, x1, y1 = b[0] * SIZE / W, b[1] * SIZE / H, b[2] * SIZE / W, b[3] * SIZE / H
            rx, ry = max(1.0, (x1 - x0) / 2 * (1 + grow)), max(1.0, (y1 - y0) / 2 * (1 + grow))
            m = ((xx - (x0 + x1) / 2) / rx) ** 2 + ((yy - (y0 + y1) / 2) / ry) ** 2 <= 1
            wsum = ndi.gaussian_filter((~m).astype(np.float32), 8)
            fill = ndi.gaussian_filter(np.where(m, 0, g), 8) / np.maximum(wsum, 1e-3)
            imgs.append(np.where(m, fill, g))
        x = (torch.from_numpy(np.stack(imgs))[:, None].repeat(1, 3, 1, 1) - mean) / std
        with torch.no_grad():
            lg = model(torch.cat([x, x.flip(-1)]))
            lg = (lg[: len(imgs)] + lg[len(imgs):]) / 2
        les = torch.logsumexp(lg[:, :2], 1) - lg[:, 2]
        drop[k] = (les[0] - les[1:]).numpy()
    with open(CACHE / "occlusion.pkl", "wb") as f:
        pickle.dump(drop, f)
    for split in ("train", "val"):
        ids = [k for k in drop if recs[k]["split"] == split and recs[k]["label"] != "normal" and recs[k]["mask"].any()]
        for beta in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, None):
            ch = [int(np.argmax(drop[k] if beta is None else shipped_scores(ref[k]) + beta * drop[k])) for k in ids]
            bi = np.array([ref[k]["biou"][j] for k, j in zip(ids, ch)])
            ins = np.array([ref[k]["inside"][j] for k, j in zip(ids, ch)])
            what = "occlusion drop alone" if beta is None else f"shipped score + {beta:g} x drop"
            print(f"occlusion {split} {what:30s} box IoU {bi.mean():.3f} hit50 {(bi > 0.5).mean():.2f} "
                  f"inside {ins.mean():.2f}")


# ---------------------------------------------------------------------------------------- shipped agreement
def stage_agreement(keep: float = 0.6, epochs: int = 20, seed: int = 0) -> None:
    """The SHIPPED self-training recipe (``samprompt.prompts.selftrain``) on the BUSI train split: pseudo
    masks of the current default ``candidates`` strategy on the train lesion images, the ``keep`` most
    confident of them plus every train normal image (empty target), a ``SelfTrainNet`` initialised from
    the classifier. Writes ``CACHE/selftrain_shipped.pt`` (``_s<seed>`` for another training seed); evaluate it with
    ``quality_prompts.py strategy val agreement_net='"<CACHE>/selftrain_shipped.pt"'``."""
    from samprompt.prompts.selftrain import save_selftrain_net, self_train

    recs = load_records()
    train = [r for r in recs if r["split"] == "train"]
    lesion = [r["grey"] for r in train if r["label"] != "normal" and r["mask"].any()]
    normal = [r["grey"] for r in train if r["label"] == "normal"]
    t = time.time()

    def progress(step: str, done: int, total: int) -> None:
        if step == "self-training" or done == total:  # every epoch, and the end of the pseudo masks
            print(f"agreement: {step} {done}/{total} {time.time() - t:.0f}s", flush=True)

    net, _ = self_train(lesion, normal, keep=keep, init=CLASSIFIER, epochs=epochs, seed=seed, progress=progress)
    name = "selftrain_shipped.pt" if seed == 0 else f"selftrain_shipped_s{seed}.pt"
    print(f"saved {save_selftrain_net(net, CACHE / name)}")


# ---------------------------------------------------------------------------------------- anomaly
def stage_anomaly(size: int = 128) -> None:
    """Patch anomaly w.r.t. the NORMAL train images (labels only), as a region feature.

    The classifier's layer2 + layer3 features (3 x 3 averaged, PaDiM-style) of the whole image at ``size``
    px; one Gaussian fit on every patch of the normal TRAIN images; a patch's anomaly is its Mahalanobis
    distance, standardised per image. Each refined region gets the mean anomaly in its box's ellipse
    (also minus a surrounding ring, and the max), alone or added with weight ``lam`` to the CURRENT
    default score (with ``shadow_penalty`` 2).
    """
    from samprompt.classifiers.checkpoint import load_classifier
    from samprompt.prompts.candidate_regions import under_smaller_region

    recs, ref = load_records(), load_refined()
    model = load_classifier(CLASSIFIER)[0].eval()
    feats = []
    with torch.inference_mode():
        for r in recs:
            g = resize(r["grey"].astype(np.float32) / 255.0, (size, size), order=1, anti_aliasing=True)
            x = torch.from_numpy(((np.repeat(g[None], 3, 0) - MEAN) / STD).astype(np.float32))[None]
            y = model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x)))))
            l2 = model.layer2(y)
            l3 = F.interpolate(model.layer3(l2), size=l2.shape[-2:], mode="bilinear", align_corners=False)
            feats.append(F.avg_pool2d(torch.cat([l2, l3], 1), 3, 1, 1)[0].numpy())
    C, G = feats[0].shape[:2]
    X = np.concatenate([feats[k].reshape(C, -1).T for k, r in enumerate(recs)
                        if r["split"] == "train" and r["label"] == "normal"])
    cov = np.cov(X, rowvar=False)
    P = np.linalg.inv(cov + 0.01 * np.trace(cov) / C * np.eye(C))
    mu = X.mean(0)

    def amap(k: int) -> np.ndarray:
        Z = feats[k].reshape(C, -1).T - mu
        return np.sqrt(np.einsum("ij,jk,ik->i", Z, P, Z)).reshape(G, G)

    val = [k for k, r in enumerate(recs) if r["split"] == "val"]
    print(f"anomaly {size}px: val image AUC (99th percentile of the raw map, lesion vs normal) "
          f"{auc([np.percentile(amap(k), 99) for k in val], [recs[k]['label'] != 'normal' for k in val]):.3f}")
    centres = (np.arange(G) + 0.5) / G
    ids = [k for k in val if recs[k]["label"] != "normal" and recs[k]["mask"].any()]
    region = {}
    for k in ids:
        H, W = recs[k]["grey"].shape
        m, rows = amap(k), []
        m = (m - np.median(m)) / (m.std() + 1e-6)  # standardised within the image
        for b in ref[k]["boxes"]:
            cx, cy = (b[0] + b[2]) / 2 / W, (b[1] + b[3]) / 2 / H
            rx, ry = max((b[2] - b[0]) / 2 / W, 0.5 / G), max((b[3] - b[1]) / 2 / H, 0.5 / G)
            d = ((centres[None] - cx) / rx) ** 2 + ((centres[:, None] - cy) / ry) ** 2
            inside = d <= max(1.0, d.min())
            ring = (d > 1) & (d <= 2.25)
            rows.append([m[inside].mean(), m[inside].mean() - (m[ring].mean() if ring.any() else 0.0),
                         m[inside].max()])
        region[k] = np.array(rows)
    for f, name in enumerate(("mean", "mean - ring", "max")):
        out = []
        for lam in (None, 0.0, 0.25, 0.5, 1.0, 2.0):
            ch = []
            for k in ids:
                a = region[k][:, f]
                a = (a - a.mean()) / (a.std() + 1e-6)
                base = shipped_scores(ref[k]) - 2.0 * under_smaller_region(ref[k]["boxes"])
                ch.append(int(np.argmax(a if lam is None else base + lam * a)))
            bi = np.mean([ref[k]["biou"][j] for k, j in zip(ids, ch)])
            out.append(f"{'alone' if lam is None else f'+{lam:g}x'} {bi:.3f}")
        print(f"anomaly {size}px val box IoU, feature {name:11s}: " + ", ".join(out))


if __name__ == "__main__":
    torch.set_num_threads(1)
    stage, args = sys.argv[1], sys.argv[2:]
    if stage == "pseudo":
        stage_pseudo()
    elif stage == "selftrain":
        stage_selftrain(args[0], float(args[1]))
    elif stage == "selfeval":
        stage_selfeval(args[0], args[1] if len(args) > 1 else "val")
    elif stage == "selfagree":  # selfagree TAG [--test] [--shadow]
        stage_selfagree(args[0], ("val", "test") if "--test" in args else ("val",),
                        penalty=2.0 if "--shadow" in args else 0.0)
    elif stage == "cropmil":
        stage_cropmil()
    elif stage == "occlusion":
        stage_occlusion()
    elif stage == "agreement":  # agreement [KEEP [SEED]]
        stage_agreement(float(args[0]) if args else 0.6, seed=int(args[1]) if len(args) > 1 else 0)
    elif stage == "anomaly":  # anomaly [SIZE]
        stage_anomaly(int(args[0]) if args else 128)
    else:
        raise SystemExit(f"unknown stage {stage!r}; see the module docstring")
