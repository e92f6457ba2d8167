"""Fitting a scorer file from IMAGE LABELS only (never a mask): :func:`fit_scorer`.

Three learners (:data:`Learner`; ``auto``, the default: class contrast when the labels allow it, with a
negative class only from ``contrast_min_images`` images per class; else multiple-instance learning with a
negative class, the classifier's evidence without one):

* **class contrast** (``classes`` given, at least two classes of ``min_images`` images; a negative class,
  e.g. ``normal``, counts as one more class). Every lesion image shows its lesion, and the lesion is what
  tells the classes apart (shape, margin, echo; present or absent), not the tissue around it. Each image
  attends to its regions (softmax of a linear score) and predicts its class from the attended regions;
  fitting the class labels (class-balanced, L2, seeded random starts, the lowest loss kept) makes the
  attention pick, in every image, the region whose appearance tells its class: that attention is the
  scorer. The classifier and its CAM are not needed. The polarity (``auto``) and the L2 penalty are the
  ones whose model predicts the classes best on held-out halves. With a negative class, on draws of 15 to
  93 BUSI train images per class, it found the lesion's polarity in 23 of 24 draws and its regions in
  every draw from 20 per class, where multiple-instance learning picked the wrong polarity or regions
  away from the lesion in 15 of 24; with 10 per class both failed in half the draws, and on the 30 train
  images of the bundled sample it failed where multiple-instance learning did not. Hence the floor
  :data:`CONTRAST_MIN_IMAGES` (docs: quality, "Class contrast by default").
* **multiple-instance learning** (a negative class): every image is a bag of candidate regions; a lesion
  image holds at least one lesion region, a negative image none. The logistic model scores each region, an
  image's score is the log-sum-exp of its regions' scores, and the image labels are fit (class-balanced,
  L2). The polarity (``auto``) is the one whose fit predicts the image labels best on held-out halves
  (2-fold, class-balanced image log-likelihood). When the labels do not decide between ``dark`` and
  ``bright`` (the 95 % interval of the difference, over resampled images, includes 0; the provenance's
  ``polarity_margin``), a model of both polarities' regions (``both``) competes by the same held-out score
  (``polarity_margin["both_score"]``) and is used when it scores higher; ``polarity_margin["by_score"]``
  then keeps the polarity the scores alone chose (:func:`polarity_doubt` says it in words).
* **the classifier's evidence** (no negative class and one lesion class, a ``prior``, or
  ``learner="evidence"``): the run's classifier is the teacher. Each region gets an
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
evidence map, so that a fitted weight means the same thing when the file is used. Their weights are
bounded below by 0 in every model: more of the classifier's lesion evidence never makes a region less
lesion-like (unbounded, a fit with a negative class can explain the labels with the CAM itself and pick
regions away from the lesion; see ``_fit_models._bounds``). They are fitted only with ``cam_features=True``
(default ``False``): when the classifier's CAM does not find the lesion — every from-scratch classifier
measured on BUSI — they mislead the fit (docs: quality, "Fitting with or without CAM features"). With a
localising CAM they help, and the choice then follows the CAM.

No shadow penalty is fit (``busi-v1``'s was chosen with masks): fitted files have ``shadow_penalty`` 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from samprompt.errors import ConfigError, DataError
from samprompt.parallel import WorkerPool, overlapped
from samprompt.proposals._fit_models import Mode, _fit_stage, _polarity_margin, _polarity_score
from samprompt.proposals._fit_work import (
    _erasure_evidence,
    _Image,
    _is_colour,
    _Maps,
    _pool,
    _Proposed,
    _selector,
    _work,
)
from samprompt.proposals.features import CAM_FEATURES, FEATURE_NAMES, REFINED_FEATURE_NAMES
from samprompt.proposals.scorer import CandidateScorer, ScorerFile
from samprompt.proposals.select import polarities_of

__all__ = ["CONTRAST_MAX_IMAGES", "CONTRAST_MIN_IMAGES", "MIN_IMAGES", "CamFn", "Learner", "ScoreFn", "fit_scorer",
           "polarity_doubt", "resolve_learner"]

log = logging.getLogger(__name__)

#: The fewest images of a class a fit accepts (lesion images; negative images when there are any).
MIN_IMAGES = 8
#: With a negative class and ``learner="auto"``: class contrast when every class (the negative one
#: included) has at least this many images, else multiple-instance learning. The smallest count at which
#: class contrast found the lesion in every draw on BUSI train subsets (4 draws each of 10, 15, 20, 30, 45,
#: 60 and 93 images per class; docs: quality, "Class contrast by default"): a default of the method, not a
#: fitted value; ``contrast_min_images`` overrides it.
CONTRAST_MIN_IMAGES = 20
#: A fit by class contrast reads at most this many train images of each class (drawn with the run's seed;
#: :func:`samprompt.runner.fitting.fit_on_dataset`'s ``contrast_max_images``, ``fit.contrast_max_images``):
#: a bound on the fit's time and memory (about 0.2 s and 45 kB per image on a 2-core CPU) for large data
#: sets, not a quality optimum. On BUSI val, four draws of 60 images per class per split gave a lower and
#: far less steady Dice than all images (mean 0.608, draws 0.502 to 0.655, against 0.633; docs: quality,
#: "More draws: the cap of 60 withdrawn"), so the bound lies above every BUSI class (at most 306 train
#: images) and more images are read where there are more: a default of the method, not a fitted value.
CONTRAST_MAX_IMAGES = 500
#: ``cams(images) -> one (H, W) CAM per image`` (any size; the run's classifier and CAM method).
CamFn = Callable[[Sequence[Any]], Sequence[NDArray[np.float32]]]
#: ``score(images) -> (N,)`` the classifier's target-class score (e.g. probability) of each image.
ScoreFn = Callable[[Sequence[Any]], NDArray[np.float64]]
#: How a fit learns its weights: ``mil`` (multiple-instance learning; needs a negative class),
#: ``contrast`` (class-contrast attention; needs ``classes`` with at least two classes of ``min_images``
#: images each, negative classes counting as classes), ``evidence`` (the classifier's CAM and erasure
#: evidence; no negative class) or ``auto``: with a negative class, ``contrast`` when every class has at
#: least ``contrast_min_images`` images (:data:`CONTRAST_MIN_IMAGES`), else ``mil``; without one,
#: ``evidence`` when a ``prior`` is given, else ``contrast`` when possible, else ``evidence``.
Learner = Literal["auto", "mil", "contrast", "evidence"]


def polarity_doubt(polarity: str, margin: Mapping[str, Any] | None, on: str = "") -> str | None:
    """An uncertain polarity choice in words, from a fitted scorer's ``polarity`` and its provenance's
    ``polarity_margin``; ``None`` when the choice was certain or not made (a polarity given).

    Args:
        polarity: The scorer's polarity (``both`` when the model of both polarities won).
        margin: ``provenance["fit"]["polarity_margin"]`` (``runner_up``, ``interval``, ``certain`` and,
            for an uncertain MIL choice, ``both_score`` and, when ``both`` won, ``by_score``).
        on: Inserted after the choice, e.g. ``" on 453 + 93 images"``.

    Example:
        >>> polarity_doubt("dark", {"runner_up": "bright", "interval": [-0.04, 0.08], "certain": False,
        ...                         "both_score": -0.6})
        'polarity dark chosen over bright (a model of both polarities scored lower), but the labels do not decide it (95 % interval of the difference [-0.04, 0.08] includes 0)'
    """
    if not margin or margin.get("certain", True):
        return None
    lo, hi = margin["interval"]
    undecided = f"(95 % interval of the difference [{lo:.3g}, {hi:.3g}] includes 0)"
    if margin.get("by_score"):
        return (f"the labels do not decide between dark and bright{on} {undecided}, and a model of both scored "
                f"higher, so the fit used both polarities ({margin['by_score']} by score alone)")
    lower = " (a model of both polarities scored lower)" if "both_score" in margin else ""
    return f"polarity {polarity} chosen over {margin['runner_up']}{lower}{on}, but the labels do not decide it {undecided}"


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
    cam_features: bool = False,
    classes: Sequence[Any] | None = None,
    learner: Learner = "auto",
    contrast_min_images: int | None = CONTRAST_MIN_IMAGES,
) -> ScorerFile:
    """Fit a two-stage scorer from images and their image-level labels (see the module docstring).

    Args:
        images: (H, W[, 3]) uint8 images (any sequence; each is read once per pass, twice in all).
        lesion: Per image, whether it shows a lesion (``False`` = the negative class).
        cams: The classifier's CAMs (:data:`CamFn`). Needed for a fit from the classifier's evidence
            (no negative class, no class contrast); with ``cam_features`` also the source of the CAM
            features.
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
        prior: Without a negative class: keep this scorer file's weights (both stages) and fit only the
            polarity, from the classifier's evidence (with ``learner="auto"`` a prior turns class
            contrast off; with ``"contrast"`` the prior is ignored). For data whose classifier's CAM does not find
            the lesion, where weights learnt from that CAM follow it to the wrong regions (docs: quality,
            BUSI inverted without ``normal``). Its shadow penalty and agreement weight are not carried.
            Ignored (with a log line) with a negative class or class contrast: they fit every weight
            from the labels.
        cam_features: Fit the CAM features' weights too (bounded below by 0; needs ``cams``). Off, they
            stay 0: the scorer picks by appearance, the strategy never reads the CAM, and a fit with a
            negative class computes no CAM at all.
        classes: Per image, its class label (any hashable, e.g. the class name), for class contrast
            (see :data:`Learner`).
        learner: How the weights are learnt (:data:`Learner`).
        contrast_min_images: With a negative class and ``learner="auto"``: class contrast when every
            class has at least this many images (and ``classes`` are given), else multiple-instance
            learning; ``None``: multiple-instance learning whenever there is a negative class.

    Returns:
        The fitted :class:`~samprompt.proposals.scorer.ScorerFile` (``shadow_penalty`` 0).

    Raises:
        DataError: Too few images of a class (saying how many are needed), or no image with a candidate.
        ValueError: Mismatched lengths or an unknown polarity.
        ConfigError: ``workers`` is not an integer >= 0, ``cam_features`` without ``cams``, an unknown
            ``learner``, or one these labels cannot serve (e.g. ``contrast`` without two classes of
            ``min_images`` images each).
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
                        "(or leave the negative class out)")
    mode, cls = _mode(y, classes, learner, min_images, prior is not None, contrast_min_images)
    if mode == "evidence" and cams is None:  # (checked before any image is read)
        raise DataError("fitting prompts without a negative class needs the classifier's CAMs (cams=) or at "
                        f"least two lesion classes of {min_images} images each (classes=)")
    if cam_features and cams is None:
        raise ConfigError("cam_features: fitting the CAM features needs the classifier's CAMs (cams=)")
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
        if cams is None or (mode != "evidence" and not cam_features):
            return [(None, None)] * len(batch)
        t = time.perf_counter()
        if mode != "evidence":
            out: list[_Maps] = [(np.asarray(x, np.float32), None) for x in cams(list(batch))]
        else:
            both = cams([*batch, *(np.ascontiguousarray(im[:, ::-1]) for im in batch)])  # one call, mirrors too
            out = [(np.asarray(x, np.float32) if cam_features else None,
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
        penalty: dict[str, float] = {}  # the contrast model's L2 penalty, chosen per polarity (else l2)
        for p in tries:
            scores[p], per_image[p], penalty[p] = _polarity_score(per[p], y, l2, mode, cls)
        chosen = polarity if polarity != "auto" else max(tries, key=lambda p: scores[p])
        groups = cls if cls is not None else y.astype(np.int64)  # the classes (contrast) or lesion / negative
        margin = (_polarity_margin(chosen, per_image, groups, mode != "evidence")
                  if polarity == "auto" and len(tries) > 1 else None)
        pooled = None
        if margin is not None and not margin["certain"] and mode == "mil" and {chosen, margin["runner_up"]} == {
                "dark", "bright"}:
            # the labels do not decide between dark and bright: a model of both polarities' regions competes,
            # by the same held-out score (docs: quality, "Both polarities when the labels do not decide")
            pooled = _polarity_score(_pool(per, ("dark", "bright")), y, l2, mode, cls)[0]
            margin["both_score"] = pooled
        if pooled is not None and margin is not None and pooled > scores[chosen]:
            by_score, chosen = chosen, "both"
            margin["by_score"] = by_score
            log.warning("fit: the labels do not decide between dark and bright on these %d images (difference "
                        "%.3g, 95%% interval [%.3g, %.3g] includes 0) and a model of both scores higher (%.4g "
                        "against %.4g): fitting on both polarities; set the fit's polarity if you know it", len(y),
                        margin["difference"], *margin["interval"], pooled, scores[by_score])
        elif margin is not None and not margin["certain"]:
            log.warning("fit: the polarity choice %s over %s is uncertain on these %d images (difference %.3g, "
                        "95%% interval [%.3g, %.3g] includes 0); set the fit's polarity if you know it",
                        chosen, margin["runner_up"], len(y), margin["difference"], *margin["interval"])
        if chosen not in penalty:  # a pooled polarity (``both``): its own choice of the penalty
            penalty[chosen] = (_polarity_score(_pool(per, polarities_of(chosen)), y, l2, mode, cls)[2]
                               if mode == "contrast" else l2)
        clock["polarity"] = time.perf_counter() - t
        if prior is not None and mode != "evidence":
            log.info("fit: prior %r ignored: the %s fits every weight from the labels", prior.name or prior.source,
                     _METHOD[mode])
        if prior is not None and mode == "evidence":  # the polarity is the fit's; the weights are the prior's
            log.info("fit: polarity %s (scores %s) from classifier evidence; weights of the prior %r", chosen,
                     scores, prior.name or prior.source)
            if timings is not None:
                timings.update(clock)
            return _with_prior(prior, chosen, scores, n_pos, n_neg, l2, t0, provenance, margin)
        t = time.perf_counter()
        # a negative image without regions of the chosen polarity gives those of every tried polarity instead
        bags1 = [a if yk or a is not None else b
                 for a, b, yk in zip(_pool(per, polarities_of(chosen)), _pool(per, tries), y)]
        stage1 = _fit_stage(bags1 if mode == "mil" else _pool(per, polarities_of(chosen)), y, penalty[chosen], mode,
                            cls)
        clock["stage1"] = time.perf_counter() - t
        log.info("fit: polarity %s (scores %s), %s", chosen, scores, _METHOD[mode])
        # pass 2: refined regions of the chosen polarity (pass 1's candidates), scored by the fitted first stage
        t = time.perf_counter()
        uses_cam = cams is not None and bool(np.any(stage1.weights[list(CAM_FEATURES)] != 0))
        second: list[_Image | None] = []  # (their CAM features are computed whenever there is a CAM)
        for start in range(0, len(images), batch_size):
            ks = range(start, min(len(images), start + batch_size))
            args = [(stage1, polarities_of(chosen), tries if mode == "mil" and not y[k] else (), uses_cam,
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
        stage2 = _fit_stage(second, y, penalty[chosen], mode, cls)
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
        "method": _METHOD[mode],
        "polarity_scores": scores, "polarity_margin": margin, "lesion_images": n_pos, "negative_images": n_neg,
        "l2": penalty[chosen], "cam_features": cam_features,
        "cam_weight_norm": float(np.linalg.norm(stage1.weights[cam_idx])), "seconds": time.perf_counter() - t0,
        "masks_used": False, "stage2": stage2_note,
    }
    prov = {**dict(provenance or {}), "fit": fit_info, "mask_tuned": []}
    return ScorerFile(stage1, stage2, polarity=chosen, shadow_penalty=0.0, name="fitted", provenance=prov)


_METHOD: dict[Mode, str] = {
    "mil": "multiple-instance logistic (image labels)",
    "contrast": "class-contrast attention (image labels)",
    "evidence": "classifier evidence (CAM + erasure)",
}


def resolve_learner(lesion: Sequence[bool], classes: Sequence[Any] | None = None, learner: Learner = "auto",
                    min_images: int = MIN_IMAGES, prior: bool = False,
                    contrast_min_images: int | None = CONTRAST_MIN_IMAGES) -> Learner:
    """The learner :func:`fit_scorer` would use with these labels (``"mil"``, ``"contrast"`` or
    ``"evidence"``), decided from the labels alone, before any image is read.

    Args:
        lesion: Per image, whether it shows a lesion (False: a negative class).
        classes: Per image, its class name (for class contrast), or ``None``.
        learner: The learner asked for (:data:`Learner`).
        min_images: The fewest images of a class the fit accepts.
        prior: Whether a prior scorer is given (with ``auto`` and no negative class: ``evidence``).
        contrast_min_images: See :func:`fit_scorer`.

    Example:
        >>> resolve_learner([True] * 40 + [False] * 20, ["benign"] * 20 + ["malignant"] * 20 + ["normal"] * 20)
        'contrast'
        >>> resolve_learner([True] * 30 + [False] * 15, ["benign"] * 15 + ["malignant"] * 15 + ["normal"] * 15)
        'mil'

    Raises:
        ConfigError: An unknown learner, or one these labels cannot serve (saying why).
        ValueError: ``classes`` of another length than ``lesion``.
    """
    return _mode(np.asarray(lesion, bool), classes, learner, min_images, prior, contrast_min_images)[0]


def _mode(y: NDArray[np.bool_], classes: Sequence[Any] | None, learner: str, min_images: int, prior: bool,
          contrast_min_images: int | None = CONTRAST_MIN_IMAGES) -> tuple[Mode, NDArray[np.int64] | None]:
    """The fit's mode (see :data:`Learner`) and, for ``contrast``, each image's class index.

    Raises:
        ConfigError: An unknown ``learner``, or one these labels cannot serve (saying why).
        ValueError: ``classes`` of another length than the labels.
    """
    if learner not in ("auto", "mil", "contrast", "evidence"):
        raise ConfigError(f"learner: must be auto, mil, contrast or evidence, got {learner!r}")
    if classes is not None and len(classes) != len(y):
        raise ValueError(f"{len(y)} labels but {len(classes)} classes")
    negatives = not y.all()
    if learner == "mil" and not negatives:
        raise ConfigError("learner: mil needs images of a negative class")
    if learner == "evidence" and negatives:
        raise ConfigError("learner: evidence is for data without a negative class (use mil or contrast)")
    if learner == "mil":
        return "mil", None
    if learner == "evidence":
        return "evidence", None
    if learner == "auto" and prior and not negatives:
        return "evidence", None
    # class contrast needs two classes of `floor` images; with a negative class and `auto`, of
    # `contrast_min_images` (below it multiple-instance learning, which needs none of these)
    floor = min_images
    if learner == "auto" and negatives:
        if contrast_min_images is None:
            return "mil", None
        floor = max(min_images, contrast_min_images)
    why = "no class names given (classes=)"
    if classes is not None:
        names, codes = np.unique(np.asarray([str(c) for c in classes]), return_inverse=True)
        counts = np.bincount(codes, minlength=len(names))
        if len(names) >= 2 and bool(np.all(counts >= floor)):
            return "contrast", codes.astype(np.int64)
        why = (f"classes {dict(zip(names.tolist(), counts.tolist()))}: class contrast needs at least two classes "
               f"of {floor} images each")
    if learner == "auto" and negatives:
        log.info("fit: %s; learning by %s", why, _METHOD["mil"])
        return "mil", None
    if learner == "contrast":
        raise ConfigError(f"learner: contrast impossible on these images ({why})")
    log.info("fit: no negative class and %s; learning by %s", why, _METHOD["evidence"])
    return "evidence", None


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


