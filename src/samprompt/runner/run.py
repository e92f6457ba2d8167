""":func:`run_experiment`: one :class:`~samprompt.runner.config.RunConfig` → one run folder.

Run folder layout::

    config.json          the resolved config (its identity: a rerun with another config is refused)
    manifest.json        versions, checkpoint SHA-256s, data fingerprint, seed, device, times, counts
    split.json           the split used (given, or made with the seed)
    classifier.pt        the classifier trained by the run (absent when a checkpoint was given)
    train_result.json    its training history (written when training finished)
    selftrain.pt         the self-training net (only with ``selftrain``; see runner.config.SelfTrainSpec)
    scorer.json          the fitted candidates scorer (only with a strategy's ``scorer: fit``; runner.config.FitSpec)
    threshold.json       the fitted masker threshold (only with ``pipeline.masker.params.value: fit``)
    records/<stem>.json  one per finished image: scores, prompts, prediction (see runner.records)
    masks/<strategy>/<source>/<stem>.png, cams/<stem>.png, pseudo_masks/<stem>.png
    metrics.csv          one row per image x strategy x source (cam | gt)
    prompts.jsonl        one line per image x strategy x source
    failures.jsonl       images that failed in the last invocation: image, stage, reason
    names.json           image id -> file stem
    summary.csv, summary.md, report.html

Resuming: images whose record exists are skipped, so rerunning the same command after an interruption
finishes the missing images only; the run-level files are always rebuilt from all records.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from samprompt._torch import resolve_device
from samprompt.cams import Target
from samprompt.data import Dataset, check_labels_against_classes, prefetch
from samprompt.errors import DataError, SampromptError, StageError
from samprompt.pipeline import PipelineResult, PromptPipeline
from samprompt.proposals.fit import polarity_doubt
from samprompt.runner import distributed
from samprompt.runner.check import ensure_runnable
from samprompt.runner.config import RunConfig
from samprompt.runner.fitting import get_fitted_scorer, get_fitted_threshold
from samprompt.runner.guard import remove_unstarted, sigterm_as_interrupt
from samprompt.runner.lock import run_lock
from samprompt.runner.outputs import atomic_write_json, atomic_write_text, read_png
from samprompt.runner.records import (
    ImageOutputs,
    assemble,
    commit_image,
    mask_path,
    prepare_image,
    read_record,
)
from samprompt.runner.scoring import StrategyKind, strategy_kind
from samprompt.runner.stages import (
    PreparedData,
    Progress,
    build_pipeline,
    file_sha256,
    get_classifier,
    get_selftrain_net,
    prepare_data,
    prepare_folder,
    resolve_targets,
    versions,
)
from samprompt.sample import CITATION, is_sample

__all__ = ["RunFolder", "RunResult", "run_experiment"]

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class RunResult:
    """What :func:`run_experiment` did.

    Attributes:
        out: The run folder.
        total: Images to process (the split, after ``limit``).
        done: Finished images among them (including ones finished by earlier invocations).
        computed: Images computed by this invocation.
        failures: ``{"image", "stage", "reason", "permanent"}`` of this invocation's failed images;
            ``permanent`` is true when a rerun would fail the same way (a bad file), false when it may
            not (a write error, running out of memory).
        split_total: Images in the whole processed split (without ``limit``).
    """

    out: Path
    total: int
    done: int
    computed: int
    failures: list[dict[str, Any]] = field(default_factory=list)
    split_total: int = 0

    @property
    def complete(self) -> bool:
        """Whether every image of the split (ignoring ``limit``) is finished."""
        return self.done == self.split_total

    @property
    def permanent(self) -> list[dict[str, Any]]:
        """The failures a rerun would repeat, because the input itself is bad (undecodable, a broken link)."""
        return [f for f in self.failures if f.get("permanent")]

    @property
    def settled(self) -> bool:
        """Whether nothing is left that a rerun could finish (every image finished or failed permanently)."""
        return self.done + len(self.permanent) >= self.split_total and len(self.permanent) == len(self.failures)

    def status_line(self) -> str:
        """The run's last line, one of ``complete``, ``complete`` with permanent failures, or ``incomplete``."""
        names = "failures.jsonl"
        if self.complete:
            return f"complete: all {self.split_total} images finished"
        if self.settled:
            return (f"complete: {self.done} of {self.split_total} images finished, {len(self.permanent)} failed "
                    f"permanently (see {names}; a rerun would fail them again: fix or remove those files, "
                    "then rerun with --force)")
        left = self.split_total - self.done - len(self.permanent)
        return (f"incomplete: {left} image(s) not finished yet"
                + (f" ({len(self.failures) - len(self.permanent)} failed for a reason a rerun may not meet; "
                   f"see {names})" if len(self.failures) > len(self.permanent) else "")
                + (f", {len(self.permanent)} failed permanently" if self.permanent else "")
                + ": rerun the same command to continue")

    @property
    def report(self) -> Path:
        """Path of ``report.html``."""
        return self.out / "report.html"


class RunFolder:
    """Read access to a run folder's per-image outputs (used to draw the report).

    Args:
        out: Run folder.
        data: The run's data (images and ground truth are read from the data set).
    """

    def __init__(self, out: Path, data: PreparedData) -> None:
        self.out = out
        self._ds = data.dataset

    def image(self, image_id: str) -> NDArray[np.uint8]:
        """(H, W, 3) uint8 image."""
        return self._ds.load_image(image_id)

    def gt(self, image_id: str) -> NDArray[np.bool_] | None:
        """(H, W) bool ground truth or ``None``."""
        return self._ds.load_mask(image_id)

    def cam(self, record: dict[str, Any]) -> NDArray[np.float32]:
        """(H, W) float32 CAM in [0, 1] (8-bit precision)."""
        return read_png(self.out / "cams" / f"{record['file']}.png").astype(np.float32) / 255.0

    def pseudo(self, record: dict[str, Any]) -> NDArray[np.bool_]:
        """(H, W) bool pseudo mask."""
        return read_png(self.out / "pseudo_masks" / f"{record['file']}.png") > 0

    def mask(self, image_id: str, strategy: str, source: str) -> NDArray[np.bool_]:
        """(H, W) bool segmentation of one strategy and source."""
        return read_png(mask_path(self.out, strategy, source, image_id)) > 0


def _remove_stale_temporaries(out: Path) -> None:
    """Delete the hidden ``.<name>.*.tmp`` files an interrupted run left behind (never read; see
    :func:`~samprompt.runner.outputs.atomic_write_bytes`). Only plain files with that pattern are removed."""
    removed = 0
    for p in out.rglob(".*.tmp"):
        if p.is_file() and not p.is_symlink():
            try:
                p.unlink()
                removed += 1
            except OSError as exc:
                log.warning("could not remove stale temporary file %s: %s", p, exc)
    if removed:
        log.info("%s: removed %d temporary file(s) left by an interrupted run", out, removed)


def _permanent(exc: BaseException) -> bool:
    """Whether a rerun would fail the image the same way: a samprompt error about the input itself, not
    one caused by the machine (a file system error, running out of memory)."""
    if not isinstance(exc, SampromptError):
        return False
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, MemoryError) or "out of memory" in str(cause).lower():
            return False
        if isinstance(cause, OSError) and not isinstance(exc, DataError):
            return False
        cause = cause.__cause__
    return True


def _failure(image_id: str, exc: BaseException, stage: str) -> dict[str, Any]:
    if isinstance(exc, StageError):
        stage = exc.stage
    reason = str(exc) if isinstance(exc, SampromptError) else f"{type(exc).__name__}: {exc}"
    permanent = stage != "write" and _permanent(exc)
    log.warning("image %r failed at stage %s: %s", image_id, stage, reason)
    return {"image": image_id, "stage": stage, "reason": reason, "permanent": permanent}


_Item = tuple[str, NDArray[np.uint8], NDArray[np.bool_] | None, Target]


class _Batcher:
    """Runs the pipeline on batches of images and writes their outputs, isolating failing images."""

    def __init__(self, config: RunConfig, out: Path, data: PreparedData, pipe: PromptPipeline,
                 kinds: dict[str, StrategyKind], info_class_names: Sequence[str],
                 targets: Callable[[Sequence[str]], list[Target]],
                 on_record: Callable[[str], None] | None) -> None:
        self.config, self.out, self.data, self.pipe, self.kinds = config, out, data, pipe, kinds
        self.class_names = list(info_class_names)
        self.targets = targets
        self.on_record = on_record
        self.failures: list[dict[str, Any]] = []
        self.computed = 0

    def load(self, sid: str) -> _Item | dict[str, Any]:
        """Read one image, its mask and its CAM target (thread-safe): the item, or a failure record."""
        ds = self.data.dataset
        try:
            target = self.targets([ds[ds.position(sid)].label])[0]
        except SampromptError as exc:
            return _failure(sid, exc, "target")
        try:
            return (sid, ds.load_image(sid), ds.load_mask(sid), target)
        except SampromptError as exc:
            return _failure(sid, exc, "load")

    def process(self, loaded: Sequence[_Item | dict[str, Any]]) -> None:
        """Record the failures among ``loaded`` (results of :meth:`load`) and run the pipeline on the rest."""
        items: list[_Item] = []
        for it in loaded:
            if isinstance(it, dict):
                self.failures.append(it)
            else:
                items.append(it)
        self._run(items)

    def _run(self, items: list[_Item]) -> None:
        if not items:
            return
        start = time.perf_counter()
        try:
            results = self.pipe.run_batch([it[1] for it in items], targets=[it[3] for it in items],
                                          gt_masks=[it[2] for it in items])
        except Exception as exc:  # noqa: BLE001 - a failing image is recorded, the run continues
            if len(items) == 1:
                self.failures.append(_failure(items[0][0], exc, "pipeline"))
                return
            log.info("a batch of %d images failed (%s); retrying them one by one", len(items), exc)
            for it in items:
                self._run([it])
            return
        seconds = (time.perf_counter() - start) / len(items)
        ds = self.data.dataset

        def prepare(item: _Item, res: PipelineResult) -> ImageOutputs:
            sid, _, gt, _ = item
            meta = {"image": sid, "label": ds[ds.position(sid)].label, "split": self.data.split_of.get(sid, "")}
            return prepare_image(self.out, meta, res, gt, self.kinds, self.class_names, seconds)

        # Scoring and PNG encoding (CPU; Pillow and NumPy release the GIL) run in `workers` threads; the
        # files are then written in image order from this thread, each image's record last, so an
        # interruption leaves finished images (records) and nothing of the later ones.
        with ExitStack() as stack:
            pairs = list(zip(items, results, strict=True))
            if self.config.workers and len(pairs) > 1:
                pool = stack.enter_context(ThreadPoolExecutor(self.config.workers, "samprompt-write"))
                pending = [pool.submit(prepare, it, res).result for it, res in pairs]
            else:
                pending = [partial(prepare, it, res) for it, res in pairs]
            for ((sid, *_), _), outputs in zip(pairs, pending, strict=True):
                try:
                    commit_image(outputs())
                except (OSError, SampromptError, ValueError) as exc:
                    self.failures.append(_failure(sid, exc, "write"))
                    continue
                self.computed += 1
                if self.on_record is not None:
                    self.on_record(sid)


def _manifest(config: RunConfig, out: Path, data: PreparedData, ckpt: Path, pipe: PromptPipeline,
              started: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    seg_ckpt = pipe.segmenter.to_config().get("params", {}).get("checkpoint")
    return {
        "samprompt_run": 1,
        "name": config.name,
        "versions": versions(),
        "device": str(resolve_device(config.device)),
        "seed": config.seed,
        "data": {"path": str(config.data.path), "fingerprint": data.fingerprint, "images": len(data.dataset)},
        "split": {"use": config.split.use, "seed": data.split.seed, "fingerprint": data.split.fingerprint,
                  "images": len(data.ids)},
        "classifier": {"checkpoint": str(ckpt), "sha256": file_sha256(ckpt)},
        "segmenter": {"checkpoint": seg_ckpt, "sha256": file_sha256(Path(seg_ckpt)) if seg_ckpt else None},
        "pipeline": pipe.to_config(),
        "started": (previous or {}).get("started", started),
        "invocations": list((previous or {}).get("invocations", [])),
    }


def run_experiment(
    config: RunConfig,
    out: str | Path,
    *,
    force: bool = False,
    progress: Progress | None = None,
    train_progress: bool = False,
    on_record: Callable[[str], None] | None = None,
    command: Sequence[str] | None = None,
    lock: bool = True,
    barrier_timeout: float | None = None,
) -> RunResult:
    """Run (or resume) one experiment into the folder ``out``.

    Args:
        config: The run config (paths absolute; see :func:`~samprompt.runner.config.load_run_config`).
        out: Run folder (created). If it holds this run already, only unfinished images are processed.
        force: If ``out`` holds a run with a different config, delete its files and start over.
        progress: ``progress(step, done, total)`` callback for long steps (``audit``, ``images``).
        train_progress: Show the classifier training's own tqdm bars.
        on_record: Called with an image id after its record is written (tests use it to interrupt).
        command: The command line, recorded in the manifest.
        lock: Take the run folder's lock (:func:`~samprompt.runner.lock.run_lock`); a second run on the
            same folder is refused while this one runs. Under ``torchrun`` only rank 0 takes it (the
            ranks of one run share the folder).
        barrier_timeout: Seconds a rank of a ``torchrun`` run waits at a barrier (see
            :mod:`samprompt.runner.distributed`, which shards the images across ranks).

    Returns:
        A :class:`RunResult`; per-image failures are in ``result.failures`` (the run still completes).

    Raises:
        ConfigError: Invalid config, ``out`` holds a run with another config (without ``force``), or
            another run is using ``out``.
        DataError: Unreadable data or split, labels the classifier checkpoint lacks, or data changed since
            the run folder was made. The data are checked before the folder is created or written.
        CheckpointError: Unusable classifier or segmenter checkpoint.
        BarrierError: (``torchrun``) a rank died or did not reach a barrier in time.
    """
    out = Path(out).absolute()
    dataset = ensure_runnable(config)  # the door, before anything is created or written (runner.check)
    dist = distributed.current(config.device, barrier_timeout)
    created = not out.exists()
    try:
        with run_lock(out, enabled=lock and dist.is_main), sigterm_as_interrupt():
            return _run(config, out, dist, force=force, progress=progress, train_progress=train_progress,
                        on_record=on_record, command=command, dataset=dataset)
    except SampromptError:
        if created and dist.is_main:
            remove_unstarted(out)
        raise


def _run(config: RunConfig, out: Path, dist: distributed.Distributed, *, force: bool, progress: Progress | None,
         train_progress: bool, on_record: Callable[[str], None] | None, command: Sequence[str] | None,
         dataset: Dataset | None = None) -> RunResult:
    """:func:`run_experiment`'s work, with the inputs checked and the folder's lock held (by rank 0)."""
    started = _now()
    progress = progress if dist.is_main else None
    dist.main_first("prepare")  # rank 0 prepares the folder and the split; the others then check and read them
    prepare_folder(out, config, force=force and dist.is_main)
    if dist.is_main:
        _remove_stale_temporaries(out)
    mpath = out / "manifest.json"
    previous = json.loads(mpath.read_text(encoding="utf-8")) if mpath.exists() else None
    data = prepare_data(config, out, progress, dataset)
    if previous and previous.get("data", {}).get("fingerprint") not in (None, data.fingerprint):
        raise DataError(f"the data in {str(config.data.path)!r} changed since run folder {str(out)!r} was made "
                        "(fingerprint differs); pass --force to start over")
    ids = data.ids[: config.limit] if config.limit else list(data.ids)
    dist.main_done("prepare")
    dist.main_first("classifier")  # trained (and self-trained) once, by rank 0; the others load the files
    model, info, ckpt = get_classifier(config, out, data, train_progress=train_progress and dist.is_main)
    check_labels_against_classes(((s.label, s.image_path) for s in data.dataset),
                                 info.task.mapping or info.task.class_names, f"classifier {str(ckpt)!r}")
    scorer = get_fitted_scorer(config, out, data, model, info, ckpt)  # the fit stage, once (rank 0)
    threshold = get_fitted_threshold(config, out, data, model, info, scorer, ckpt)  # masker value: fit
    selftrain = get_selftrain_net(config, out, data, ckpt, progress, scorer)  # may use the fitted scorer
    dist.main_done("classifier")
    pipe = build_pipeline(config, model, info, selftrain, scorer, threshold)
    kinds = {label: strategy_kind(s) for label, s in pipe.strategies.items()}
    resolve_targets(config, info, [])  # a list target naming unknown classes fails here, before any image
    manifest = _manifest(config, out, data, ckpt, pipe, started, previous) if dist.is_main else {}
    if dist.is_main:
        if scorer is not None:  # the fit stage's scorer file
            manifest["scorer"] = {"path": str(scorer), "sha256": file_sha256(scorer)}
        if threshold is not None:  # and its fitted masker threshold
            manifest["threshold"] = {"path": str(out / "threshold.json"), "value": threshold}
        atomic_write_json(mpath, manifest)

    mine = dist.shard(ids)  # all of them in a single process
    todo = [i for i in mine if read_record(out, i) is None]
    log.info("%s: %d of %d images to process (%d already finished)", out, len(todo), len(mine), len(mine) - len(todo))
    batcher = _Batcher(config, out, data, pipe, kinds, info.class_names,
                       lambda labels: resolve_targets(config, info, labels), on_record)
    done_now = 0
    if progress:
        progress("images", 0, len(todo))
    loaded = prefetch(todo, batcher.load, workers=config.workers, ahead=2 * config.batch_size)
    chunk: list[_Item | dict[str, Any]] = []
    with pipe:  # stops pipeline.prompt_workers' processes, if any, however the loop ends
        for k, item in enumerate(loaded, 1):
            chunk.append(item)
            if len(chunk) == config.batch_size or k == len(todo):
                batcher.process(chunk)
                done_now += len(chunk)
                chunk = []
                if progress:
                    progress("images", done_now, len(todo))

    # every rank's (computed, failures), after a barrier: all records are written when it passes
    shares = dist.gather("images", (batcher.computed, batcher.failures))
    computed, failures = sum(c for c, _ in shares), [f for _, fs in shares for f in fs]
    records = [r for r in (read_record(out, i) for i in data.ids) if r is not None]
    done_ids = {r["image"] for r in records}
    if not dist.is_main:  # rank 0 writes the run-level files
        return RunResult(out, len(ids), sum(i in done_ids for i in ids), computed, failures, len(data.ids))
    rows = assemble(out, records, failures)
    _report(config, out, data, records, rows, failures, info.task, progress)
    finished = _now()
    manifest["invocations"].append({"started": started, "finished": finished, "computed": computed,
                                    "failed": len(failures), "limit": config.limit,
                                    "command": list(command) if command else None,
                                    "world_size": dist.world_size})
    manifest.update(finished=finished, images={"split": len(data.ids), "done": len(records),
                                               "failed": len(failures)})
    atomic_write_json(mpath, manifest)
    return RunResult(out, len(ids), sum(i in done_ids for i in ids), computed, failures, len(data.ids))


def _notes(config: RunConfig, out: Path, data: PreparedData, records: list[dict[str, Any]],
           failures: list[dict[str, Any]], task: Any) -> list[str]:
    """Counts, the classifier's accuracy on the processed images, and its training outcome."""
    p = config.pipeline
    fitted = ""
    if config.fits_threshold and (out / "threshold.json").exists():
        t = json.loads((out / "threshold.json").read_text(encoding="utf-8"))
        fitted = f" (fitted: {t['value']:.2f} on {t['images']} {t['part']} lesion images, no mask read)"
    notes = [(f"data: {config.data.path} ({len(data.dataset)} images), split {config.split.use!r}: "
              f"{len(records)} of {len(data.ids)} images finished, {len(failures)} failed"),
             (f"pipeline: CAM {p.cam.name}, masker {p.masker.name} {p.masker.params or ''}{fitted}, segmenter "
              f"{p.segmenter.name}, target {config.target}")]
    trained = out / "train_result.json"
    if trained.exists() and config.classifier.checkpoint is None:
        t = json.loads(trained.read_text(encoding="utf-8"))
        f1 = t.get("best_val_macro_f1")
        notes.append(f"classifier: {t['info']['arch']} trained here, best epoch {t['best_epoch']} of "
                     f"{len(t['history'])}, val macro-F1 " + ("n/a" if f1 is None else f"{f1:.3f}"))
    elif config.classifier.checkpoint is not None:
        notes.append(f"classifier: checkpoint {config.classifier.checkpoint}")
    known = [r for r in records if r["label"] in (task.mapping or task.class_names)]
    if known:
        right = sum(task.class_of(r["label"]) == r["predicted"] for r in known)
        notes.append(f"classifier accuracy on these images: {right / len(known):.3f} ({right} / {len(known)})")
    scorer = out / "scorer.json"
    if config.fits_scorer and scorer.exists():  # the label-only fit: how it learnt, and its polarity when unsure
        blob = json.loads(scorer.read_text(encoding="utf-8"))
        fit = (blob.get("provenance") or {}).get("fit") or {}
        if fit:
            notes.append(f"label-only fit (scorer.json): {fit.get('method', '?')}, polarity {blob.get('polarity', '?')}, "
                         f"{fit.get('lesion_images', '?')} lesion + {fit.get('negative_images', '?')} negative train "
                         f"images, {float(fit.get('seconds', 0.0)):.0f} s")
        margin = fit.get("polarity_margin") or {}
        doubt = polarity_doubt(str(blob.get("polarity", "?")), margin,
                               f" on {fit.get('lesion_images', '?')} + {fit.get('negative_images', '?')} images")
        if doubt is not None:
            risk = "" if margin.get("by_score") else (": every fitted prompt (and a guided training's guides) may "
                                                      "follow the wrong polarity")
            notes.append(f"WARNING label-only fit: {doubt}{risk}; set fit.polarity if you know it, or fit on more "
                         "images")
    if p.skip_classes:
        by_label: dict[str, list[int]] = {}
        for r in records:
            by_label.setdefault(str(r["label"]), []).append(int(bool(r.get("skipped"))))
        counts = ", ".join(f"{lab} {sum(v)} / {len(v)}" for lab, v in sorted(by_label.items()))
        notes.append(f"skipped (predicted class in skip_classes {p.skip_classes}, no CAM prompt): {counts}")
    return notes


def _report(config: RunConfig, out: Path, data: PreparedData, records: list[dict[str, Any]],
            rows: list[dict[str, Any]], failures: list[dict[str, Any]], task: Any,
            progress: Progress | None) -> None:
    from samprompt.report.html import render_report
    from samprompt.report.tables import format_summary_md, summarize_rows, summary_csv

    conf = config.report.confidence
    table = summarize_rows(rows, confidence=conf, seed=config.seed)
    notes = _notes(config, out, data, records, failures, task)
    atomic_write_text(out / "summary.csv", summary_csv(table))
    atomic_write_text(out / "summary.md", format_summary_md(table, title=config.name, confidence=conf, notes=notes))
    notice = CITATION if is_sample(config.data.path) else ""  # the bundled sample's images are BUSI's
    page = render_report(RunFolder(out, data), records, rows, table, title=config.name, config=config.identity(),
                         failures=failures, panels=config.report.panels, gallery=config.report.gallery,
                         thumb=config.report.thumb, confidence=conf, notice=notice, progress=progress)
    atomic_write_text(out / "report.html", page)
