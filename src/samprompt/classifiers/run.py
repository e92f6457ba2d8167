"""Train from files: a data set folder/manifest, a split file and an output folder (the CLI's entry).

``train_from_paths`` writes into ``out``:

* ``classifier.pt`` — the best checkpoint (:func:`~samprompt.classifiers.checkpoint.save_classifier`);
* ``split.json`` — the split used, when it was made here (leak-free: duplicate groups stay together);
* ``train_result.json`` — history, best epoch, metadata and the val/test classification reports.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from samprompt._io import atomic_write_text
from samprompt.classifiers.evaluate import evaluate_classifier
from samprompt.classifiers.inputs import examples_from_dataset
from samprompt.classifiers.task import TaskPreset, TaskSpec
from samprompt.classifiers.train import EpochStats, TrainConfig, TrainResult, train_classifier
from samprompt.errors import DataError

__all__ = ["CHECKPOINT_NAME", "RESULT_NAME", "SPLIT_NAME", "train_from_paths"]

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "classifier.pt"
SPLIT_NAME = "split.json"
RESULT_NAME = "train_result.json"


def train_from_paths(
    data: str | os.PathLike[str],
    split: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    task: TaskSpec | TaskPreset = "multiclass",
    progress: bool = False,
    callback: Callable[[EpochStats], None] | None = None,
    evaluate: tuple[str, ...] = ("val", "test"),
    guide_scorer: str | os.PathLike[str] | None = None,
    guide_negative: Sequence[str] | None = None,
) -> TrainResult:
    """Train on a data set's ``train`` split, select on ``val``, report on ``val`` and ``test``.

    Args:
        data: Class-folder root (BUSI layout) or CSV manifest (``samprompt.data.open_dataset``).
        split: Split JSON (``samprompt.data.Split.save``), or ``None`` to make a leak-free one with
            ``make_split(ds, seed=config.seed)`` (audits duplicates; saved as ``out/split.json``).
        out: Output folder (created).
        config: Hyper-parameters.
        task: A :class:`TaskSpec`, or ``"multiclass"`` / ``"binary"`` (normal vs. every other label)
            built over the data set's classes.
        progress: Show tqdm bars.
        callback: Called after every epoch.
        evaluate: Splits to evaluate the best model on (reports in ``result.reports``).
        guide_scorer: A scorer file (or shipped name) whose chosen region on each training image guides
            the CAM (:func:`samprompt.proposals.guide_masks`; ``config.guide_weight`` must be > 0). Fit it
            on the same split's train part from the labels only (``samprompt fit-prompts`` without
            ``--checkpoint``), never on images of val or test.
        guide_negative: Classes whose images get no guide (default: the scorer file's recorded
            ``negative_classes``).

    Returns:
        The :class:`TrainResult`; its checkpoint is ``out/classifier.pt``.

    Raises:
        DataError: Unreadable data or split, or a split that does not match the data.
        ConfigError: Invalid configuration or task.
        CheckpointError: Initial weights missing or not fitting.
    """
    from samprompt.data import open_dataset
    from samprompt.data.splits import Split, make_split

    cfg = config or TrainConfig()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = open_dataset(data)
    spec = task if isinstance(task, TaskSpec) else TaskSpec.preset(task, ds.classes)
    if split is not None:
        sp = Split.load(split, ds)
        split_path = Path(split)
    else:
        log.info("no split given: making a leak-free split of %s with seed %d", data, cfg.seed)
        sp = make_split(ds, seed=cfg.seed)
        split_path = out_dir / SPLIT_NAME
        sp.save(split_path)
    parts = {name: examples_from_dataset(ds, list(sp.ids(name))) for name in ("train", "val", "test")}
    if not parts["train"]:
        raise DataError(f"split {str(split_path)!r} has no training samples")
    guides = None
    if guide_scorer is not None:
        guides = _guides(ds, list(sp.ids("train")), guide_scorer, guide_negative, cfg)
    result = train_classifier(
        parts["train"], parts["val"], task=spec, config=cfg, checkpoint=out_dir / CHECKPOINT_NAME,
        progress=progress, callback=callback, guides=guides,
    )
    for name in evaluate:
        if parts.get(name):
            result.reports[name] = evaluate_classifier(
                result.model, result.info, parts[name], batch_size=cfg.eval_batch_size or cfg.batch_size,
                num_workers=cfg.num_workers, progress=progress,
            )
    summary = {
        "data": str(data),
        "split": str(split_path),
        **({"guide_scorer": str(guide_scorer)} if guide_scorer is not None else {}),
        "task": spec.model_dump(mode="json"),
        **result.to_dict(),
    }
    atomic_write_text(out_dir / RESULT_NAME, json.dumps(summary, indent=1) + "\n")
    return result


def _guides(ds: Any, ids: list[str], scorer: str | os.PathLike[str], negative: Sequence[str] | None,
            cfg: TrainConfig) -> list[Any]:
    """The guide masks of the train images (lesion classes only), checked against ``guide_weight``
    before any image is read."""
    from samprompt.data import DatasetImages
    from samprompt.errors import ConfigError
    from samprompt.proposals import guide_masks, load_scorer

    if cfg.knobs().guide_weight <= 0:
        raise ConfigError("train.guide_weight: a guide scorer was given but the guidance term is off (0); set "
                          "guide_weight > 0 (e.g. --set guide_weight=4)")
    sf = load_scorer(scorer)
    neg = set(negative if negative is not None else sf.provenance.get("negative_classes") or [])
    labels = [str(ds[ds.position(i)].label) for i in ids]
    return list(guide_masks(DatasetImages(ds, ids), sf, [lab not in neg for lab in labels], workers=cfg.num_workers,
                            keep=cfg.guide_keep))

