"""Run-folder writing: atomic files, safe file names for image ids, mask PNGs.

Every file the runner writes goes through ``samprompt._io.atomic_write_bytes`` (temporary file in the
same folder, created with the process umask, ``fsync``, then :func:`os.replace`), so an interrupted run never
leaves a half-written file behind: a file either holds its complete content or does not exist.
``atomic_write_bytes`` and ``atomic_write_text`` are re-exported here.

Image ids come from file names and may hold anything a file name can (``../evil``, ``a b (1)``, accents,
``/`` separators). :func:`safe_name` turns an id into a plain ASCII file stem that cannot leave the run
folder — a slug plus a short hash of the exact id, so two ids never collide — and :func:`inside` checks a
path against the run folder before anything is written.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from samprompt import _io
from samprompt._io import atomic_write_bytes, atomic_write_text
from samprompt.errors import DataError

__all__ = [
    "append_jsonl",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "inside",
    "png_bytes",
    "read_png",
    "safe_name",
    "to_jsonable",
    "write_png",
]

log = logging.getLogger(__name__)

_SLUG_BAD = re.compile(r"[^A-Za-z0-9._-]+")
_SLUG_MAX = 60


def safe_name(image_id: str) -> str:
    """A file stem for ``image_id`` that is plain ASCII, unique per id and safe in any folder.

    The stem is an ASCII slug of the id (accents stripped, every other character outside
    ``[A-Za-z0-9._-]`` replaced by ``_``, no leading dot, at most 60 characters) followed by ``-`` and
    the first 10 hex digits of the SHA-256 of the id's UTF-8 bytes. It never contains a path separator,
    never is ``.`` or ``..``, and two different ids get different stems (up to hash collisions).

    Example:
        >>> safe_name("benign/benign (1)")
        'benign_benign_1-9f98a32c5b'
        >>> "/" in safe_name("../evil") or safe_name("../evil").startswith(".")
        False
    """
    ascii_text = unicodedata.normalize("NFKD", image_id).encode("ascii", "ignore").decode("ascii")
    slug = _SLUG_BAD.sub("_", ascii_text).strip("._-")[:_SLUG_MAX].rstrip("._-") or "image"
    digest = hashlib.sha256(image_id.encode("utf-8")).hexdigest()[:10]
    return f"{slug}-{digest}"


def inside(root: Path, path: Path) -> Path:
    """Return ``path`` resolved, after checking that it lies inside ``root``.

    Raises:
        DataError: If ``path`` resolves outside ``root`` (a file name that tries to escape).
    """
    r, p = root.resolve(), path.resolve()
    if p != r and r not in p.parents:
        raise DataError(f"refusing to write {str(path)!r}: it is outside the run folder {str(root)!r}")
    return p


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, paths, tuples and NaN (→ ``None``) into plain JSON values."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return None if not np.isfinite(obj) else obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def atomic_write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented UTF-8 JSON atomically, after :func:`to_jsonable` (NaN written as ``null``,
    numpy values and paths converted)."""
    return _io.atomic_write_json(path, to_jsonable(data))


def append_jsonl(lines: Iterable[Any]) -> str:
    """Render records as JSON Lines text (one compact JSON object per line)."""
    return "".join(json.dumps(to_jsonable(x), ensure_ascii=False, separators=(",", ":")) + "\n" for x in lines)


def png_bytes(array: NDArray[Any]) -> bytes:
    """Encode an (H, W) uint8/bool or (H, W, 3) uint8 array as PNG bytes (bool → 0/255).

    zlib level 1: about twice as fast as level 6 on BUSI-sized masks and CAMs (1.8 vs 4.0 ms per mask,
    4.1 vs 9.4 ms per CAM), for files about twice as large (2 KB per mask, 20 KB per CAM).
    """
    arr = np.asarray(array)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def write_png(path: Path, array: NDArray[Any]) -> Path:
    """Write an array as a PNG atomically; bool masks become uint8 0/255 (see :func:`png_bytes`)."""
    return atomic_write_bytes(path, png_bytes(array))


def read_png(path: Path) -> NDArray[Any]:
    """Read a PNG written by :func:`write_png` back as an array.

    Raises:
        DataError: If the file is missing or not a readable image (naming it).
    """
    try:
        with Image.open(path) as im:
            return np.asarray(im).copy()
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read run file {str(path)!r}: {exc}") from exc
