"""Data-set audit: class and mask counts, image sizes, exact and near duplicates.

:func:`audit_dataset` decodes every image and mask once (one at a time per worker thread, nothing is
kept but small per-image records) and returns an :class:`AuditReport`. Files that cannot be read (including
dangling symbolic links, link loops and files without read permission) do not stop the audit: they are
listed in :attr:`AuditReport.problems`; masks that look lossy-compressed are listed in
:attr:`AuditReport.warnings`. Labels differing only by case or holding control characters are refused when
the data set is opened (:mod:`samprompt.data.labels`), before any audit.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from samprompt.data import medical
from samprompt.data.datasets import Dataset, Sample
from samprompt.data.hashing import near_pairs, perceptual_hash, pixel_hash
from samprompt.data.io import load_image, load_mask, lossy_mask_reason
from samprompt.errors import DataError

__all__ = ["AuditReport", "ClassCounts", "DuplicateGroup", "audit_dataset"]

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that are the same picture.

    Attributes:
        kind: ``"exact"`` (identical decoded pixels) or ``"near"`` (perceptual hashes within the
            threshold, linked transitively, and not all pixel-identical).
        ids: Sample ids, in data-set order.
        labels: The label of each id.
        max_distance: Largest pHash Hamming distance between two members (0 for exact groups).
    """

    kind: Literal["exact", "near"]
    ids: tuple[str, ...]
    labels: tuple[str, ...]
    max_distance: int = 0

    @property
    def conflicting(self) -> bool:
        """Whether the members carry different labels (one picture, two classes)."""
        return len(set(self.labels)) > 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "kind": self.kind,
            "ids": list(self.ids),
            "labels": list(self.labels),
            "conflicting": self.conflicting,
            "max_distance": self.max_distance,
        }


@dataclass(frozen=True)
class ClassCounts:
    """Counts for one class.

    Attributes:
        images: Samples with this label.
        with_mask: Samples that have at least one mask file.
        several_masks: Samples with two or more mask files.
        empty_masks: Samples whose (merged) mask has no foreground pixel.
    """

    images: int
    with_mask: int
    several_masks: int
    empty_masks: int


@dataclass(frozen=True)
class AuditReport:
    """Findings of :func:`audit_dataset`. Serialise with :meth:`to_dict`; show with :meth:`format_text`.

    Attributes:
        source: The folder or CSV the data set was opened from.
        n_samples: Number of samples.
        classes: Class names, sorted.
        counts: Per class name, its :class:`ClassCounts`.
        several_masks: Ids of samples with two or more mask files.
        empty_mask_classes: Classes in which every sample has a mask and every mask is empty (BUSI's
            ``normal``): images without a lesion.
        width: ``(min, median, max)`` image width in pixels over readable images (zeros if none).
        height: ``(min, median, max)`` image height.
        exact_duplicates: Groups of images with identical decoded pixels.
        near_duplicates: Groups linked by pHash distance ``<= near_threshold`` (transitively) that are
            not all pixel-identical.
        near_threshold: The Hamming distance threshold used.
        problems: ``(sample id, message)`` for every file that could not be read (truncated, not an
            image, no read permission, a dangling symbolic link or a link loop) or whose mask size
            differs from its image.
        fingerprint: :meth:`Dataset.fingerprint` of the audited data.
        warnings: ``(sample id, message)`` for readable files that are probably wrong: masks that look
            lossy-compressed (a JPEG, even one named ``.png``; see
            :func:`~samprompt.data.io.lossy_mask_reason`).
    """

    source: str
    n_samples: int
    classes: list[str]
    counts: dict[str, ClassCounts]
    several_masks: list[str]
    empty_mask_classes: list[str]
    width: tuple[int, int, int]
    height: tuple[int, int, int]
    exact_duplicates: list[DuplicateGroup]
    near_duplicates: list[DuplicateGroup]
    near_threshold: int
    problems: list[tuple[str, str]] = field(default_factory=list)
    fingerprint: str = ""
    warnings: list[tuple[str, str]] = field(default_factory=list)

    def duplicate_groups(self) -> list[list[str]]:
        """Every exact and near duplicate group as a list of ids (input for ``make_split``)."""
        return [list(g.ids) for g in (*self.exact_duplicates, *self.near_duplicates)]

    def conflicting_groups(self) -> list[DuplicateGroup]:
        """The exact and near duplicate groups whose members carry different labels."""
        return [g for g in (*self.exact_duplicates, *self.near_duplicates) if g.conflicting]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of everything in the report (for ``samprompt audit --json``)."""
        return {
            "source": self.source,
            "fingerprint": self.fingerprint,
            "n_samples": self.n_samples,
            "classes": list(self.classes),
            "counts": {c: vars(n).copy() for c, n in self.counts.items()},
            "several_masks": list(self.several_masks),
            "empty_mask_classes": list(self.empty_mask_classes),
            "image_size": {
                "width": dict(zip(("min", "median", "max"), self.width, strict=True)),
                "height": dict(zip(("min", "median", "max"), self.height, strict=True)),
            },
            "near_threshold": self.near_threshold,
            "exact_duplicates": [g.to_dict() for g in self.exact_duplicates],
            "near_duplicates": [g.to_dict() for g in self.near_duplicates],
            "n_conflicting_groups": len(self.conflicting_groups()),
            "problems": [{"id": i, "message": m} for i, m in self.problems],
            "warnings": [{"id": i, "message": m} for i, m in self.warnings],
        }

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text (non-ASCII kept)."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def format_text(self, max_groups: int = 20) -> str:
        """Human-readable summary; at most ``max_groups`` non-conflicting groups listed per kind."""
        lines = [
            f"Data set: {self.source} ({self.n_samples} images, {len(self.classes)} classes)",
            f"Fingerprint: {self.fingerprint}",
            "",
        ]
        wc = max([5, *(len(c) for c in self.classes)])
        lines.append(f"{'class':<{wc}}  images  with mask  several masks  empty masks")
        for c in self.classes:
            n = self.counts[c]
            lines.append(
                f"{c:<{wc}}  {n.images:>6}  {n.with_mask:>9}  {n.several_masks:>13}  {n.empty_masks:>11}"
            )
        lines.append("")
        if self.empty_mask_classes:
            lines.append(
                f"Classes whose masks are all empty (no lesion): {', '.join(self.empty_mask_classes)}"
            )
        w, h = self.width, self.height
        lines.append(
            f"Image size (min / median / max): width {w[0]} / {w[1]} / {w[2]}, "
            f"height {h[0]} / {h[1]} / {h[2]}"
        )
        for title, groups in (
            ("Exact duplicates (identical pixels)", self.exact_duplicates),
            (f"Near duplicates (pHash distance <= {self.near_threshold})", self.near_duplicates),
        ):
            n_conf = sum(g.conflicting for g in groups)
            lines.append(
                f"{title}: {len(groups)} groups, {sum(len(g.ids) for g in groups)} images, "
                f"{n_conf} with conflicting labels"
            )
            shown = [g for g in groups if g.conflicting] + [g for g in groups if not g.conflicting][
                :max_groups
            ]
            for g in shown:
                tag = "CONFLICT " if g.conflicting else ""
                members = ", ".join(f"{i} [{lab}]" for i, lab in zip(g.ids, g.labels, strict=True))
                dist = f" (d <= {g.max_distance})" if g.kind == "near" else ""
                lines.append(f"  {tag}{members}{dist}")
            if len(shown) < len(groups):
                lines.append(f"  ... and {len(groups) - len(shown)} more")
        if self.problems:
            lines.append(f"Problems: {len(self.problems)}")
            lines.extend(f"  {i}: {m}" for i, m in self.problems)
        if self.warnings:
            lines.append(f"Warnings: {len(self.warnings)}")
            lines.extend(f"  {i}: {m}" for i, m in self.warnings)
        return "\n".join(lines)


@dataclass(frozen=True)
class _Record:
    width: int = 0
    height: int = 0
    pixels: str = ""
    phash: int = 0
    mask_empty: bool | None = None
    error: str | None = None
    warnings: tuple[str, ...] = ()


def _lossy(paths: tuple[Path, ...]) -> tuple[str, ...]:
    found = []
    for mp in paths:
        try:
            with Image.open(mp) as im:
                reason = lossy_mask_reason(im, mp)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue  # unreadable masks are reported as problems by load_mask
        if reason is not None:
            found.append(f"mask file {str(mp)!r} {reason}")
    return tuple(found)


def _inspect(sample: Sample) -> _Record:
    try:
        image = (medical.load_medical_image(sample) if medical.is_medical(sample.image_path)
                 else load_image(sample.image_path))
    except DataError as e:
        return _Record(error=str(e))
    h, w = image.shape[:2]
    px, ph = pixel_hash(image), perceptual_hash(image)
    del image
    mask_empty: bool | None = None
    error: str | None = None
    if sample.mask_paths:
        try:
            mask = (medical.load_medical_mask(sample) if medical.is_medical(sample.image_path)
                    else load_mask(sample.mask_paths, size=(w, h)))
            mask_empty = mask is not None and not bool(mask.any())
        except DataError as e:
            error = f"{e} (image {str(sample.image_path)!r})"
        else:
            return _Record(w, h, px, ph, mask_empty, error, _lossy(sample.mask_paths))
    return _Record(w, h, px, ph, mask_empty, error)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def _records(ds: Dataset, workers: int, progress: Progress | None) -> Iterator[_Record]:
    total = len(ds)
    if workers <= 1:
        results: Iterator[_Record] = map(_inspect, ds)
        pool = None
    else:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="samprompt-audit")
        results = pool.map(_inspect, ds)
    try:
        for done, rec in enumerate(results, start=1):
            if progress is not None:
                progress(done, total)
            yield rec
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def audit_dataset(
    ds: Dataset,
    *,
    near_threshold: int = 4,
    workers: int | None = None,
    progress: Progress | None = None,
) -> AuditReport:
    """Audit a data set: counts, masks, image sizes and duplicate images.

    Exact duplicates share the SHA-256 of their decoded pixels (so re-encoded copies count). Near
    duplicates are found with a 64-bit DCT pHash (:func:`~samprompt.data.hashing.perceptual_hash`):
    pairs within ``near_threshold`` bits are linked, groups are the connected components, and a group
    is reported as near when its members are not all pixel-identical. Groups whose members carry
    different labels are flagged ``conflicting``.

    Args:
        ds: The data set.
        near_threshold: Largest pHash Hamming distance (0..64) counted as a near duplicate; 4 finds
            re-encodings and light edits with few false matches. Lower it if unrelated images group.
        workers: Decoding threads (PIL releases the GIL while decoding); default ``min(4, CPUs)``.
        progress: Called as ``progress(done, total)`` after each image, from the calling thread.

    Returns:
        The :class:`AuditReport`. Unreadable files are reported in ``problems``, not raised.

    Raises:
        ValueError: If ``near_threshold`` is outside 0..64.
        DataError: If a file disappears while the fingerprint is computed.
    """
    if not 0 <= near_threshold <= 64:
        raise ValueError(f"near_threshold must be in 0..64, got {near_threshold}")
    n_workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    records = list(_records(ds, n_workers, progress))
    classes = ds.classes
    tallies: dict[str, list[int]] = {c: [0, 0, 0, 0] for c in classes}
    several: list[str] = []
    problems: list[tuple[str, str]] = []
    warned: list[tuple[str, str]] = []
    for s, r in zip(ds, records, strict=True):
        t = tallies[s.label]
        t[0] += 1
        t[1] += bool(s.mask_paths)
        if len(s.mask_paths) > 1:
            t[2] += 1
            several.append(s.id)
        t[3] += r.mask_empty is True
        if r.error is not None:
            problems.append((s.id, r.error))
        warned.extend((s.id, w) for w in r.warnings)
    counts = {c: ClassCounts(*t) for c, t in tallies.items()}
    empty_classes = [c for c, n in counts.items() if n.images and n.with_mask == n.images == n.empty_masks]
    ok = [k for k, r in enumerate(records) if r.pixels]
    widths = np.array([records[k].width for k in ok], dtype=np.int64)
    heights = np.array([records[k].height for k in ok], dtype=np.int64)

    def stats(a: np.ndarray) -> tuple[int, int, int]:
        return (int(a.min()), int(np.median(a)), int(a.max())) if a.size else (0, 0, 0)

    exact, near = _duplicates(ds, records, ok, near_threshold)
    report = AuditReport(
        source=str(ds.source),
        n_samples=len(ds),
        classes=classes,
        counts=counts,
        several_masks=several,
        empty_mask_classes=empty_classes,
        width=stats(widths),
        height=stats(heights),
        exact_duplicates=exact,
        near_duplicates=near,
        near_threshold=near_threshold,
        problems=problems,
        fingerprint=ds.fingerprint(),
        warnings=warned,
    )
    logger.info(
        "audited %s: %d images, %d exact and %d near duplicate groups, %d conflicting, %d problems, "
        "%d warnings",
        ds.source,
        len(ds),
        len(exact),
        len(near),
        len(report.conflicting_groups()),
        len(problems),
        len(warned),
    )
    return report


def _duplicates(
    ds: Dataset, records: list[_Record], ok: list[int], threshold: int
) -> tuple[list[DuplicateGroup], list[DuplicateGroup]]:
    by_pixels: dict[str, list[int]] = defaultdict(list)
    for k in ok:
        by_pixels[records[k].pixels].append(k)
    exact = [
        DuplicateGroup("exact", tuple(ds[k].id for k in m), tuple(ds[k].label for k in m))
        for m in by_pixels.values()
        if len(m) > 1
    ]
    hashes = np.array([records[k].phash for k in ok], dtype=np.uint64)
    uf = _UnionFind(len(ok))
    for a, b in near_pairs(hashes, threshold):
        uf.union(int(a), int(b))
    comps: dict[int, list[int]] = defaultdict(list)
    for a in range(len(ok)):
        comps[uf.find(a)].append(a)
    near = []
    for members in comps.values():
        idx = [ok[a] for a in members]
        if len(idx) < 2 or len({records[k].pixels for k in idx}) < 2:
            continue
        h = hashes[members]
        dist = max((int(x) ^ int(y)).bit_count() for x in h for y in h)
        near.append(
            DuplicateGroup("near", tuple(ds[k].id for k in idx), tuple(ds[k].label for k in idx), dist)
        )
    return exact, near
