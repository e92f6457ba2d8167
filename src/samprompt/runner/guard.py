"""Around a run: what is checked before anything is written, what an early error cleans up, and signals.

(What is checked before anything is written is :mod:`samprompt.runner.check`, the door.)

* :func:`remove_unstarted`: after an error, remove a run folder that the failed invocation created and
  that holds only setup files (``config.json``, ``split.json``, ``manifest.json``).
* :func:`sigterm_as_interrupt`: ``SIGTERM`` ends the run like Ctrl-C (files whole, lock released).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from samprompt.runner.lock import LOCK_NAME

__all__ = ["remove_unstarted", "sigterm_as_interrupt"]

log = logging.getLogger(__name__)


#: Files a run writes before its first image; a folder holding nothing else has no work worth keeping.
_SETUP_FILES = frozenset({"config.json", "split.json", "manifest.json", LOCK_NAME})


def remove_unstarted(out: Path) -> None:
    """After an error, remove the run folder ``out`` (which this invocation created) if it holds only setup
    files; a folder holding anything else, or another run's lock, is left alone."""
    if not out.is_dir():
        return
    try:
        names = {p.name for p in out.iterdir()}
        if not names <= _SETUP_FILES or LOCK_NAME in names:  # a lock: another run took the folder meanwhile
            return
        for name in names:
            (out / name).unlink()
        out.rmdir()
        log.info("removed the run folder %s: the run stopped before any work", out)
    except OSError as exc:
        log.warning("could not remove the unfinished run folder %s: %s", out, exc)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn ``SIGTERM`` into ``KeyboardInterrupt`` while the run runs (main thread only), so a terminated
    run ends like a Ctrl-C: files stay whole, the lock is released, and a rerun resumes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):  # not allowed here (e.g. an embedded interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
