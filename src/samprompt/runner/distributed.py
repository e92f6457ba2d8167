"""One run across many processes with ``torch.distributed`` (``torchrun``): shards, barriers, the merge.

Launched by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``), every process runs :func:`~samprompt.runner.run.run_experiment` on the same run folder:

* rank 0 prepares the folder and the split, trains the classifier (and any self-training net) while the
  others wait at a barrier, then the others read what it wrote;
* each rank processes only its shard of the images (:func:`shard_of`: a SHA-256 of the image id modulo
  the world size, so a rerun with the same world size gives each image to the same rank) and writes one
  record per finished image into the shared folder;
* after a barrier, rank 0 writes the run-level files from all records and every rank's failures.

Records are per image, so a run interrupted at any point (a rank died) is finished by rerunning the same
command with any world size. Without ``torchrun``'s variables (or with ``WORLD_SIZE=1``) nothing here
starts a process group and a run is a plain single-process run.

The coordination (barriers, the failure lists) goes through a gloo group on the CPU; on CUDA the default
group is NCCL and each process uses ``cuda:LOCAL_RANK``.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as tdist

from samprompt.errors import ConfigError, StageError

__all__ = [
    "DEFAULT_BARRIER_TIMEOUT",
    "ENV_BARRIER_TIMEOUT",
    "BarrierError",
    "Distributed",
    "barrier_timeout",
    "current",
    "shard",
    "shard_of",
]

log = logging.getLogger(__name__)

#: Environment variable with the barrier timeout in seconds (``--barrier-timeout`` wins over it).
ENV_BARRIER_TIMEOUT = "SAMPROMPT_BARRIER_TIMEOUT"
#: Seconds a rank waits at a barrier by default. The longest wait is the others' wait for rank 0's
#: classifier training, and at the end for the slowest rank's shard: raise it for long trainings.
DEFAULT_BARRIER_TIMEOUT = 3600.0

class BarrierError(StageError):
    """A rank did not reach a barrier in time, or a peer rank died while this one waited.

    Attributes:
        stage: The barrier's name (``prepare``, ``classifier``, ``images``).
        rank: The rank that raised.
        world_size: Number of ranks.
        timeout: The barrier timeout in seconds.
    """

    def __init__(self, stage: str, rank: int, world_size: int, timeout: float, detail: str) -> None:
        self.rank, self.world_size, self.timeout = rank, world_size, timeout
        super().__init__(stage, "torch.distributed", (
            f"rank {rank} of {world_size} at barrier {stage!r}: {detail} (another rank died or took longer "
            f"than the barrier timeout of {timeout:g} s; raise it with --barrier-timeout or "
            f"{ENV_BARRIER_TIMEOUT}; rerun the same command, with any number of processes, to finish the "
            "run: finished images are kept)"))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_barrier_error, (self.stage, self.rank, self.world_size, self.timeout, self.message))


def _rebuild_barrier_error(stage: str, rank: int, world: int, timeout: float, message: str) -> BarrierError:
    err = BarrierError(stage, rank, world, timeout, "")
    err.message = message
    err.args = (f"stage {stage!r} (component 'torch.distributed') failed: {message}",)
    return err


def barrier_timeout(seconds: float | None = None) -> float:
    """The barrier timeout in seconds: ``seconds`` if given, else ``$SAMPROMPT_BARRIER_TIMEOUT``, else
    :data:`DEFAULT_BARRIER_TIMEOUT`.

    Raises:
        ConfigError: A value that is not a positive number (naming ``--barrier-timeout`` or the variable).
    """
    where, value = "--barrier-timeout", seconds
    if value is None:
        raw = os.environ.get(ENV_BARRIER_TIMEOUT, "").strip()
        if not raw:
            return DEFAULT_BARRIER_TIMEOUT
        where = f"${ENV_BARRIER_TIMEOUT}"
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{where}: expected seconds (a positive number), got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{where}: expected seconds (a positive number), got {value!r}")
    return float(value)


def shard_of(image_id: str, world_size: int) -> int:
    """The rank that processes ``image_id``: the first 8 bytes of its UTF-8 SHA-256, modulo ``world_size``.

    Stable across processes, machines and Python versions (unlike the built-in ``hash``, which is salted per process).

    Raises:
        ValueError: ``world_size`` below 1.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    digest = hashlib.sha256(image_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % world_size


def shard(ids: Sequence[str], rank: int, world_size: int) -> list[str]:
    """The ids of ``ids`` that rank ``rank`` of ``world_size`` processes (order kept; see :func:`shard_of`).

    Raises:
        ValueError: ``rank`` outside ``[0, world_size)``.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    return [i for i in ids if shard_of(i, world_size) == rank]


def _env_int(name: str) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"${name}: expected an integer (as torchrun sets it), got {raw!r}") from None


@dataclass
class Distributed:
    """This process's place in a run: rank, world size and the coordination group.

    A single-process run is rank 0 of 1 without a group; then every method is free and does nothing.

    Attributes:
        rank: Global rank.
        world_size: Number of processes.
        local_rank: Rank on this machine (selects ``cuda:LOCAL_RANK``).
        timeout: Barrier timeout in seconds.
        group: The gloo group for barriers and object exchange (``None`` in a single process).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    timeout: float = DEFAULT_BARRIER_TIMEOUT
    group: Any = None

    @property
    def enabled(self) -> bool:
        """Whether this is one of several processes."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the one that prepares, trains and merges)."""
        return self.rank == 0

    def shard(self, ids: Sequence[str]) -> list[str]:
        """This rank's ids among ``ids`` (all of them in a single process); see :func:`shard`."""
        return list(ids) if not self.enabled else shard(ids, self.rank, self.world_size)

    def barrier(self, stage: str) -> None:
        """Wait until every rank reached the barrier ``stage``.

        Raises:
            BarrierError: A rank did not arrive within :attr:`timeout` (rank 0 names the missing ranks),
                or a peer died.
        """
        if not self.enabled:
            return
        log.debug("rank %d: waiting at barrier %r", self.rank, stage)
        try:
            tdist.monitored_barrier(group=self.group, timeout=timedelta(seconds=self.timeout),
                                    wait_all_ranks=True)
        except RuntimeError as exc:  # DistBackendError and gloo's errors are RuntimeErrors
            raise BarrierError(stage, self.rank, self.world_size, self.timeout, str(exc).strip()) from exc

    def main_first(self, stage: str) -> None:
        """Start a section rank 0 runs first: the other ranks wait here until rank 0 calls :meth:`main_done`."""
        if not self.is_main:
            self.barrier(stage)

    def main_done(self, stage: str) -> None:
        """End a :meth:`main_first` section on rank 0 (lets the other ranks in); a no-op on the others."""
        if self.is_main:
            self.barrier(stage)

    def gather(self, stage: str, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank, after a barrier named ``stage``.

        Raises:
            BarrierError: As :meth:`barrier`.
        """
        if not self.enabled:
            return [obj]
        self.barrier(stage)
        out: list[Any] = [None] * self.world_size
        try:
            tdist.all_gather_object(out, obj, group=self.group)
        except RuntimeError as exc:
            raise BarrierError(stage, self.rank, self.world_size, self.timeout, str(exc).strip()) from exc
        return out


_current: Distributed | None = None


def _close() -> None:
    global _current
    if _current is not None and _current.enabled and tdist.is_initialized():
        tdist.destroy_process_group()
    _current = None


def current(device: str = "auto", timeout: float | None = None) -> Distributed:
    """This process's :class:`Distributed`, joining the process group on first use when ``torchrun`` started it.

    The group is made once per process (a preset's runs share it) and left at exit. With CUDA
    (``device`` ``auto`` or ``cuda``), this process's current device becomes ``cuda:LOCAL_RANK`` and the
    default group uses NCCL; otherwise gloo. A group made by the caller is used as it is.

    Args:
        device: The run's device (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
        timeout: Barrier timeout in seconds (default: :func:`barrier_timeout`).

    Raises:
        ConfigError: Malformed ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``, a bad timeout, or fewer GPUs
            than ``LOCAL_RANK`` needs.
    """
    global _current
    if _current is not None:
        _current.timeout = barrier_timeout(timeout) if _current.enabled or timeout is not None else _current.timeout
        return _current
    if tdist.is_available() and tdist.is_initialized():  # the caller made the group
        seconds = barrier_timeout(timeout)
        world, rank = tdist.get_world_size(), tdist.get_rank()
        local = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
        group = tdist.new_group(backend="gloo") if tdist.get_backend() != "gloo" else None
        _current = Distributed(rank, world, local, seconds, group)
        return _current
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ or _env_int("WORLD_SIZE") <= 1:
        # a single process reads no environment variable; an explicit bad timeout is still an error
        _current = Distributed(timeout=DEFAULT_BARRIER_TIMEOUT if timeout is None else barrier_timeout(timeout))
        return _current
    seconds = barrier_timeout(timeout)
    rank, world = _env_int("RANK"), _env_int("WORLD_SIZE")
    local = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
    if not 0 <= rank < world:
        raise ConfigError(f"$RANK {rank} is outside [0, $WORLD_SIZE={world})")
    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available() or device == "cuda"
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise ConfigError(f"$LOCAL_RANK {local} needs GPU cuda:{local}, but this machine has "
                              f"{torch.cuda.device_count()}; start at most that many processes per node")
        torch.cuda.set_device(local)
    elif device.startswith("cuda:"):
        log.warning("device %s is fixed: every rank on this machine uses it (use 'cuda' or 'auto' for "
                    "cuda:LOCAL_RANK)", device)
    tdist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timedelta(seconds=seconds))
    group = tdist.new_group(backend="gloo", timeout=timedelta(seconds=seconds)) if use_cuda else None
    _current = Distributed(rank, world, local, seconds, group)
    atexit.register(_close)
    log.info("rank %d of %d (local rank %d) joined the process group (%s)", rank, world, local,
             "nccl + gloo" if use_cuda else "gloo")
    return _current
