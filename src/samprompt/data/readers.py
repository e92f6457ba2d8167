"""Readers building a :class:`~samprompt.data.datasets.Dataset` from class folders or a CSV manifest.

Both only list files; no image is decoded here.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from samprompt.data.datasets import Dataset, Sample, sample_id
from samprompt.data.io import IMAGE_EXTENSIONS, StrPath
from samprompt.data.labels import check_case_variants, label_problem
from samprompt.data.medical import expand, is_medical, medical_stem
from samprompt.errors import DataError

__all__ = ["MASK_NAME", "open_dataset", "read_class_folders", "read_manifest"]

logger = logging.getLogger(__name__)

#: A file whose stem matches is a mask (``x_mask``, ``x_mask_1``, ...), never an image.
MASK_NAME = re.compile(r"^(?P<stem>.+)_mask(?:_(?P<k>\d+))?$", re.IGNORECASE)

_REQUIRED = ("image", "label")


def _is_visible_image(p: Path) -> bool:
    known = p.suffix.lower() in IMAGE_EXTENSIONS or is_medical(p)  # PNG, JPEG, ... or DICOM / NIfTI
    return not p.name.startswith(".") and known and p.is_file()


def _broken_link(p: Path) -> bool:
    """Whether ``p`` is a symbolic link that leads nowhere (dangling, or a loop)."""
    return p.is_symlink() and not p.exists()


def _list(folder: Path, what: str) -> list[Path]:
    """The entries of ``folder``, sorted; a folder that cannot be listed is a DataError naming it."""
    try:
        return sorted(folder.iterdir())
    except OSError as e:
        raise DataError(
            f"{what} {str(folder)!r} cannot be listed ({e.strerror or type(e).__name__}); "
            "fix its permissions (it needs read and execute rights) or move it out of the data folder"
        ) from e


def read_class_folders(root: StrPath, *, classes: Iterable[str] | None = None) -> Dataset:
    """Read a data set laid out as ``<root>/<class>/<name>.<ext>`` (the BUSI layout).

    Masks sit next to their image as ``<name>_mask.<ext>``, ``<name>_mask_1.<ext>``, ... (any image
    suffix, matched case-insensitively) and are merged by logical OR in the order ``_mask``,
    ``_mask_1``, ``_mask_2``, ... A file named like a mask is never taken as an image; a mask without
    its image is ignored with a warning. Masks are optional: a class folder may have none at all.
    Classes whose masks are all empty (BUSI's ``normal``) are ordinary classes here;
    :func:`~samprompt.data.audit.audit_dataset` reports them.

    Hidden files (``.name``), files with other suffixes, sub-folders of class folders and files
    directly in ``root`` are ignored (logged at DEBUG / WARNING level). A broken symbolic link with an
    image suffix (dangling, or a loop) is kept as an image or mask, so reading it fails with a message
    naming the link: a run records that image's failure and the audit lists it.

    Args:
        root: The folder holding one sub-folder per class.
        classes: Read only these class folders; each must exist and hold images. Default: every
            sub-folder that holds images.

    Raises:
        DataError: If ``root`` holds no class folder with images, a requested class folder is missing,
            two images in a folder share a name up to the suffix (``a.png`` and ``a.jpg``), a folder
            cannot be listed (permissions), a class folder's name is not a usable label (a control
            character, white space at either end) or two class folders differ only by case
            (``Benign``, ``benign``).
    """
    base = Path(root).absolute()
    if not base.is_dir():
        raise DataError(f"data folder {str(base)!r} does not exist or is not a folder")
    wanted = set(classes) if classes is not None else None
    entries = _list(base, "data folder")
    loose = [p.name for p in entries if _is_visible_image(p)]
    if loose:
        logger.warning(
            "%s: %d image files directly in the data folder are ignored (e.g. %r); "
            "images belong in class folders",
            base,
            len(loose),
            min(loose),
        )
    for p in entries:
        if _broken_link(p) and not p.name.startswith("."):
            logger.warning("%s is a broken symbolic link (dangling or a loop); it is ignored", p)
    folders = sorted(p for p in entries if p.is_dir() and not p.name.startswith("."))
    if wanted is not None:
        missing = sorted(wanted - {p.name for p in folders})
        if missing:
            raise DataError(f"data folder {str(base)!r} has no class folder {missing[0]!r}")
        folders = [p for p in folders if p.name in wanted]
    samples: list[Sample] = []
    first: dict[str, str] = {}
    for folder in folders:
        problem = label_problem(folder.name)
        if problem:
            raise DataError(f"class folder {str(folder)!r}: {problem} (the folder name is the label)")
        found = _read_class(base, folder)
        if not found:
            if wanted is not None:
                raise DataError(f"class folder {str(folder)!r} holds no images")
            logger.warning("class folder %s holds no images; it is not a class", folder)
            continue
        first[folder.name] = f"folder {str(folder)!r}"
        samples.extend(found)
    check_case_variants(first, f"data folder {str(base)!r}")
    if not samples:
        raise DataError(
            f"data folder {str(base)!r} holds no class folders with images "
            f"(expected <root>/<class>/<name>{{{','.join(sorted(IMAGE_EXTENSIONS))}}})"
        )
    return Dataset(samples, root=base, classes=classes, source=base)


def _read_class(base: Path, folder: Path) -> list[Sample]:
    images: dict[str, Path] = {}
    masks: dict[str, list[tuple[int, Path]]] = {}
    for p in _list(folder, "class folder"):
        if p.name.startswith(".") or not (p.suffix.lower() in IMAGE_EXTENSIONS or is_medical(p)):
            if p.is_dir():
                logger.debug("sub-folder %s of a class folder is ignored", p)
            continue
        if _broken_link(p):
            # kept: reading it fails with a message naming the link, so the run records it as that
            # image's failure and the audit lists it, instead of the file silently disappearing
            logger.warning("%s is a broken symbolic link (dangling or a loop)", p)
        elif p.is_dir():
            logger.debug("sub-folder %s of a class folder is ignored", p)
            continue
        elif not p.is_file():
            logger.warning("%s is not a regular file (a FIFO, socket or device); it is ignored", p)
            continue
        stem = medical_stem(p)  # ``vol.nii.gz`` -> ``vol``
        m = MASK_NAME.match(stem)
        if m:
            k = int(m.group("k")) if m.group("k") is not None else -1
            masks.setdefault(m.group("stem"), []).append((k, p))
            continue
        if stem in images:
            raise DataError(
                f"class folder {str(folder)!r}: images {images[stem].name!r} and {p.name!r} differ only "
                f"by suffix, so they would share one sample id; rename one"
            )
        images[stem] = p
    orphans = sorted(p.name for stem, ms in masks.items() if stem not in images for _, p in ms)
    if orphans:
        logger.warning(
            "class folder %s: %d mask files without an image are ignored (e.g. %r)",
            folder,
            len(orphans),
            orphans[0],
        )
    out = []
    for stem, p in images.items():
        mask_paths = tuple(mp for _, mp in sorted(masks.get(stem, []), key=lambda t: (t[0], t[1].name)))
        rel = p.relative_to(base)
        # DICOM / NIfTI: one sample per frame / slice
        out.extend(expand(Sample(sample_id(rel), p, mask_paths, folder.name, None)))
    return out


def _resolve(root: Path, text: str, where: str, what: str) -> Path:
    """Resolve a path cell of the manifest lexically under ``root``; it must exist and stay inside."""
    if not text:
        raise DataError(f"{where}: empty {what} path")
    candidate = Path(text)
    full = Path(os.path.normpath(candidate if candidate.is_absolute() else root / candidate))
    try:
        full.relative_to(root)
    except ValueError:
        raise DataError(
            f"{where}: {what} path {text!r} escapes the data root {str(root)!r} (the CSV's folder); "
            f"paths must stay inside it"
        ) from None
    if not full.is_file():
        if full.is_symlink():
            raise DataError(f"{where}: {what} file {text!r} is a broken symbolic link (dangling or a loop): "
                            f"{str(full)!r}")
        raise DataError(f"{where}: {what} file {text!r} does not exist (looked for {str(full)!r})")
    return full


def read_manifest(csv_path: StrPath, *, classes: Iterable[str] | None = None) -> Dataset:
    """Read a CSV manifest: one row per image.

    Columns (header names are matched case-insensitively; other columns are ignored):

    * ``image`` (required): image path, relative to the CSV's folder (or absolute inside it).
    * ``label`` (required): class name, non-empty.
    * ``mask`` (optional): mask paths separated by ``;``, merged by logical OR; empty = no mask.
    * ``group`` (optional): e.g. a patient id; samples of one group never straddle splits.
    * ``axis`` (optional): ``x``, ``y`` or ``z`` (default): how a NIfTI volume is cut into 2D images
      (see :mod:`samprompt.data.medical`, which also reads DICOM).

    The CSV's folder is the data root: no path may leave it (``../``, or absolute elsewhere). The file
    is read as UTF-8 (a BOM is accepted). Blank lines are skipped.

    Args:
        csv_path: The manifest.
        classes: Allowed labels; default: every label that occurs.

    Raises:
        DataError: Naming the CSV file and line for: a missing required column, an empty or unknown
            label, a label with a control character or white space at either end, labels differing
            only by case (``Benign``, ``benign``), an image listed twice, an image also listed as a mask, a path escaping the root, a
            missing file, a row with more fields than the header, an unreadable or empty file.
    """
    src = Path(csv_path).absolute()
    root = Path(os.path.normpath(src.parent))
    allowed = set(classes) if classes is not None else None
    samples: list[Sample] = []
    seen: dict[Path, int] = {}
    mask_lines: dict[Path, int] = {}
    labels_at: dict[str, str] = {}
    try:
        with src.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise DataError(f"CSV file {str(src)!r} is empty")
            cols = {name.strip().lower(): k for k, name in enumerate(header)}
            for req in _REQUIRED:
                if req not in cols:
                    raise DataError(
                        f"CSV file {str(src)!r}: line 1: missing required column {req!r} "
                        f"(header: {header}); required: image, label; optional: mask, group"
                    )
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                line = reader.line_num
                where = f"CSV file {str(src)!r}: line {line}"
                if len(row) > len(header):
                    raise DataError(f"{where}: {len(row)} fields but the header has {len(header)}")

                def cell(name: str, row: list[str] = row) -> str:
                    k = cols.get(name)
                    return row[k].strip() if k is not None and k < len(row) else ""

                image = _resolve(root, cell("image"), where, "image")
                if image in seen:
                    raise DataError(
                        f"{where}: image {cell('image')!r} is already listed on line {seen[image]}"
                    )
                seen[image] = line
                k_label = cols["label"]
                label = row[k_label].strip(" ") if k_label < len(row) else ""
                problem = label_problem(label)
                if problem:
                    raise DataError(f"{where}: {problem}")
                labels_at.setdefault(label, f"line {line}")
                if allowed is not None and label not in allowed:
                    same = [a for a in sorted(allowed) if a.casefold() == label.casefold()]
                    hint = f" (did you mean {same[0]!r}? labels are case-sensitive)" if same else ""
                    raise DataError(f"{where}: unknown label {label!r}{hint}; allowed: {sorted(allowed)}")
                mask_paths = tuple(
                    _resolve(root, part.strip(), where, "mask")
                    for part in cell("mask").split(";")
                    if part.strip()
                )
                for mp in mask_paths:
                    mask_lines.setdefault(mp, line)
                try:
                    sid = sample_id(image.relative_to(root))
                except DataError as e:
                    raise DataError(f"{where}: {e}") from None
                samples.extend(expand(Sample(sid, image, mask_paths, label, cell("group") or None),
                                      axis=cell("axis").lower() or "z"))  # DICOM / NIfTI: per frame / slice
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"CSV file {str(src)!r} cannot be read: {e}") from e
    both = sorted(set(seen) & set(mask_lines), key=lambda p: seen[p])
    if both:
        p = both[0]
        raise DataError(
            f"CSV file {str(src)!r}: line {seen[p]}: {p.name!r} is listed as an image here and as a mask "
            f"on line {mask_lines[p]}"
        )
    if not samples:
        raise DataError(f"CSV file {str(src)!r} lists no images")
    check_case_variants(labels_at, f"CSV file {str(src)!r}")
    try:
        return Dataset(samples, root=root, classes=classes, source=src)
    except DataError as e:
        raise DataError(f"CSV file {str(src)!r}: {e}") from None


def open_dataset(path: StrPath, *, classes: Iterable[str] | None = None) -> Dataset:
    """Open a data set, choosing the reader from the path.

    Args:
        path: A folder (class folders, BUSI layout: see
            :func:`~samprompt.data.readers.read_class_folders`) or a ``.csv`` manifest (see
            :func:`~samprompt.data.readers.read_manifest`).
        classes: Expected class names; a label (CSV) or class folder outside them is an error. Default:
            whatever the data contain.

    Raises:
        DataError: If the path does not exist, is neither a folder nor a ``.csv`` file, or the reader
            rejects the data (the message names the file and, for CSVs, the line).
    """
    p = Path(path)
    if p.is_dir():
        return read_class_folders(p, classes=classes)
    if p.is_file() and p.suffix.lower() == ".csv":
        return read_manifest(p, classes=classes)
    if not p.exists():
        raise DataError(f"data path {str(p)!r} does not exist")
    raise DataError(f"data path {str(p)!r} is neither a folder of class folders nor a .csv manifest")
