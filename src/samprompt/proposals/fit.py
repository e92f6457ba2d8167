"""Fitting a scorer file from IMAGE LABELS only (never a mask): :func:`fit_scorer`.

Two ways, chosen by the labels at hand:

* **with a negative class** (some images have no lesion, e.g. ``normal``): multiple-instance learning.
  Every image is a bag of candidate regions; a lesion image holds at least one lesion region, a negative
  image none. The logistic model scores each region, an image's score is the log-sum-exp of its regions'
  scores, and the image labels are fit (class-balanced, L2). The polarity (``auto``) is the one whose
  fit predicts the image labels best on held-out halves (2-fold, class-balanced image log-likelihood).
* **without one** (every image has a lesion): the run's classifier is the teacher. Each region gets an
  *evidence* value: how concentrated the CAM is on it (mean CAM on the region / mean CAM of the image; this
  CAM is the average of the image's CAM and its horizontal flip's, so only what survives the flip counts),
  times ``1 + drop`` where ``drop`` is how much the classifier's target score falls when the region is
  erased (filled with the mean of the ring around it; for the 3 regions of highest CAM evidence, when a
  ``score`` callable is given). The polarity (``auto``) is the one whose best regions are most
  consistently CAM-concentrated across the images (the median over images of the best region's evidence);
  then each image's most evident region is a positive and its regions away from it (box IoU < 0.1) are
  negatives of an instance-level logistic model (class-balanced, L2); so are its regions with less than
  half the best evidence.

The second stage (refined regions) is fit the same way on the refined top-k regions of each image; when
that is impossible (e.g. every refined region is the same lesion) it follows the first stage's score.

The CAM FEATURES of both stages (``cam_mean`` … ``cam_rank``) are computed on the CAM exactly as ``cams``
returns it — the map the ``candidates`` strategy is handed at run time — never on the flip-averaged
evidence map, so that a fitted weight means the same thing when the file is used.
No shadow penalty is fit (``busi-v1``'s was chosen with masks): fitted files have ``shadow_penalty`` 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from skimage.transform import resize

from samprompt.errors import ConfigError, DataError
from samprompt.parallel import WorkerPool, overlapped
from samprompt.proposals.features import (
    CAM_FEATURES,
    FEATURE_NAMES,
    REFINED_FEATURE_NAMES,
    cam_at,
    features_of,
)
from samprompt.proposals.refine import _refine
from samprompt.proposals.regions import Candidate, Work, grey_of
from samprompt.proposals.scorer import CandidateScorer, ScorerFile
from samprompt.proposals.select import ProposalSelector, polarities_of
from samprompt.regions import box_iou, mask_to_box

__all__ = ["MIN_IMAGES", "CamFn", "ScoreFn", "fit_scorer"]

log = logging.getLogger(__name__)

#: The fewest images of a class a fit accepts (lesion images; negative images when there are any).
MIN_IMAGES = 8
#: Per image: the CAM as ``cams`` gave it and (no negative class) the flip-averaged evidence map.
_Maps = tuple[NDArray[np.float32] | None, NDArray[np.float32] | None]
#: ``cams(images) -> one (H, W) CAM per image`` (any size; the run's classifier and CAM method).
CamFn = Callable[[Sequence[Any]], Sequence[NDArray[np.float32]]]
#: ``score(images) -> (N,)`` the classifier's target-class score (e.g. probability) of each image.
ScoreFn = Callable[[Sequence[Any]], NDArray[np.float64]]


def _standardise(X: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    mean[0], scale[0] = 0.0, 1.0
    Z = (X - mean) / scale
    Z[:, 0] = 1.0
    return Z, mean, scale


def _mil(bags: Sequence[NDArray[np.float64]], y: NDArray[np.bool_], l2: float) -> CandidateScorer:
    """Multiple-instance logistic model: image score = log-sum-exp of its regions' scores."""
    Z, mean, scale = _standardise(np.concatenate(bags))
    starts = np.cumsum([0] + [len(b) for b in bags[:-1]])
    cls_w = np.where(y, 0.5 / max(1, y.sum()), 0.5 / max(1, (~y).sum()))
    bag_of = np.repeat(np.arange(len(bags)), [len(b) for b in bags])

    def loss(w: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        s = Z @ w
        top = np.maximum.reduceat(s, starts)
        e = np.exp(s - top[bag_of])
        tot = np.add.reduceat(e, starts)
        S = top + np.log(tot)
        p = 1.0 / (1.0 + np.exp(-S))
        value = float(np.sum(cls_w * (np.logaddexp(0.0, S) - y * S))) + l2 * float(w[1:] @ w[1:])
        dS = cls_w * (p - y)
        g = Z.T @ (dS[bag_of] * e / tot[bag_of])
        g[1:] += 2 * l2 * w[1:]
        return value, g

    res = minimize(loss, np.zeros(Z.shape[1]), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return CandidateScorer(res.x, mean, scale, names=_names(Z.shape[1]))


def _instances(X: NDArray[np.float64], y: NDArray[np.bool_], l2: float) -> CandidateScorer:
    """Class-balanced logistic model over single regions."""
    Z, mean, scale = _standardise(X)
    cls_w = np.where(y, 0.5 / max(1, y.sum()), 0.5 / max(1, (~y).sum()))

    def loss(w: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        s = Z @ w
        p = 1.0 / (1.0 + np.exp(-s))
        value = float(np.sum(cls_w * (np.logaddexp(0.0, s) - y * s))) + l2 * float(w[1:] @ w[1:])
        g = Z.T @ (cls_w * (p - y))
        g[1:] += 2 * l2 * w[1:]
        return value, g

    res = minimize(loss, np.zeros(Z.shape[1]), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return CandidateScorer(res.x, mean, scale, names=_names(Z.shape[1]))


def _names(n: int) -> tuple[str, ...]:
    return FEATURE_NAMES if n == len(FEATURE_NAMES) else REFINED_FEATURE_NAMES


def _bag_scores(scorer: CandidateScorer, bags: Sequence[NDArray[np.float64]]) -> NDArray[np.float64]:
    return np.array([float(np.logaddexp.reduce(scorer(b))) for b in bags])


def _concentration(cam: NDArray[np.float64], masks: Sequence[NDArray[np.bool_]]) -> NDArray[np.float64]:
    """Mean CAM on each mask / mean CAM of the image (1 = no concentration)."""
    ref = float(cam.mean()) + 1e-6
    return np.array([float(cam[m].mean()) / ref if m.any() else 0.0 for m in masks])


def _erase(image: NDArray[np.uint8], region: NDArray[np.bool_]) -> NDArray[np.uint8]:
    """``image`` with ``region`` filled with the mean colour of a ring around it."""
    from scipy import ndimage as ndi

    grow = max(2, int(0.2 * np.sqrt(region.sum())))
    ring = ndi.binary_dilation(region, iterations=grow) & ~region
    out = image.copy()
    fill = image[ring].mean(axis=0) if ring.any() else image.reshape(-1, image.shape[-1]).mean(axis=0)
    out[region] = np.round(fill).astype(np.uint8)
    return out


class _Image:
    """One image's regions in one polarity: features, boxes and (without negatives) evidence."""

    def __init__(self, F: NDArray[np.float64], boxes: list[Any], evidence: NDArray[np.float64] | None) -> None:
        self.F, self.boxes, self.evidence = F, boxes, evidence


class _Proposed(_Image):
    """Pass 1's candidates of one image in one polarity, kept for pass 2 (which refines the best of
    them): features (with the CAM features when a CAM was given), boxes, evidence, the candidate
    masks packed compactly (the bits of each mask's bounding box) and the CAM at the working shape
    (float32, lossless: :func:`cam_at` resizes in float32), for the refined regions' CAM features."""

    def __init__(self, cands: Sequence[Candidate], F: NDArray[np.float64],
                 evidence: NDArray[np.float64] | None, cam_small: NDArray[np.float64] | None = None) -> None:
        super().__init__(F, [c.box() for c in cands], evidence)
        self.cam_small = None if cam_small is None else cam_small.astype(np.float32)
        self.shape: tuple[int, int] = (int(cands[0].mask.shape[0]), int(cands[0].mask.shape[1]))
        self.scale = cands[0].scale
        self.hits = np.array([c.hits for c in cands], np.int64)
        frames, bits = [], []
        for c in cands:
            ys = np.flatnonzero(c.mask.any(axis=1))
            xs = np.flatnonzero(c.mask.any(axis=0))
            y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
            frames.append((y0, y1, x0, x1))
            bits.append(np.packbits(c.mask[y0:y1, x0:x1]))
        self.frames = np.array(frames, np.int32)
        self.offsets = np.cumsum([0] + [len(b) for b in bits])
        self.bits = np.concatenate(bits)

    def candidate(self, j: int) -> Candidate:
        """Candidate ``j``, as proposed."""
        y0, y1, x0, x1 = (int(v) for v in self.frames[j])
        crop = np.unpackbits(self.bits[self.offsets[j]:self.offsets[j + 1]], count=(y1 - y0) * (x1 - x0))
        mask = np.zeros(self.shape, bool)
        mask[y0:y1, x0:x1] = crop.reshape(y1 - y0, x1 - x0).astype(bool)
        return Candidate(mask=mask, scale=self.scale, hits=int(self.hits[j]))


# worker processes build their selector once per settings (see _selector)
_SELECTORS: dict[str, ProposalSelector] = {}


def _selector(settings: Mapping[str, Any]) -> ProposalSelector:
    key = repr(sorted(settings.items()))
    if key not in _SELECTORS:
        _SELECTORS.clear()
        _SELECTORS[key] = ProposalSelector(CandidateScorer(), CandidateScorer(names=REFINED_FEATURE_NAMES),
                                           **settings)
    return _SELECTORS[key]


def fit_scorer(
    images: Sequence[Any],
    lesion: Sequence[bool],
    *,
    cams: CamFn | None = None,
    score: ScoreFn | None = None,
    polarity: str = "auto",
    l2: float = 1e-2,
    min_images: int = MIN_IMAGES,
    selector: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 16,
    workers: int = 0,
    timings: dict[str, float] | None = None,
    prior: ScorerFile | None = None,
) -> ScorerFile:
    """Fit a two-stage scorer from images and their image-level labels (see the module docstring).

    Args:
        images: (H, W[, 3]) uint8 images (any sequence; each is read once per pass, twice in all).
        lesion: Per image, whether it shows a lesion (``False`` = the negative class).
        cams: The classifier's CAMs (:data:`CamFn`). Needed without a negative class; with one, the CAM
            features are fit too (otherwise they stay 0).
        score: The classifier's target score (:data:`ScoreFn`) for the erasure evidence (optional).
        polarity: ``auto`` (chosen from the data), ``dark``, ``bright``, ``colour`` or ``both``.
        l2: L2 penalty of the logistic models (on standardised features).
        min_images: The fewest lesion images (and negative images, when there are any) accepted.
        selector: :class:`~samprompt.proposals.select.ProposalSelector` settings for proposal and
            refinement (``work_size``, ``refine_top_k``, ...).
        provenance: Recorded in the file (data fingerprint, split, seed, ...); the fit adds its own.
        progress: ``progress(done, total)`` over the passes' images.
        batch_size: Images per ``cams`` call (an image and its mirror go in the same call).
        workers: Make the proposals, features and refinements in this many worker processes (spawned,
            like ``pipeline.prompt_workers``), overlapped with the CAMs of the next batch; 0 =
            in this process. The result is the same either way.
        timings: When given, receives the seconds spent in each part of the fit (``cams``, ``pass1``,
            ``erasure``, ``polarity``, ``stage1``, ``pass2``, ``stage2``; wall time of this process).
        prior: Without a negative class only: keep this scorer file's weights (both stages) and fit only
            the polarity from the classifier's evidence. For data whose classifier's CAM does not find
            the lesion, where weights learnt from that CAM follow it to the wrong regions (docs: quality,
            BUSI inverted without ``normal``). Its shadow penalty and agreement weight are not carried.
            Ignored (with a log line) when there is a negative class: multiple-instance learning fits
            every weight from the labels.

    Returns:
        The fitted :class:`~samprompt.proposals.scorer.ScorerFile` (``shadow_penalty`` 0).

    Raises:
        DataError: Too few images of a class (saying how many are needed), or no image with a candidate.
        ValueError: Mismatched lengths or an unknown polarity.
        ConfigError: ``workers`` is not an integer >= 0.
    """
    t0 = time.perf_counter()
    y = np.asarray(lesion, bool)
    if len(y) != len(images):
        raise ValueError(f"{len(images)} images but {len(y)} labels")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"workers: must be an integer >= 0, got {workers!r}")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos < min_images:
        raise DataError(f"fitting prompts needs at least {min_images} lesion images, got {n_pos}")
    if 0 < n_neg < min_images:
        raise DataError(f"fitting prompts needs at least {min_images} images of the negative class, got {n_neg} "
                        "(or leave the negative class out to fit from the classifier's evidence)")
    mil = n_neg > 0
    if not mil and cams is None:  # (checked before any image is read)
        raise DataError("fitting prompts without a negative class needs the classifier's CAMs (cams=)")
    settings = dict(selector or {})
    _selector(settings)  # unknown settings fail here, before any image is read
    if polarity == "auto":
        tries = ["dark", "bright"] + (["colour"] if _is_colour(images) else [])
    else:
        tries = list(polarities_of(polarity))
    clock: dict[str, float] = {k: 0.0 for k in ("cams", "pass1", "erasure", "polarity", "stage1", "pass2", "stage2")}
    total = len(images) * 2
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    def evidence_maps(batch: Sequence[NDArray[Any]]) -> list[_Maps]:
        """Per image ``(cam, evidence map)``: the CAM as the strategy will see it (for the CAM features)
        and, without a negative class, its average with the mirror's (the teacher's evidence)."""
        if cams is None:
            return [(None, None)] * len(batch)
        t = time.perf_counter()
        if mil:
            out: list[_Maps] = [(np.asarray(x, np.float32), None) for x in cams(list(batch))]
        else:
            both = cams([*batch, *(np.ascontiguousarray(im[:, ::-1]) for im in batch)])  # one call, mirrors too
            out = [(np.asarray(x, np.float32),
                    ((np.asarray(x, np.float32) + np.asarray(z, np.float32)[:, ::-1]) / 2).astype(np.float32))
                   for x, z in zip(both[:len(batch)], both[len(batch):])]
        clock["cams"] += time.perf_counter() - t
        return out

    pool = WorkerPool(workers, "workers", "the fit's selector settings") if workers else None

    def run(which: str, args: list[tuple[Any, ...]]) -> list[Any]:
        if pool is None:
            return [_work(settings, which, *a) for a in args]
        return pool.map(_work, (settings,), [(which, *a) for a in args], key="fit")

    # pass 1: every tried polarity's candidates and first-stage features (kept for pass 2); the proposals
    # of a batch are made while the next batch's CAMs are computed (in worker processes, when any)
    per: dict[str, list[_Proposed | None]] = {p: [] for p in tries}
    maps: list[NDArray[np.float32] | None] = []  # full-size evidence maps (no negative class only)

    def finish(batch: Sequence[NDArray[Any]], got: Sequence[_Maps],
               recs: Sequence[dict[str, _Proposed | None]]) -> None:
        for image, (_, ev_map), rec in zip(batch, got, recs):
            maps.append(ev_map)
            for p in tries:
                r = rec[p]
                if r is not None and r.evidence is not None and score is not None and image.ndim == 3:
                    t = time.perf_counter()
                    _erasure_evidence(image, r, score)
                    clock["erasure"] += time.perf_counter() - t
                per[p].append(r)
            tick()

    def propose(batch: Sequence[NDArray[Any]], got: Sequence[_Maps]) -> list[dict[str, _Proposed | None]]:
        return run("pass1", [(tries, image, cam, ev_map) for image, (cam, ev_map) in zip(batch, got)])

    try:
        pending: tuple[list[NDArray[Any]], list[_Maps]] | None = None
        for start in range(0, len(images), batch_size):  # CAMs in batches: one forward pass per batch
            batch = [np.asarray(images[k]) for k in range(start, min(len(images), start + batch_size))]
            if pending is None or pool is None:
                if pending is not None:
                    t = time.perf_counter()
                    finish(*pending, propose(*pending))
                    clock["pass1"] += time.perf_counter() - t
                got = evidence_maps(batch)
            else:
                t = time.perf_counter()
                recs, got = overlapped(partial(propose, *pending), partial(evidence_maps, batch))
                finish(*pending, recs)
                clock["pass1"] += time.perf_counter() - t
            pending = (batch, got)
        if pending is not None:
            t = time.perf_counter()
            finish(*pending, propose(*pending))
            clock["pass1"] += time.perf_counter() - t
        clock["pass1"] -= clock["erasure"]
        t = time.perf_counter()
        scores: dict[str, float] = {}
        per_image: dict[str, NDArray[np.float64]] = {}
        for p in tries:
            scores[p], per_image[p] = _polarity_score(per[p], y, l2, mil)
        chosen = polarity if polarity != "auto" else max(tries, key=lambda p: scores[p])
        margin = _polarity_margin(chosen, per_image, y, mil) if polarity == "auto" and len(tries) > 1 else None
        if margin is not None and not margin["certain"]:
            log.warning("fit: the polarity choice %s over %s is uncertain on these %d images (difference %.3g, "
                        "95%% interval [%.3g, %.3g] includes 0); set the fit's polarity if you know it",
                        chosen, margin["runner_up"], len(y), margin["difference"], *margin["interval"])
        clock["polarity"] = time.perf_counter() - t
        if prior is not None and mil:
            log.info("fit: prior %r ignored: with a negative class every weight is fit from the labels",
                     prior.name or prior.source)
        if prior is not None and not mil:  # the polarity is the fit's; the weights are the prior's
            log.info("fit: polarity %s (scores %s) from classifier evidence; weights of the prior %r", chosen,
                     scores, prior.name or prior.source)
            if timings is not None:
                timings.update(clock)
            return _with_prior(prior, chosen, scores, n_pos, n_neg, l2, t0, provenance, margin)
        t = time.perf_counter()
        # a negative image without regions of the chosen polarity gives those of every tried polarity instead
        bags1 = [a if yk or a is not None else b
                 for a, b, yk in zip(_pool(per, polarities_of(chosen)), _pool(per, tries), y)]
        stage1 = _fit_stage(bags1 if mil else _pool(per, polarities_of(chosen)), y, l2, mil)
        clock["stage1"] = time.perf_counter() - t
        log.info("fit: polarity %s (scores %s), %s", chosen, scores, "MIL" if mil else "classifier evidence")
        # pass 2: refined regions of the chosen polarity (pass 1's candidates), scored by the fitted first stage
        t = time.perf_counter()
        uses_cam = cams is not None and bool(np.any(stage1.weights[list(CAM_FEATURES)] != 0))
        second: list[_Image | None] = []  # (their CAM features are computed whenever there is a CAM)
        for start in range(0, len(images), batch_size):
            ks = range(start, min(len(images), start + batch_size))
            args = [(stage1, polarities_of(chosen), tries if mil and not y[k] else (), uses_cam,
                     np.asarray(images[k]), {p: per[p][k] for p in tries}, maps[k]) for k in ks]
            for r in run("pass2", args):
                second.append(r)
                tick()
        clock["pass2"] = time.perf_counter() - t
    finally:
        if pool is not None:
            pool.close()
    t = time.perf_counter()
    try:
        stage2 = _fit_stage(second, y, l2, mil)
        stage2_note = "fitted"
    except DataError as exc:  # e.g. every refined region agrees: keep the first stage's order
        log.info("fit: second stage not fitted (%s); it follows the first stage's score", exc)
        w = np.zeros(len(REFINED_FEATURE_NAMES))
        w[REFINED_FEATURE_NAMES.index("stage1_score")] = 1.0
        stage2, stage2_note = CandidateScorer(w, names=REFINED_FEATURE_NAMES), f"follows stage 1 ({exc})"
    clock["stage2"] = time.perf_counter() - t
    if timings is not None:
        timings.update(clock)
    cam_idx = [FEATURE_NAMES.index(n) for n in ("cam_mean", "cam_max", "cam_mass", "cam_rank")]
    fit_info = {
        "method": "multiple-instance logistic (image labels)" if mil else "classifier evidence (CAM + erasure)",
        "polarity_scores": scores, "polarity_margin": margin, "lesion_images": n_pos, "negative_images": n_neg,
        "l2": l2,
        "cam_weight_norm": float(np.linalg.norm(stage1.weights[cam_idx])), "seconds": time.perf_counter() - t0,
        "masks_used": False, "stage2": stage2_note,
    }
    prov = {**dict(provenance or {}), "fit": fit_info, "mask_tuned": []}
    return ScorerFile(stage1, stage2, polarity=chosen, shadow_penalty=0.0, name="fitted", provenance=prov)


def _with_prior(prior: ScorerFile, chosen: str, scores: Mapping[str, float], n_pos: int, n_neg: int, l2: float,
                t0: float, provenance: Mapping[str, Any] | None, margin: dict[str, Any] | None) -> ScorerFile:
    """The prior's two stages with the fitted polarity (no shadow penalty, no agreement weight)."""
    name = prior.name or prior.source
    fit_info = {
        "method": f"polarity from classifier evidence (CAM + erasure); weights from the prior {name!r}",
        "polarity_scores": dict(scores), "polarity_margin": margin, "lesion_images": n_pos,
        "negative_images": n_neg, "l2": l2,
        "cam_weight_norm": float(np.linalg.norm(prior.stage1.weights[list(CAM_FEATURES)])),
        "seconds": time.perf_counter() - t0, "masks_used": False, "stage2": f"prior {name!r}",
    }
    prior_prov = {k: prior.provenance.get(k) for k in ("data", "split", "seed", "method", "library_version")
                  if k in prior.provenance}
    prov = {**dict(provenance or {}), "fit": fit_info, "prior": {"name": name, "provenance": prior_prov},
            "mask_tuned": []}
    def copy(s: CandidateScorer) -> CandidateScorer:  # not the (cached) prior's arrays
        return CandidateScorer(s.weights.copy(), s.mean.copy(), s.scale.copy(), names=s.names)

    return ScorerFile(copy(prior.stage1), copy(prior.stage2),
                      polarity=chosen, shadow_penalty=0.0, name="fitted", provenance=prov)


def _is_colour(images: Sequence[Any]) -> bool:
    for k in range(min(4, len(images))):
        a = np.asarray(images[k])
        if a.ndim == 3 and a.shape[2] >= 3 and float(np.ptp(a[..., :3].astype(np.int16), axis=2).mean()) > 4:
            return True
    return False


def _work(settings: Mapping[str, Any], which: str, *args: Any) -> Any:
    """What a worker process (or this one) does for one image: :func:`_pass1` or :func:`_pass2`."""
    return (_pass1 if which == "pass1" else _pass2)(settings, *args)


def _pass1(settings: Mapping[str, Any], tries: Sequence[str], image: NDArray[Any],
           cam: NDArray[np.float32] | None, ev_map: NDArray[np.float32] | None) -> dict[str, _Proposed | None]:
    """One image's candidates and first-stage features (CAM features from ``cam``) in every tried polarity
    and, given an evidence map (no negative class), their concentration of it; each map is resized once
    for all polarities."""
    sel = _selector(settings)
    out: dict[str, _Proposed | None] = {}
    cam_small: NDArray[np.float64] | None = None
    cam_ev: NDArray[np.float64] | None = None
    grey = grey_of(image)
    for p in tries:
        work, cands = sel.propose(image, p, grey)
        if not cands:
            out[p] = None
            continue
        if cam is not None and cam_small is None:
            cam_small = cam_at(cam, cands[0].mask.shape)
        F = features_of(work, cands, cam, cam_small=cam_small)
        ev = None
        if ev_map is not None:
            if cam_ev is None:
                cam_ev = resize(np.asarray(ev_map, np.float64), cands[0].mask.shape, order=1)
            ev = _concentration(cam_ev, [c.mask for c in cands])
        out[p] = _Proposed(cands, F, ev, cam_small)
    return out


def _erasure_evidence(image: NDArray[np.uint8], r: _Proposed, score: ScoreFn) -> None:
    """Multiply the evidence of the 3 most CAM-evident candidates by ``1 + `` the classifier's score drop
    when each is erased (in place)."""
    ev = r.evidence
    if ev is None:
        return
    top = np.argsort(-ev)[:3]
    erased = [_erase(image, r.candidate(int(j)).full_mask(image.shape[:2])) for j in top]
    s = np.asarray(score([image, *erased]), np.float64)
    drop = np.clip((s[0] - s[1:]) / max(float(s[0]), 1e-6), 0.0, 1.0)
    ev[top] = ev[top] * (1.0 + drop)


def _pass2(settings: Mapping[str, Any], stage1: CandidateScorer, chosen: Sequence[str], fallback: Sequence[str],
           uses_cam: bool, image: NDArray[Any], recs: Mapping[str, _Proposed | None],
           ev_map: NDArray[np.float32] | None) -> _Image | None:
    """One image's refined regions of the ``chosen`` polarities (``fallback`` ones when it has none)."""
    sel = _selector(settings)
    r = _refined(sel, stage1, image, recs, ev_map, chosen, uses_cam)
    if r is None and fallback:
        r = _refined(sel, stage1, image, recs, ev_map, fallback, uses_cam)
    return r


def _refined(sel: ProposalSelector, stage1: CandidateScorer, image: NDArray[Any],
             recs: Mapping[str, _Proposed | None], ev_map: NDArray[np.float32] | None, polarities: Sequence[str],
             uses_cam: bool) -> _Image | None:
    """The refined regions of ``polarities``: features (CAM features from pass 1's working-shape CAM) and,
    given an evidence map, their concentration of it."""
    Fs, boxes, evs = [], [], []
    cam_f: NDArray[np.float64] | None = None
    for p in polarities:
        rec = recs[p]
        if rec is None:
            continue
        work = Work(image, sel.sigma, work_size=sel.work_size, polarity=p)
        F1 = rec.F
        if not uses_cam and np.any(F1[:, list(CAM_FEATURES)] != 0):
            F1 = F1.copy()
            F1[:, list(CAM_FEATURES)] = 0.0
        s1 = stage1(F1)
        # the candidates refinement will use (finite scores, the best top-k), in their original order:
        # refining only them picks and orders the same regions (a stable sort of a subsequence)
        finite = np.flatnonzero(np.isfinite(s1))
        top = np.sort(finite[np.argsort(-s1[finite], kind="stable")[:sel.refine_top_k]])
        small = None if rec.cam_small is None else rec.cam_small.astype(np.float64)
        _, full, F = _refine(work, [rec.candidate(int(j)) for j in top], s1[top], top_k=sel.refine_top_k,
                             margin=sel.refine_margin, segmenter=sel.segmenter, cam_small=small)
        Fs.append(F)
        boxes += [mask_to_box(m) for m in full]
        if ev_map is not None:
            if cam_f is None:
                cam_f = resize(np.asarray(ev_map, np.float64), image.shape[:2], order=1)
            evs.append(_concentration(cam_f, full))
    if not Fs:
        return None
    return _Image(np.concatenate(Fs), boxes, np.concatenate(evs) if evs else None)


def _pool(per: Mapping[str, Sequence[_Image | None]], polarities: Sequence[str]) -> list[_Image | None]:
    """Per image, the regions of all ``polarities`` together (one bag)."""
    out: list[_Image | None] = []
    for parts in zip(*(per[p] for p in polarities)):
        have = [r for r in parts if r is not None]
        if not have:
            out.append(None)
            continue
        ev = [r.evidence for r in have]
        evs = [e for e in ev if e is not None]
        out.append(_Image(np.concatenate([r.F for r in have]), [b for r in have for b in r.boxes],
                          np.concatenate(evs) if len(evs) == len(ev) else None))
    return out


def _fit_stage(regions: Sequence[_Image | None], y: NDArray[np.bool_], l2: float, mil: bool) -> CandidateScorer:
    keep = [k for k, r in enumerate(regions) if r is not None]
    if not keep or not y[keep].any():
        raise DataError("fitting prompts: no lesion image has a candidate region")
    if mil:
        if y[keep].all():
            raise DataError("fitting prompts: no negative image has a candidate region of any polarity")
        return _mil([regions[k].F for k in keep], y[keep], l2)  # type: ignore[union-attr]
    X, t = _pseudo_labels([regions[k] for k in keep])  # type: ignore[misc]
    return _instances(X, t, l2)


def _pseudo_labels(regions: Sequence[_Image]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Each image's most evident region (positive) and its regions away from it (negatives)."""
    rows, labels = [], []
    for r in regions:
        if r.evidence is None:
            continue
        j = int(np.argmax(r.evidence))
        if r.evidence[j] <= 1.0:  # the CAM is not concentrated on any region: nothing to learn here
            continue
        rows.append(r.F[j])
        labels.append(True)
        for i, b in enumerate(r.boxes):
            if i != j and b is not None and (box_iou(b, r.boxes[j]) < 0.1 or r.evidence[i] < 0.5 * r.evidence[j]):
                rows.append(r.F[i])
                labels.append(False)
    t = np.array(labels, bool)
    if not t.any() or t.all():
        raise DataError("fitting prompts: the classifier's CAM is not concentrated on any candidate region "
                        "(no evidence to fit from); train a better classifier or add a negative class")
    return np.array(rows), t


def _polarity_score(regions: Sequence[_Image | None], y: NDArray[np.bool_], l2: float, mil: bool
                    ) -> tuple[float, NDArray[np.float64]]:
    """How well a polarity's regions explain the labels: ``(score, values)``. The score is the 2-fold
    held-out class-balanced image log-likelihood of the MIL model (higher = better, 0 = perfect), or the
    median best evidence; ``values[k]`` is image k's held-out log-likelihood (MIL) or best evidence (NaN
    where it has none: no-negative images without evidence)."""
    keep = [k for k, r in enumerate(regions) if r is not None]
    values = np.full(len(regions), np.nan)
    if mil:  # an image without any region scores -inf (right for a negative image, a miss for a lesion)
        yk = y[keep]
        if not yk.any():
            return 0.0, values
        folds = np.arange(len(keep)) % 2
        out = np.zeros(len(keep))
        for f in (0, 1) if not yk.all() else ():  # all regions in lesion images: they score alike
            tr = [keep[i] for i in np.flatnonzero(folds != f)]
            if y[tr].all() or not y[tr].any():
                return -np.inf, values
            m = _mil([regions[k].F for k in tr], y[tr], l2)  # type: ignore[union-attr]
            te = np.flatnonzero(folds == f)
            out[te] = _bag_scores(m, [regions[keep[i]].F for i in te])  # type: ignore[union-attr]
        empty = np.array([k for k in range(len(regions)) if regions[k] is None], int)
        S = np.concatenate([out, np.full(len(empty), -np.inf)])
        Y = np.concatenate([yk, y[empty]])
        # held-out class-balanced log-likelihood: it separates polarities whose AUCs tie (both 1.0)
        ll = -np.where(Y, np.logaddexp(0.0, -S), np.logaddexp(0.0, S))
        values[np.concatenate([np.asarray(keep, int), empty])] = ll
        return float(0.5 * ll[Y].mean() + 0.5 * (ll[~Y].mean() if (~Y).any() else 0.0)), values
    for k in keep:
        ev = regions[k].evidence  # type: ignore[union-attr]
        if ev is not None:
            values[k] = float(np.max(ev))
    values[[k for k in range(len(regions)) if regions[k] is None]] = 1.0  # no candidate: no evidence
    best = values[~np.isnan(values)]
    return (float(np.median(best)) if best.size else 0.0), values


def _polarity_margin(chosen: str, per_image: Mapping[str, NDArray[np.float64]], y: NDArray[np.bool_],
                     mil: bool, reps: int = 1000) -> dict[str, Any]:
    """How sure the polarity choice is: the chosen polarity's score minus the runner-up's, with a 95 %
    interval from resampling the images (seeded: the same images give the same interval); ``certain``
    when the interval excludes 0. Uses the per-image values of :func:`_polarity_score` (an image
    without a region in a polarity counts at the worst finite value seen)."""
    vals = {p: np.asarray(v, np.float64) for p, v in per_image.items()}
    finite = np.concatenate([v[np.isfinite(v)] for v in vals.values()])
    floor = float(finite.min()) - 1.0 if finite.size else -1.0

    def stat(v: NDArray[np.float64], idx: NDArray[np.int64]) -> float:
        v, yy = v[idx], y[idx]
        if mil:
            v = np.where(np.isfinite(v), v, floor)
            return float(0.5 * v[yy].mean() + 0.5 * (v[~yy].mean() if (~yy).any() else 0.0)) if yy.any() else 0.0
        v = v[~np.isnan(v)]
        return float(np.median(v)) if v.size else 0.0

    full = np.arange(len(y))
    others = [p for p in vals if p != chosen]
    runner = max(others, key=lambda p: stat(vals[p], full))
    diff = stat(vals[chosen], full) - stat(vals[runner], full)
    rng = np.random.default_rng(0)
    boots = []
    for _ in range(reps):
        idx = rng.integers(0, len(y), len(y))
        boots.append(stat(vals[chosen], idx) - stat(vals[runner], idx))
    lo, hi = (float(q) for q in np.percentile(boots, [2.5, 97.5]))
    return {"runner_up": runner, "difference": float(diff), "interval": [lo, hi], "certain": bool(lo > 0 or hi < 0)}
