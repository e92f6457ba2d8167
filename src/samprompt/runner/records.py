"""Per-image results on disk, and the run-level files assembled from them.

For each finished image the runner writes, in this order, its masks
(``masks/<strategy>/<source>/<stem>.png``, uint8 0/255), its CAM (``cams/<stem>.png``, 8-bit), its pseudo
mask (``pseudo_masks/<stem>.png``) and LAST its record ``records/<stem>.json``. Scoring and PNG encoding
(:func:`prepare_image`) touch no file and may run in helper threads; :func:`commit_image` writes. Every file is written
atomically, so a record exists only when everything it refers to does: an image is finished exactly when
its record exists, and a rerun skips it. ``<stem>`` is :func:`~samprompt.runner.outputs.safe_name` of the
image id; ``names.json`` maps ids to stems.

:func:`assemble` turns the records into ``metrics.csv``, ``prompts.jsonl``, ``failures.jsonl`` and
``names.json`` (always from the records, so a resumed run and an uninterrupted one give the same files).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from samprompt.pipeline import PipelineResult
from samprompt.runner.outputs import (
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    inside,
    png_bytes,
    safe_name,
)
from samprompt.runner.scoring import METRIC_COLUMNS, StrategyKind, score_row

__all__ = [
    "SOURCES",
    "ImageOutputs",
    "assemble",
    "commit_image",
    "label_dir",
    "mask_path",
    "metrics_csv",
    "prepare_image",
    "read_record",
    "record_path",
    "write_image",
]

log = logging.getLogger(__name__)

_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SOURCES: tuple[str, str] = ("cam", "gt")


def label_dir(label: str) -> str:
    """Folder name of a strategy label: the label itself when it is plain, else :func:`safe_name`."""
    return label if _PLAIN.match(label) else safe_name(label)


def record_path(out: Path, image_id: str) -> Path:
    """``records/<stem>.json`` of an image."""
    return out / "records" / f"{safe_name(image_id)}.json"


def mask_path(out: Path, strategy: str, source: str, image_id: str) -> Path:
    """``masks/<strategy>/<source>/<stem>.png`` of an image's segmentation."""
    return out / "masks" / label_dir(strategy) / source / f"{safe_name(image_id)}.png"


@dataclass(frozen=True)
class ImageOutputs:
    """Everything one finished image writes, encoded in memory (see :func:`prepare_image`).

    Attributes:
        files: ``(path, PNG bytes)`` in writing order (masks, CAM, pseudo mask).
        record_path: Where the record goes (written LAST by :func:`commit_image`).
        record: The record itself (JSON-ready).
    """

    files: tuple[tuple[Path, bytes], ...]
    record_path: Path
    record: dict[str, Any]


def prepare_image(
    out: Path,
    meta: Mapping[str, Any],
    result: PipelineResult,
    gt: NDArray[np.bool_] | None,
    kinds: Mapping[str, StrategyKind],
    class_names: Sequence[str],
    seconds: float,
) -> ImageOutputs:
    """Score one image and encode its masks, CAM and pseudo mask (no file is touched; thread-safe).

    Args:
        out: Run folder.
        meta: ``image`` (id), ``label`` and ``split``.
        result: The pipeline's result for the image.
        gt: (H, W) bool ground truth, or ``None``.
        kinds: Strategy label → what it makes (for scoring misses).
        class_names: Classifier output names (for ``predicted`` and the probabilities).
        seconds: Time spent on the image (recorded only).

    Raises:
        ConfigError: If an output path would leave the run folder.
    """
    image_id = str(meta["image"])
    stem = safe_name(image_id)
    cam = result.cam
    predicted = class_names[cam.predicted] if cam.probabilities.size else ""
    rows: list[dict[str, Any]] = []
    prompts: list[dict[str, Any]] = []
    files: list[tuple[Path, bytes]] = []
    for source in SOURCES:
        per = result.strategies if source == "cam" else result.gt
        for label, sr in per.items():
            files.append((inside(out, mask_path(out, label, source, image_id)), png_bytes(sr.mask)))
            row = {"image": image_id, "label": meta["label"], "split": meta["split"], "strategy": label,
                   "source": source, "predicted": predicted}
            row.update(score_row(prompt=sr.prompt, mask=sr.mask, score=sr.score, gt=gt, kind=kinds[label]))
            rows.append(row)
            prompts.append({"image": image_id, "strategy": label, "source": source,
                            "prompt": None if sr.prompt is None else sr.prompt.to_dict()})
    cam_u8 = np.rint(np.clip(cam.cam, 0, 1) * 255).astype(np.uint8)
    files.append((inside(out, out / "cams" / f"{stem}.png"), png_bytes(cam_u8)))
    files.append((inside(out, out / "pseudo_masks" / f"{stem}.png"), png_bytes(result.pseudo_mask)))
    record = {
        "image": image_id, "file": stem, "label": meta["label"], "split": meta["split"],
        "predicted": predicted, "skipped": bool(result.skipped),
        "probabilities": {class_names[k]: float(v) for k, v in enumerate(cam.probabilities)},
        "target": [class_names[k] for k in cam.target],
        "has_mask": gt is not None, "size": list(result.pseudo_mask.shape),
        "strategies": list(result.strategies), "rows": rows, "prompts": prompts, "seconds": round(seconds, 4),
    }
    return ImageOutputs(tuple(files), inside(out, record_path(out, image_id)), record)


def commit_image(outputs: ImageOutputs) -> dict[str, Any]:
    """Write what :func:`prepare_image` encoded, every file atomically and the record LAST; return it.

    Raises:
        OSError: If a file cannot be written.
    """
    for path, data in outputs.files:
        atomic_write_bytes(path, data)
    atomic_write_json(outputs.record_path, outputs.record)
    return outputs.record


def write_image(
    out: Path,
    meta: Mapping[str, Any],
    result: PipelineResult,
    gt: NDArray[np.bool_] | None,
    kinds: Mapping[str, StrategyKind],
    class_names: Sequence[str],
    seconds: float,
) -> dict[str, Any]:
    """Score one image, write its masks, CAM, pseudo mask and (last) its record; return the record.

    The same as ``commit_image(prepare_image(...))``; arguments as :func:`prepare_image`.
    """
    return commit_image(prepare_image(out, meta, result, gt, kinds, class_names, seconds))


def read_record(out: Path, image_id: str) -> dict[str, Any] | None:
    """The record of an image, or ``None`` when the image is not finished (or its record is unreadable)."""
    p = record_path(out, image_id)
    if not p.exists():
        return None
    try:
        rec: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("record %s is unreadable (%s); the image will be processed again", p, exc)
        return None
    return rec if rec.get("image") == image_id else None


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(round(v, 6))
    return str(v)


def metrics_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """``metrics.csv`` text: :data:`~samprompt.runner.scoring.METRIC_COLUMNS`, NaN/None as empty cells."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(METRIC_COLUMNS)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in METRIC_COLUMNS])
    return buf.getvalue()


def assemble(out: Path, records: Sequence[Mapping[str, Any]], failures: Sequence[Mapping[str, Any]]) -> list[
        dict[str, Any]]:
    """Write ``metrics.csv``, ``prompts.jsonl``, ``failures.jsonl`` and ``names.json``; return the rows.

    Args:
        out: Run folder.
        records: Finished images' records, in processing order.
        failures: ``{"image", "stage", "reason"}`` of the images that failed in this invocation.
    """
    rows = [dict(r) for rec in records for r in rec["rows"]]
    atomic_write_text(out / "metrics.csv", metrics_csv(rows))
    atomic_write_text(out / "prompts.jsonl", append_jsonl(p for rec in records for p in rec["prompts"]))
    atomic_write_text(out / "failures.jsonl", append_jsonl(failures))
    atomic_write_json(out / "names.json", {rec["image"]: rec["file"] for rec in records})
    return rows
