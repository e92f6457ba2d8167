"""Speed machinery of the pipeline, kept out of :class:`~samprompt.pipeline.PromptPipeline`: worker processes
for the CPU work of a batch (pseudo masks and prompts), and a helper thread that overlaps that work with
the segmenter's embedding.

Neither changes a result: a function runs with the same arguments in another process or thread. This
module imports nothing of the pipeline; the pipeline hands it the function to run.
"""

from __future__ import annotations

import multiprocessing
import pickle
import weakref
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import torch

from samprompt.errors import ConfigError

__all__ = ["WorkerPool", "overlapped"]

A = TypeVar("A")
B = TypeVar("B")

# What a worker process calls: ``(function, bound arguments)``, set once by ``_init``.
_STATE: tuple[Callable[..., Any], tuple[Any, ...]] | None = None


def _init(payload: bytes) -> None:
    global _STATE
    torch.set_num_threads(1)  # one process per core: no nested thread pools
    _STATE = pickle.loads(payload)


def _call(*args: Any) -> Any:
    if _STATE is None:  # pragma: no cover - only without the initializer
        raise RuntimeError("samprompt worker process was not initialised")
    fn, bound = _STATE
    return fn(*bound, *args)


class WorkerPool:
    """Spawned worker processes that call ``fn(*bound, *args)`` for each ``args`` of a batch.

    The processes start on the first :meth:`map` and are kept between calls while ``key`` stays the same
    (e.g. the ids of the masker and strategy objects); a new key restarts them with the new objects. A
    dead worker (killed, out of memory) makes that call raise ``BrokenProcessPool`` and the next call
    start new processes. Processes are spawned, never forked (the parent holds torch / CUDA threads), so
    scripts need the usual ``if __name__ == "__main__":`` guard.

    Args:
        processes: Number of worker processes (>= 1).
        setting: Name of the setting that asked for them, used in messages (``"prompt_workers"``).
        what: What the bound arguments are, used in messages (``"the masker and prompt strategies"``).
    """

    def __init__(self, processes: int, setting: str = "workers", what: str = "the objects they run") -> None:
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ConfigError(f"{setting}: must be an integer >= 1 for a worker pool, got {processes!r}")
        self.processes = processes
        self.setting = setting
        self.what = what
        self.pool: ProcessPoolExecutor | None = None
        self._key: Hashable = None
        self._owner: Any = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def _start(self, fn: Callable[..., Any], bound: tuple[Any, ...], key: Hashable) -> ProcessPoolExecutor:
        if self.pool is not None and self._key == key:
            return self.pool
        self.close()
        try:
            payload = pickle.dumps((fn, bound))
        except Exception as exc:  # any pickling failure means the same thing here
            raise ConfigError(
                f"{self.setting}={self.processes}: {self.what} must be picklable (importable classes) to run "
                f"in worker processes; {type(exc).__name__}: {exc}. Use {self.setting}=0 for them."
            ) from exc
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(self.processes, mp_context=ctx, initializer=_init, initargs=(payload,))
        self.pool, self._key, self._owner = pool, key, bound  # the owner keeps the keyed ids alive
        self._finalizer = weakref.finalize(self, pool.shutdown, wait=False, cancel_futures=True)
        return pool

    def map(self, fn: Callable[..., A], bound: tuple[Any, ...], args: Sequence[tuple[Any, ...]],
            key: Hashable) -> list[A]:
        """``[fn(*bound, *a) for a in args]``, computed in the worker processes, in order.

        Args:
            fn: A module-level (picklable) function.
            bound: Leading arguments shared by every call; sent to each process once per ``key``.
            args: The per-call arguments.
            key: Identifies ``bound``; a different key restarts the processes with the new ``bound``.

        Raises:
            ConfigError: ``fn`` or ``bound`` cannot be pickled (naming :attr:`setting`).
            BrokenProcessPool: A worker died; the next call starts new processes.
        """
        pool = self._start(fn, bound, key)
        try:
            return list(pool.map(_call, *zip(*args, strict=True))) if args else []
        except BrokenProcessPool:
            self.close()
            raise

    def close(self) -> None:
        """Stop the processes, if any were started (idempotent; a later :meth:`map` starts them again)."""
        if self.pool is not None:
            if self._finalizer is not None:
                self._finalizer.detach()
            self.pool.shutdown(wait=True, cancel_futures=True)
        self.pool = self._key = self._owner = self._finalizer = None


def overlapped(background: Callable[[], A], foreground: Callable[[], B]) -> tuple[A, B]:
    """Run ``background`` in a helper thread while ``foreground`` runs in this one.

    Used to make a batch's pseudo masks and prompts (CPU) while the segmenter embeds it (on a GPU mostly
    waiting for kernels). A failure of ``foreground`` is raised first.

    Returns:
        ``(background(), foreground())``.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="samprompt-overlap") as pool:
        future = pool.submit(background)
        front = foreground()
        return future.result(), front
