"""Fitting the ``candidates`` scorer from a data set's IMAGE LABELS (``samprompt fit-prompts`` and the run's
``fit`` stage).

:class:`LabelsOnly` is the one door to the data during a fit: it hands out images and class names, and
its ``load_mask`` raises, so no mask is read. :func:`classifier_evidence` turns a classifier and a CAM
method into the two callables :func:`~samprompt.proposals.fit.fit_scorer` takes; :func:`fit_on_dataset`
does the whole fit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray

from samprompt._torch import resolve_device
from samprompt.cams import Target
from samprompt.classifiers import ClassifierInfo
from samprompt.config import ComponentSpec, PipelineConfig
from samprompt.data import Dataset, DatasetImages
from samprompt.errors import ConfigError, DataError
from samprompt.pipeline import PromptPipeline
from samprompt.proposals.fit import (
    CONTRAST_MAX_IMAGES,
    CONTRAST_MIN_IMAGES,
    CamFn,
    Learner,
    ScoreFn,
    fit_scorer,
    resolve_learner,
)
from samprompt.proposals.guides import PackedMask
from samprompt.proposals.scorer import ScorerFile, load_scorer
from samprompt.runner.config import FitSpec, RunConfig
from samprompt.runner.stages import PreparedData, file_sha256, readable_ids

__all__ = ["LabelsOnly", "cap_per_class", "classifier_evidence", "fit_on_dataset", "get_fitted_scorer",
           "get_fitted_threshold", "guides_before_training"]

log = logging.getLogger(__name__)


class LabelsOnly(DatasetImages):
    """The images of ``ids`` of a data set (read when indexed) and their class names: nothing else.

    Args:
        dataset: The data set.
        ids: Sample ids, e.g. a split's train part.
    """

    def __init__(self, dataset: Dataset, ids: Sequence[str]) -> None:
        super().__init__(dataset, ids)
        self.labels = [dataset[dataset.position(i)].label for i in self.ids]

    def load_mask(self, i: int | str) -> None:
        """Always raises: a fit reads image labels only.

        Raises:
            DataError: Always.
        """
        raise DataError(f"fitting prompts reads image labels only; a mask was asked for ({i!r})")


def classifier_evidence(model: torch.nn.Module, class_names: Sequence[str], preprocessing: Any,
                        target_layer: str | None, cam: ComponentSpec | None = None,
                        target: str | Sequence[str] = "predicted", device: str = "cpu",
                        threads: int | None = 1) -> tuple[CamFn, ScoreFn]:
    """``(cams, score)`` for :func:`~samprompt.proposals.fit.fit_scorer` from a loaded classifier.

    Args:
        model: The classifier ((B, C) logits).
        class_names: Its output classes.
        preprocessing: Its preprocessing.
        target_layer: Its CAM layer (e.g. the checkpoint's).
        cam: The CAM extractor spec (default ``gradcampp``).
        target: ``predicted`` (any other string too, e.g. a run's ``label`` policy: labels are not
            handed to the evidence) or class names whose logits are summed (e.g. the lesion classes).
        device: Where the classifier runs.
        threads: Torch intra-op threads while a call runs (restored after it); ``None`` = torch's
            setting. The default, 1, suits the fit, which alternates batches of CAMs with one-threaded
            proposal work (or runs that work in worker processes beside them): on the busy 2-core CPU the
            BUSI fit's CAMs took 18.7 s with 1 thread and 131.0 s with 2 (docs: quality, "Fit time");
            the CAMs are the same.
    """
    cfg = PipelineConfig(cam=cam or ComponentSpec(name="gradcampp"), prompts=[ComponentSpec(name="box")],
                         segmenter=ComponentSpec(name="classical"))
    pipe = PromptPipeline.from_config(cfg, classifier=model, class_names=class_names, preprocessing=preprocessing,
                                      target_layer=target_layer, device=device)
    names = list(class_names)
    tgt: Target = "predicted" if isinstance(target, str) else tuple(names.index(c) for c in target)

    def run(images: Sequence[Any]) -> list[Any]:
        before = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            return list(pipe.compute_cams(list(images), [tgt] * len(images)))
        finally:
            if threads is not None:
                torch.set_num_threads(before)

    def cams(images: Sequence[Any]) -> list[NDArray[np.float32]]:
        return [r.cam for r in run(images)]

    def score(images: Sequence[Any]) -> NDArray[np.float64]:
        return np.array([float(r.probabilities[list(r.target)].sum()) for r in run(images)])

    return cams, score


def cap_per_class(ids: Sequence[str], labels: Sequence[str], max_images: int, seed: int) -> list[str]:
    """At most ``max_images`` of ``ids`` of each class name in ``labels`` (the same length), drawn at
    random with ``seed`` and kept in their given order; a class with fewer keeps all of its images.

    Raises:
        ConfigError: ``max_images`` < 1, or ``labels`` of another length.
    """
    if max_images < 1:
        raise ConfigError(f"fit.max_images must be at least 1 (got {max_images})")
    if len(labels) != len(ids):
        raise ConfigError(f"cap_per_class: {len(ids)} ids but {len(labels)} labels")
    rng = np.random.default_rng(seed)
    keep: set[int] = set()
    for name in sorted(set(labels)):
        members = [k for k, lab in enumerate(labels) if lab == name]
        if len(members) > max_images:
            members = sorted(rng.choice(members, size=max_images, replace=False).tolist())
        keep.update(members)
    return [i for k, i in enumerate(ids) if k in keep]


def fit_on_dataset(
    dataset: Dataset,
    ids: Sequence[str],
    *,
    negative_classes: Sequence[str] = (),
    evidence: tuple[CamFn, ScoreFn] | None = None,
    polarity: str = "auto",
    l2: float = 1e-2,
    min_images: int = 8,
    erase: bool = True,
    provenance: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 0,
    timings: dict[str, float] | None = None,
    prior: str | None = None,
    cam_features: bool = False,
    learner: Learner = "auto",
    check_images: bool = True,
    max_images: int | None = None,
    seed: int = 0,
    contrast_min_images: int | None = CONTRAST_MIN_IMAGES,
    contrast_max_images: int | None = CONTRAST_MAX_IMAGES,
) -> ScorerFile:
    """Fit a scorer on the images ``ids`` of ``dataset`` from their class names only (:class:`LabelsOnly`).

    Args:
        dataset: The data set.
        ids: The images to fit on (a run's TRAIN split).
        negative_classes: Classes whose images show no lesion (absent names are ignored); see ``learner``
            (each image's class name is its class for class contrast).
        evidence: ``(cams, score)`` of :func:`classifier_evidence`.
        polarity, l2, min_images: See :func:`~samprompt.proposals.fit.fit_scorer`.
        erase: Use the classifier's score drop when a region is erased (needs ``evidence``).
        provenance: Recorded in the file.
        progress: ``progress(done, total)``.
        workers, timings: See :func:`~samprompt.proposals.fit.fit_scorer` (the result is the same with
            any number of workers).
        prior: A shipped scorer name or scorer file whose weights a fit WITHOUT a negative class keeps
            (it then fits the polarity only); see :func:`~samprompt.proposals.fit.fit_scorer`.
        cam_features: Fit the CAM features' weights too (needs ``evidence``); see
            :func:`~samprompt.proposals.fit.fit_scorer`.
        learner: How the weights are learnt
            (:data:`~samprompt.proposals.fit.Learner`).
        check_images: Decode every image first and leave out (with a warning) those that do not decode;
            ``False`` where the caller has just done so (the guided training's ids).
        max_images: Fit on at most this many images of each class name (:func:`cap_per_class`, drawn
            with ``seed``); ``None`` (default): all of them. The fit's time grows with its images.
        seed: The draw's seed.
        contrast_min_images: With a negative class and ``learner="auto"``, the fewest images of every class
            for class contrast (else multiple-instance learning); see
            :func:`~samprompt.proposals.fit.fit_scorer`.
        contrast_max_images: When the labels make the fit class contrast and ``max_images`` is ``None``: fit
            on at most this many images of each class, drawn with ``seed`` (``None``: all; else at least
            ``min_images`` and ``contrast_min_images``). See :data:`~samprompt.proposals.fit.CONTRAST_MAX_IMAGES`.

    Raises:
        DataError: Unreadable images, too few images of a class (saying how many are needed).
        ConfigError: ``contrast_max_images`` below ``min_images`` or ``contrast_min_images``, or a learner
            these labels cannot serve.
    """
    floor = max(min_images, contrast_min_images or 0)
    if contrast_max_images is not None and contrast_max_images < floor:
        raise ConfigError(f"contrast_max_images ({contrast_max_images}) must be at least min_images and "
                          f"contrast_min_images ({floor})")
    ids = readable_ids(dataset, ids, [], "the fit") if check_images else list(ids)
    view = LabelsOnly(dataset, ids)
    cap, cap_of = max_images, "max_images"
    if cap is not None:
        view = LabelsOnly(dataset, cap_per_class(ids, view.labels, cap, seed))
    # the learner, decided once from the labels of the images fitted on; class contrast has a cap of its own
    # (at least its floor, so it stays class contrast)
    present = sorted(set(negative_classes) & set(view.labels))
    try:
        learner = resolve_learner([lab not in present for lab in view.labels], view.labels, learner, min_images,
                                  prior is not None, contrast_min_images)
    except ConfigError:  # a learner these labels cannot serve: fit_scorer says so, in its order
        pass
    if cap is None and contrast_max_images is not None and learner == "contrast":
        cap, cap_of = contrast_max_images, "contrast_max_images"
        view = LabelsOnly(dataset, cap_per_class(ids, view.labels, cap, seed))
    present = sorted(set(negative_classes) & set(view.labels))
    lesion = [lab not in present for lab in view.labels]
    cams, score = evidence if evidence is not None else (None, None)
    prov = {**(provenance or {}), "negative_classes": present, "images": len(view)}
    if cap is not None:
        prov |= {cap_of: cap, "images_offered": len(ids)}
    return fit_scorer(view, lesion, cams=cams, score=score if erase else None, polarity=polarity, l2=l2,
                      min_images=min_images, provenance=prov, progress=progress, workers=workers, timings=timings,
                      prior=None if prior is None else load_scorer(prior), cam_features=cam_features,
                      classes=view.labels, learner=learner, contrast_min_images=contrast_min_images)


def _provenance(config: RunConfig, data: PreparedData, classifier_checkpoint: Path | None) -> dict[str, Any]:
    import samprompt

    return {"data": str(config.data.path), "data_fingerprint": data.fingerprint,
            "split": {"part": "train", "fingerprint": data.split.fingerprint, "seed": data.split.seed},
            "seed": config.seed, "library_version": samprompt.__version__,
            "classifier_sha256": None if classifier_checkpoint is None else file_sha256(classifier_checkpoint),
            "cam": config.pipeline.cam.model_dump() if classifier_checkpoint is not None else None}


def get_fitted_scorer(config: RunConfig, out: Path, data: PreparedData, model: torch.nn.Module,
                      info: ClassifierInfo, classifier_checkpoint: Path) -> Path | None:
    """The run's fitted scorer (a strategy's ``scorer: fit``): ``scorer.json`` in the run folder, fitted
    now on the TRAIN split from image labels only (:mod:`samprompt.runner.fitting`) unless a previous
    invocation (or the guided training, :func:`guides_before_training`) wrote it; ``None`` when no
    strategy asks for it. The proposals are made in ``pipeline.prompt_workers`` worker processes (the
    same scorer with any number).

    Raises:
        DataError: Too few train images of a class (saying how many are needed), unreadable data.
    """
    from samprompt.proposals.scorer import save_scorer

    if not config.fits_scorer:
        return None
    path = out / "scorer.json"
    if path.exists():
        log.info("reusing the fitted scorer %s", path)
        return path
    spec = config.fit if config.fit is not None else FitSpec()
    target = config.target_classes(info.class_names) or "predicted"
    evidence = classifier_evidence(model, info.class_names, info.preprocessing, info.target_layer,
                                   cam=config.pipeline.cam, target=target,
                                   device=str(resolve_device(config.device)))
    sf = fit_on_dataset(data.dataset, data.split.ids("train"), negative_classes=spec.negative_classes,
                        evidence=evidence, polarity=spec.polarity, l2=spec.l2, min_images=spec.min_images,
                        erase=spec.erase, provenance=_provenance(config, data, classifier_checkpoint),
                        prior=spec.prior, cam_features=spec.cam_features,
                        learner=spec.learner, workers=config.pipeline.prompt_workers,
                        max_images=spec.max_images, seed=config.seed, contrast_min_images=spec.contrast_min_images,
                        contrast_max_images=spec.contrast_max_images)
    save_scorer(sf, path)  # atomic
    return path


def guides_before_training(config: RunConfig, out: Path, data: PreparedData, ids: Sequence[str]
                           ) -> tuple[list[PackedMask | None], dict[str, Any]]:
    """The guide masks of a guided training (``classifier.train.guide_weight > 0``), made BEFORE it.

    The run's scorer is fitted first, on the TRAIN split from image labels only and without the
    classifier (``fit.learner`` ``mil`` or ``contrast``, no CAM features), and written to ``scorer.json``
    (the fit stage then reuses it; a previous invocation's file is reused here too). The region it chooses
    on each training image of a lesion class (not in ``fit.negative_classes``) is that image's guide
    (:func:`~samprompt.proposals.guide_masks`); no mask file is opened.

    Args:
        config: The run config.
        out: The run folder.
        data: The prepared data and split.
        ids: The training images, in the order of the training examples, already decoded once (not checked again).

    Returns:
        ``(one guide or None per id, a summary for train_result.json)``.

    Raises:
        ConfigError: The fit would need the classifier (the ``evidence`` learner, CAM features), naming
            ``classifier.train.guide_weight``.
        DataError: Too few train images of a class, unreadable data.
    """
    import time

    from samprompt.proposals.guides import guide_masks
    from samprompt.proposals.scorer import save_scorer

    spec = config.fit if config.fit is not None else FitSpec()
    if spec.cam_features:
        raise ConfigError("classifier.train.guide_weight: the guides are fitted before the classifier is trained, "
                          "so fit.cam_features must be false")
    path = out / "scorer.json"
    t0 = time.perf_counter()
    view = LabelsOnly(data.dataset, ids)
    negatives = set(spec.negative_classes)
    use = [lab not in negatives for lab in view.labels]
    if resolve_learner(use, view.labels, spec.learner, spec.min_images,
                       contrast_min_images=spec.contrast_min_images) == "evidence":
        raise ConfigError("classifier.train.guide_weight: the guides are fitted from the labels before the classifier "
                          "exists, and without a negative class these train images need its evidence (class "
                          f"contrast needs two classes of fit.min_images = {spec.min_images} images each)")
    if path.exists():
        log.info("guided training: reusing the fitted scorer %s", path)
    else:
        sf = fit_on_dataset(data.dataset, ids, negative_classes=spec.negative_classes, evidence=None,
                            polarity=spec.polarity, l2=spec.l2, min_images=spec.min_images, erase=False,
                            provenance={**_provenance(config, data, None), "before_training": True},
                            prior=None, learner=spec.learner, workers=config.pipeline.prompt_workers,
                            check_images=False,  # get_classifier has decoded them
                            max_images=spec.max_images, seed=config.seed,
                            contrast_min_images=spec.contrast_min_images,
                            contrast_max_images=spec.contrast_max_images)
        save_scorer(sf, path)
    fitted = time.perf_counter() - t0
    keep = config.classifier.train.guide_keep
    guides = guide_masks(view, path, use, workers=config.pipeline.prompt_workers, keep=keep)
    summary = {"scorer": str(path), "scorer_sha256": file_sha256(path), "images": len(ids),
               "lesion_images": sum(use), "keep": keep, "with_guide": sum(g is not None for g in guides),
               "fit_seconds": fitted, "guide_seconds": time.perf_counter() - t0 - fitted}
    log.info("guided training: %d of %d training images have a guide (fit %.1f s, guides %.1f s)",
             summary["with_guide"], len(ids), fitted, summary["guide_seconds"])
    return guides, summary


def _threshold_identity(config: RunConfig, data: PreparedData, scorer: Path, classifier_checkpoint: Path,
                        part: str) -> dict[str, Any]:
    """What a fitted threshold depends on: when any of it changes, ``threshold.json`` is fitted again."""
    masker = {k: v for k, v in config.pipeline.masker.params.items() if k != "value"}
    return {"scorer_sha256": file_sha256(scorer), "classifier_sha256": file_sha256(classifier_checkpoint),
            "cam": config.pipeline.cam.model_dump(mode="json"), "masker": masker,
            "target": config.target if isinstance(config.target, str) else list(config.target),
            "negative_classes": list((config.fit or FitSpec()).negative_classes),
            "split_fingerprint": data.split.fingerprint, "part": part}


def get_fitted_threshold(config: RunConfig, out: Path, data: PreparedData, model: torch.nn.Module,
                         info: ClassifierInfo, scorer: Path | None, classifier_checkpoint: Path) -> float | None:
    """The threshold of ``pipeline.masker: {name: threshold, params: {value: fit}}``, chosen without masks.

    On the lesion images (class not in ``fit.negative_classes``) of the VAL part of the split (the TRAIN
    part when val is empty), the run's CAM (its ``pipeline.cam`` and ``target``) is masked at each value of
    :data:`~samprompt.maskers.fit.DEFAULT_GRID`, and the value whose boxes agree best with the boxes of
    the regions the run's fitted label-only scorer chooses (:func:`~samprompt.proposals.guide_masks`) is
    kept (:func:`~samprompt.maskers.fit.fit_threshold`). No mask is read. The choice, its agreement curve
    and what it depends on are written to ``threshold.json`` and reused while those stay the same.

    Args:
        config: The run config.
        out: The run folder.
        data: The prepared data and split.
        model, info: The run's classifier.
        scorer: The fitted scorer (:func:`get_fitted_scorer`).
        classifier_checkpoint: Its checkpoint (hashed into the identity).

    Returns:
        The value, or ``None`` when the config does not ask for one.

    Raises:
        DataError: No readable lesion image in the part, or the scorer chose no region on any of them.
    """
    import json
    import time

    from samprompt.maskers.fit import fit_threshold
    from samprompt.proposals.guides import guide_masks
    from samprompt.runner.outputs import atomic_write_json
    from samprompt.runner.stages import resolve_targets

    if not config.fits_threshold:
        return None
    if scorer is None:  # RunConfig.fits_scorer makes the fit stage run: a bug if it did not
        raise DataError("the threshold fit needs the run's fitted scorer, and none was fitted")
    part: Literal["val", "train"] = "val" if data.split.ids("val") else "train"
    identity = _threshold_identity(config, data, scorer, classifier_checkpoint, part)
    path = out / "threshold.json"
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = {}
        if old.get("identity") == identity and isinstance(old.get("value"), float):
            log.info("reusing the fitted threshold %s (%.2f)", path, old["value"])
            return float(old["value"])
        log.info("fitting the threshold again: %s was made from other inputs", path)
    t0 = time.perf_counter()
    ds = data.dataset
    negatives = set((config.fit or FitSpec()).negative_classes)
    ids = [i for i in readable_ids(ds, data.split.ids(part), [], "the threshold fit")
           if ds[ds.position(i)].label not in negatives]
    if not ids:
        raise DataError(f"pipeline.masker.params.value: fit needs lesion images in the {part} part of the split "
                        f"(classes other than {sorted(negatives)}), and it has none")
    view = LabelsOnly(ds, ids)
    boxes = [None if g is None else (g.box[1], g.box[0], g.box[3], g.box[2])
             for g in guide_masks(view, scorer, workers=config.pipeline.prompt_workers)]
    cfg = PipelineConfig(cam=config.pipeline.cam, prompts=[ComponentSpec(name="box")],
                         segmenter=ComponentSpec(name="classical"))  # the CAM extractor is all it uses
    pipe = PromptPipeline.from_config(cfg, classifier=model, class_names=info.class_names,
                                      preprocessing=info.preprocessing, target_layer=info.target_layer,
                                      device=str(resolve_device(config.device)), where="pipeline")
    targets = resolve_targets(config, info, view.labels)
    step = max(1, config.batch_size)

    def cams() -> Iterator[NDArray[np.float32]]:
        for start in range(0, len(ids), step):
            batch = [view[k] for k in range(start, min(len(ids), start + step))]
            yield from (r.cam for r in pipe.compute_cams(batch, targets[start:start + len(batch)]))

    masker = {k: v for k, v in config.pipeline.masker.params.items() if k != "value"}
    with pipe:
        fit = fit_threshold(cams(), boxes, masker_params=masker)
    blob = {**fit.to_json(), "part": part, "lesion_images": len(ids), "seconds": time.perf_counter() - t0,
            "reference": "the fitted scorer's chosen region (scorer.json); no mask was read", "identity": identity}
    atomic_write_json(path, blob)
    log.info("threshold fit: %.2f on %d %s lesion images (mean box agreement %.3f; %.1f s)", fit.value,
             fit.images, part, fit.curve[fit.value], blob["seconds"])
    return fit.value
