"""The steps of a run before the images are processed: run folder, data, split, classifier, pipeline.

Each step is resumable: what it produces is written into the run folder, and a rerun finds and reuses it
(``split.json``; ``classifier.pt`` with ``train_result.json`` as the "training finished" marker).
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from samprompt._io import atomic_write
from samprompt._torch import resolve_device
from samprompt.cams import Target
from samprompt.classifiers import (
    ClassifierInfo,
    TaskSpec,
    examples_from_dataset,
    load_classifier,
    train_classifier,
)
from samprompt.data import Dataset, DatasetImages, Split, audit_dataset, make_split, open_dataset
from samprompt.errors import ConfigError, DataError
from samprompt.pipeline import PromptPipeline
from samprompt.prompts import PROMPT_STRATEGIES
from samprompt.runner.config import RunConfig, takes_agreement
from samprompt.runner.outputs import atomic_write_json

__all__ = [
    "ARTEFACTS",
    "STAGES",
    "STAGE_ARTEFACTS",
    "PreparedData",
    "Progress",
    "build_pipeline",
    "changed_stage",
    "file_sha256",
    "get_classifier",
    "get_selftrain_net",
    "prepare_data",
    "prepare_folder",
    "readable_ids",
    "resolve_targets",
    "versions",
]

log = logging.getLogger(__name__)

#: ``progress(step, done, total)``: called by long steps (the CLI draws tqdm bars from it).
Progress = Callable[[str, int, int], None]

#: The stages of a run, in order, and the files and folders each leaves in the run folder. A config
#: change reuses the files of every stage before the first one it touches (see :func:`changed_stage`).
STAGE_ARTEFACTS: dict[str, tuple[str, ...]] = {
    "split": ("split.json",),
    "classifier": ("classifier.pt", "train_result.json"),
    "fit": ("scorer.json", "threshold.json"),
    "selftrain": ("selftrain.pt",),
    "images": ("records", "masks", "cams", "pseudo_masks", "names.json"),
    "report": ("metrics.csv", "prompts.jsonl", "failures.jsonl", "summary.csv", "summary.md", "report.html"),
}
STAGES: tuple[str, ...] = tuple(STAGE_ARTEFACTS)

#: Every file and folder a run writes; ``--force`` removes exactly these (and nothing else).
ARTEFACTS: tuple[str, ...] = ("config.json", "manifest.json",
                              *(name for names in STAGE_ARTEFACTS.values() for name in names))


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        return out
    return [] if a == b else [path or "(root)"]


def _stage_of(key: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    """The first stage whose result a change of the identity key ``key`` (dotted) alters."""
    top = key.split(".")[0]
    made_split = (old.get("split") or {}).get("seed") is None or (new.get("split") or {}).get("seed") is None
    given_ckpt = all((d.get("classifier") or {}).get("checkpoint") for d in (old, new))
    if top == "data" or (top == "split" and key != "split.use") or (key == "seed" and made_split):
        return "split"
    if top == "classifier":
        return "images" if given_ckpt else "classifier"  # a given checkpoint: nothing trained here
    guided = any((((d.get("classifier") or {}).get("train") or {}).get("guide_weight") or 0) > 0 for d in (old, new))
    if top == "fit" and guided:
        return "classifier"  # a guided training's guides come from the fit
    if top == "selftrain":
        return "selftrain"
    pipes = [d.get("pipeline") or {} for d in (old, new)]
    fits = (any(s.get("params", {}).get("scorer") == "fit" for p in pipes for s in p.get("prompts") or [])
            or any(((p.get("masker") or {}).get("params") or {}).get("value") == "fit" for p in pipes))
    if top == "fit" or (fits and not guided and (key.startswith("pipeline.cam") or top == "target")):
        return "fit"  # the fit's settings, or the CAM evidence it learns from (a guided fit reads no CAM)
    if top in ("pipeline", "target", "batch_size", "device"):
        return "images"
    if top in ("name", "description", "report", "seed") or key == "split.use":
        return "report"
    return "split"  # anything unforeseen: the most careful answer


def changed_stage(old: dict[str, Any], new: dict[str, Any]) -> tuple[str | None, list[str]]:
    """The first stage a config change invalidates, and the changed keys.

    Args:
        old: The identity a run folder was made with (its ``config.json``).
        new: The identity of the config now asked for (:meth:`RunConfig.identity`).

    Returns:
        ``(stage, keys)``: one of :data:`STAGES` (``None`` when nothing but the data path changed) and
        the dotted keys that differ (a moved data folder, ``data.path``, is not a change: the data's
        fingerprint is checked instead).
    """
    keys = [k for k in _diff(old, new) if k != "data.path"]
    if not keys:
        return None, keys
    return min((_stage_of(k, old, new) for k in keys), key=STAGES.index), keys


def _remove(out: Path, names: Sequence[str]) -> None:
    for name in names:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def prepare_folder(out: Path, config: RunConfig, *, force: bool) -> bool:
    """Create or check the run folder; return whether it already held this run (a resume).

    A folder made with another config is reused from its first changed stage on: a change after the
    classifier (prompts, masker, segmenter, CAM, target, report, ...) keeps ``split.json``,
    ``classifier.pt`` (and ``selftrain.pt`` when its inputs did not change) and recomputes the images;
    a change of the data, split or classifier training needs ``force``.

    Raises:
        ConfigError: If the folder holds a run whose data, split or classifier training differ and
            ``force`` is false (the message lists the differing keys), or it cannot be created or written
            (a path under a file, a read-only or virtual file system); the message names the folder.
    """
    try:
        return _prepare_folder(out, config, force=force)
    except OSError as exc:
        raise ConfigError(
            f"run folder {str(out)!r} cannot be created or written ({exc.strerror or type(exc).__name__}: "
            f"{exc.filename or exc}); choose another --out"
        ) from exc


def _with_todays_defaults(stored: Any) -> Any:
    """A stored ``config.json`` read through today's :class:`RunConfig`, so that a setting added since
    (at its default, which keeps the old behaviour) is not a change; left as it is when it no longer
    validates (a key removed or renamed since), which then shows as a change."""
    if not isinstance(stored, dict):
        return stored
    try:
        return RunConfig.model_validate(stored).identity()
    except (ValidationError, ValueError, TypeError):
        return stored


def _prepare_folder(out: Path, config: RunConfig, *, force: bool) -> bool:
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    mine = config.identity()
    if cfg_path.exists():
        try:
            theirs = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            theirs = {"unreadable": str(exc)}
        theirs = _with_todays_defaults(theirs)
        stage, keys = changed_stage(theirs if isinstance(theirs, dict) else {}, mine)
        if stage is None:
            if theirs != mine:  # only the data moved: its fingerprint is compared with the manifest's
                log.info("run folder %s: the data moved to %s (its fingerprint is checked)", out, config.data.path)
                atomic_write_json(cfg_path, mine)
            return True
        shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
        if STAGES.index(stage) > STAGES.index("classifier") and not force:
            kept = [n for st in STAGES[: STAGES.index(stage)] for n in STAGE_ARTEFACTS[st] if (out / n).exists()]
            log.warning("run folder %s: the config changed after the classifier (%s); reusing %s and "
                        "recomputing from the %s stage on", out, shown, ", ".join(kept) or "nothing", stage)
            _remove(out, [n for st in STAGES[STAGES.index(stage):] for n in STAGE_ARTEFACTS[st]])
            atomic_write_json(cfg_path, mine)
            return True
        if not force:
            raise ConfigError(
                f"run folder {str(out)!r} holds a run made with a different config (differs at: {shown}; "
                f"that changes its {stage} stage); pass --force to delete that run's files and start over, "
                "or choose another --out"
            )
        log.warning("run folder %s: config changed (%s); --force: removing the old run's files", out, keys[:5])
    elif force:
        log.info("run folder %s: --force: removing any old run files", out)
    if force:
        _remove(out, ARTEFACTS)
    atomic_write_json(cfg_path, mine)
    return False


@dataclass(frozen=True)
class PreparedData:
    """The data set, its split and the images to process.

    Attributes:
        dataset: The opened data set.
        split: The split (loaded or made).
        ids: Ids to process, in data-set order (``limit`` not applied).
        split_of: Id → split name (``train``/``val``/``test``/``dropped``).
        fingerprint: The data set's fingerprint.
    """

    dataset: Dataset
    split: Split
    ids: list[str]
    split_of: dict[str, str]
    fingerprint: str


def prepare_data(config: RunConfig, out: Path, progress: Progress | None = None,
                 dataset: Dataset | None = None) -> PreparedData:
    """Open the data (unless ``dataset`` is the data set already opened), load or make the split (saved as
    ``split.json``) and list the images to process.

    Raises:
        DataError: Unreadable data, or a split file that does not match the data.
        ConfigError: Invalid split fractions.
    """
    ds = dataset if dataset is not None else open_dataset(config.data.path, classes=config.data.classes)
    fingerprint = ds.fingerprint()
    saved = out / "split.json"
    if config.split.file is not None:
        split = Split.load(config.split.file, ds)
    elif saved.exists():
        split = Split.load(saved, ds)
        log.info("reusing %s", saved)
    else:
        cb = None if progress is None else (lambda done, total: progress("audit", done, total))
        report = audit_dataset(ds, progress=cb)
        split = make_split(ds, seed=config.split_seed, fractions=config.split.fractions,
                           duplicate_groups=report, conflicting=config.split.conflicting)
    if not saved.exists():
        atomic_write_json(saved, split.to_dict())
    split_of = {i: "dropped" for i in split.dropped}
    for name in ("train", "val", "test"):
        split_of.update({i: name for i in split.ids(name)})
    use = config.split.use
    ids = [i for i in ds.ids if i in split_of and split_of[i] != "dropped"] if use == "all" else list(
        split.ids(use))
    if not ids:
        raise DataError(f"split {use!r} of {str(config.data.path)!r} holds no images")
    return PreparedData(ds, split, ids, split_of, fingerprint)


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def get_classifier(
    config: RunConfig, out: Path, data: PreparedData, *, train_progress: bool = False
) -> tuple[torch.nn.Module, ClassifierInfo, Path]:
    """Load the configured checkpoint, or the run's finished training, or train now.

    Training writes ``classifier.pt`` and, when it has finished, ``train_result.json``; a rerun after an
    interrupted training trains again from the start.

    Returns:
        ``(model in eval mode on the run device, info, checkpoint path)``.
    """
    device = resolve_device(config.device)
    src = config.classifier
    if src.checkpoint is not None:
        model, info = load_classifier(src.checkpoint, device=str(device))
        return model, info, src.checkpoint
    ckpt, marker = out / "classifier.pt", out / "train_result.json"
    if not (ckpt.exists() and marker.exists()):
        task = TaskSpec.preset(src.task, data.dataset.classes, negative=src.negative, positive=src.positive)
        log.info("training %s (%s) for at most %d epochs", src.train.arch, src.task, src.train.epochs)
        marker.unlink(missing_ok=True)
        ds, sp = data.dataset, data.split
        skipped: list[str] = []
        parts, ok_ids = {}, {}
        for name in ("train", "val"):
            ok_ids[name] = readable_ids(ds, sp.ids(name), skipped)
            parts[name] = examples_from_dataset(ds, ok_ids[name])
        if not parts["train"]:
            raise DataError(f"the split of {str(config.data.path)!r} has no (readable) training images")
        guides, guided = None, None
        if src.train.knobs().guide_weight > 0:  # the label-only fit comes first and guides the CAM
            from samprompt.runner.fitting import guides_before_training

            guides, guided = guides_before_training(config, out, data, ok_ids["train"])
        result = train_classifier(parts["train"], parts["val"], task=task, config=src.train, checkpoint=ckpt,
                                  progress=train_progress, guides=guides)
        atomic_write_json(marker, {"task": task.model_dump(mode="json"), "skipped_unreadable": skipped,
                                   **({"guides": guided} if guided is not None else {}), **result.to_dict()})
    else:
        log.info("reusing the trained classifier %s", ckpt)
    model, info = load_classifier(ckpt, device=str(device))
    return model, info, ckpt


def get_selftrain_net(config: RunConfig, out: Path, data: PreparedData, classifier_checkpoint: Path,
                      progress: Progress | None = None, scorer: Path | None = None) -> Path | None:
    """The run's self-training net (``config.selftrain``): ``selftrain.pt`` in the run folder, made now
    unless a previous invocation finished it; ``None`` when self-training is off.

    The pseudo masks come from the first strategy that takes an ``agreement_net``, built from its params
    (without agreement); its ``scorer: fit`` means ``scorer``, the run's fitted scorer file (the ``fit``
    stage runs first).

    Raises:
        ConfigError: ``selftrain.empty_classes`` names a class the data does not have.
        DataError: The train split has no readable lesion image.
    """
    from samprompt.classifiers.selftrain import SelfTrainNet, save_selftrain_net, self_train

    st = config.selftrain
    if st is None:
        return None
    path = out / "selftrain.pt"
    if path.exists():
        log.info("reusing the self-training net %s", path)
        return path
    ds = data.dataset
    unknown = sorted(set(st.empty_classes) - set(ds.classes))
    if unknown:
        raise ConfigError(f"selftrain.empty_classes: unknown class name(s) {unknown}; the data has {ds.classes}")
    skipped: list[str] = []
    train = readable_ids(ds, data.split.ids("train"), skipped)
    label = {i: ds[ds.position(i)].label for i in train}
    lesion = [i for i in train if label[i] not in st.empty_classes]
    empty = [i for i in train if label[i] in st.empty_classes]
    if not lesion:
        raise DataError(f"selftrain: the train split of {str(config.data.path)!r} has no readable lesion image")
    spec = next(s for s in config.pipeline.prompts if takes_agreement(s.name))
    params = {k: v for k, v in spec.params.items() if k not in ("agreement_net", "agreement_weight")}
    if params.get("scorer") == "fit" and scorer is not None:
        params["scorer"] = str(scorer)
    try:
        strategy = PROMPT_STRATEGIES.create(spec.name, params)
    except ConfigError as exc:
        raise ConfigError(f"selftrain: {exc}") from exc
    model, _ = load_classifier(classifier_checkpoint)  # a fresh copy: training changes the encoder's weights
    init: torch.nn.Module | None = model
    try:
        SelfTrainNet(model)  # a torchvision-style ResNet?
    except TypeError:
        log.warning("self-training: the classifier is not a ResNet; the net starts from random weights")
        init = None
    net, _ = self_train(DatasetImages(ds, lesion), DatasetImages(ds, empty), strategy=strategy, keep=st.keep,
                        progress=progress, init=init, size=st.size, epochs=st.epochs, batch_size=st.batch_size,
                        lr=st.lr, seed=config.seed, device=resolve_device(config.device))
    atomic_write(path, lambda tmp: save_selftrain_net(net, tmp))
    return path


def readable_ids(ds: Dataset, ids: Sequence[str], skipped: list[str], why: str = "training") -> list[str]:
    """The ids whose image decodes; the others are logged and added to ``skipped``.

    The image is decoded fully, not just its header: a truncated file has a valid header and would
    otherwise stop the training (and the whole run) at its first epoch.

    Args:
        ds: The data set.
        ids: Ids to check, in order.
        skipped: Receives the ids left out.
        why: What the images are for, in the logged warning (``"training"``, ``"the fit"``).
    """
    ok = []
    for i in ids:
        try:
            ds.load_image(i)
        except DataError as exc:
            log.warning("left out of %s: %s", why, exc)
            skipped.append(i)
            continue
        ok.append(i)
    return ok


def build_pipeline(
    config: RunConfig, model: torch.nn.Module, info: ClassifierInfo, selftrain: Path | None = None,
    scorer: Path | None = None, threshold: float | None = None,
) -> PromptPipeline:
    """The run's :class:`PromptPipeline` around a loaded classifier, built by
    :meth:`PromptPipeline.from_config` (the one builder): the CAM extractor hooks the checkpoint's
    ``target_layer`` and every component gets the run's ``device``, unless the config sets them. With a
    self-training net (:func:`get_selftrain_net`) every ``candidates`` strategy gets it as
    ``agreement_net`` (with ``selftrain.weight``) unless its params set it. With a fitted scorer
    (:func:`get_fitted_scorer`) every strategy whose ``scorer`` is ``fit`` gets its path, and with a fitted
    threshold (:func:`~samprompt.runner.fitting.get_fitted_threshold`) a masker whose ``value`` is ``fit``
    gets it.

    Raises:
        ConfigError: Unknown component or bad parameters, naming ``pipeline.<where>``.
    """
    p = config.pipeline
    if selftrain is not None and config.selftrain is not None:
        agree: dict[str, Any] = {"agreement_net": str(selftrain)}
        if config.selftrain.weight is not None:  # else the strategy's own param or its scorer file's
            agree["agreement_weight"] = config.selftrain.weight
        prompts = [s.model_copy(update={"params": {**agree, **s.params}}) if takes_agreement(s.name) else s
                   for s in p.prompts]
        p = p.model_copy(update={"prompts": prompts})
    if scorer is not None:
        prompts = [s.model_copy(update={"params": {**s.params, "scorer": str(scorer)}})
                   if s.params.get("scorer") == "fit" else s for s in p.prompts]
        p = p.model_copy(update={"prompts": prompts})
    if threshold is not None and config.fits_threshold:
        p = p.model_copy(update={"masker": p.masker.model_copy(update={"params": {**p.masker.params,
                                                                                   "value": threshold}})})
    return PromptPipeline.from_config(
        p, classifier=model, class_names=info.class_names, preprocessing=info.preprocessing,
        target_layer=info.target_layer, device=config.device, where="pipeline",
    )


def resolve_targets(config: RunConfig, info: ClassifierInfo, labels: Sequence[str]) -> list[Target]:
    """The CAM target of each image under the run's target policy.

    Args:
        config: The run (``target``: ``predicted``, ``label`` or a list of class names).
        info: The classifier (class names and label mapping).
        labels: Data-set label of each image.

    Raises:
        ConfigError: A class name of a list target is not an output of the classifier, or (``lesion``)
            every class is a negative one.
        DataError: (``label``) an image's label is not covered by the classifier's task.
    """
    t = config.target
    if t == "label":
        return [info.task.index(lab) for lab in labels]
    names = list(info.class_names)
    chosen = config.target_classes(names)
    if chosen is None:  # predicted, or lesion with no negative class
        return ["predicted"] * len(labels)
    t = chosen
    bad = [c for c in t if c not in names]
    if bad:
        raise ConfigError(f"target: class(es) {bad} are not outputs of the classifier {names}")
    idx = tuple(names.index(c) for c in t)
    return [idx[0] if len(idx) == 1 else idx] * len(labels)


def versions() -> dict[str, str | None]:
    """Versions of Python and of the packages that decide a run's numbers."""
    out: dict[str, str | None] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for dist in ("samprompt", "torch", "torchvision", "torchcam", "segment-anything", "numpy", "scikit-image"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out
