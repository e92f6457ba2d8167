"""Atomic file writes: the one copy every part of samprompt uses (data, classifiers, runner).

A file is written to a hidden temporary file next to it (``.<name>.<pid>.<random>.tmp``), flushed,
``fsync``-ed and then renamed over its name with :func:`os.replace`, so a reader (or a run resumed after a
crash) sees either the complete old content or the complete new content, never half a file.

The temporary file is created with mode ``0o666`` filtered by the process umask, like any file
``open(path, "w")`` creates, so outputs are as readable as the user's umask says (``tempfile.mkstemp``
would make every file ``0o600``). Folders are created with :meth:`pathlib.Path.mkdir`, which honours the
umask too. This module imports nothing from samprompt, so every room may use it.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["TMP_SUFFIX", "atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text"]

#: Suffix of the temporary files (a killed writer may leave ``.<name>.*.tmp`` behind; never read).
TMP_SUFFIX = ".tmp"


def _temporary(path: Path) -> Path:
    """Create an empty, exclusive temporary file next to ``path`` (mode ``0o666 & ~umask``)."""
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue
        os.close(fd)
        return tmp


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object], *, fsync: bool = True) -> Path:
    """Let ``write(tmp)`` fill a temporary file next to ``path``, then rename it over ``path``.

    For writers that want a path (``torch.save``); :func:`atomic_write_bytes` is the usual entry point.
    The parent folders are created. On any exception (including ``KeyboardInterrupt``) the temporary
    file is removed and ``path`` keeps its old content.

    Args:
        path: Destination file.
        write: Writes the complete content to the path it is given (which already exists, empty).
        fsync: Flush the temporary file to disk before the rename.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: If the folder or file cannot be written.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(p)
    try:
        write(tmp)
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, p)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    return p


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring); return the path."""

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            f.write(data)

    return atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically; return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], data: Any, *,
                      default: Callable[[Any], Any] | None = None) -> Path:
    """Write ``data`` as indented UTF-8 JSON (non-ASCII kept, final newline) atomically; return the path.

    Args:
        path: Destination file.
        data: A JSON-serialisable value.
        default: Passed to :func:`json.dumps` for values it cannot serialise.
    """
    return atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=default) + "\n")
