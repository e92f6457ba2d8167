"""One run at a time per run folder: the lock file ``<run folder>/.samprompt.lock``.

:func:`run_lock` creates the lock file atomically (written in full under a temporary name, then
hard-linked to its name, which fails when the name exists) holding the owner's pid, host, process start
time and the time the lock was taken. A second run on the same folder finds it and refuses with a
:class:`~samprompt.errors.ConfigError` naming the owner. A lock whose owner is gone — same host, and no
process with that pid, or one that started at another time (the pid was reused) — is stale: it is taken
over with a logged warning, so a run killed with ``SIGKILL`` never leaves its folder stuck. A lock held by
another host cannot be checked; the message says how to remove it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from samprompt._io import atomic_write_json
from samprompt.errors import ConfigError

__all__ = ["LOCK_NAME", "lock_owner", "run_lock"]

log = logging.getLogger(__name__)

#: Name of the lock file inside a run folder.
LOCK_NAME = ".samprompt.lock"


def _process_start(pid: int) -> str | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), or ``None``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except OSError:
        return False
    return True


def _me() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start(os.getpid()),
            "started": datetime.now(UTC).isoformat(timespec="seconds")}


def lock_owner(out: Path) -> dict[str, Any] | None:
    """The content of ``out``'s lock file (``pid``, ``host``, ``process_start``, ``started``), or ``None``."""
    try:
        data = json.loads((Path(out) / LOCK_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _stale(owner: dict[str, Any]) -> str | None:
    """Why the lock of ``owner`` is stale (its process is gone), or ``None`` when it may be alive."""
    if not owner:
        return "the lock file is unreadable"
    if owner.get("host") != socket.gethostname():
        return None
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return "the lock file is unreadable"
    if not _alive(pid):
        return f"process {pid} no longer exists"
    start = owner.get("process_start")
    if start is not None and _process_start(pid) not in (None, start):
        return f"process {pid} is another process (the pid was reused)"
    return None


def _try_create(path: Path, me: dict[str, Any]) -> bool:
    """Create ``path`` holding ``me`` unless it exists (atomic: write a temporary file, hard-link it)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.new")
    atomic_write_json(tmp, me)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: exclusive create (content written right after)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(me, f)
        return True
    finally:
        tmp.unlink(missing_ok=True)
    return True


@contextmanager
def run_lock(out: str | os.PathLike[str], *, enabled: bool = True) -> Iterator[Path | None]:
    """Hold the run folder ``out``'s lock for the duration of the ``with`` block.

    The folder is created if needed. The lock is released (its file removed) however the block ends,
    ``KeyboardInterrupt`` included.

    Args:
        out: The run folder.
        enabled: ``False`` takes no lock and yields ``None`` (e.g. for the non-zero ranks of a
            distributed run, whose rank 0 holds it).

    Yields:
        The lock file's path, or ``None`` when ``enabled`` is false.

    Raises:
        ConfigError: If another live process (or another host) holds the lock; the message names it,
            when it started, and the lock file.
    """
    if not enabled:
        yield None
        return
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"run folder {str(folder)!r} cannot be created or written ({exc.strerror or exc}: "
                          f"{exc.filename or folder}); choose another --out") from exc
    path = folder / LOCK_NAME
    me = _me()
    for _ in range(3):
        try:
            if _try_create(path, me):
                break
        except OSError as exc:
            raise ConfigError(f"run folder {str(folder)!r} cannot be created or written "
                              f"({exc.strerror or exc}: {exc.filename or path}); choose another --out") from exc
        owner = lock_owner(folder)
        if owner is None:  # released meanwhile
            continue
        why = _stale(owner)
        if why is None:
            raise ConfigError(
                f"run folder {str(folder)!r} is in use by another samprompt run (pid {owner.get('pid')} on "
                f"{owner.get('host')!r}, started {owner.get('started')}); wait for it to finish or choose "
                f"another --out. If that run is gone (e.g. it ran on another machine), delete {str(path)!r}"
            )
        log.warning("run folder %s: taking over the lock of a run that is gone (%s; lock taken %s)",
                    folder, why, owner.get("started"))
        path.unlink(missing_ok=True)
    else:
        raise ConfigError(f"run folder {str(folder)!r}: could not take the lock {str(path)!r}; try again")
    try:
        yield path
    finally:
        if lock_owner(folder) == me:
            path.unlink(missing_ok=True)
