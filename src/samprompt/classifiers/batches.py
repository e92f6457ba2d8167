"""DataLoaders of the training loop and how their batches are made (seeded, thread-lean on CPUs)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from samprompt.classifiers.inputs import ExampleDataset

__all__ = ["batches", "make_loader"]


def _seed_worker(worker_id: int) -> None:
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def make_loader(ds: ExampleDataset, bs: int, seed: int, workers: int, dev: torch.device, train: bool) -> DataLoader[Any]:
    """A seeded DataLoader over ``ds`` (a last training batch of one sample is dropped: BatchNorm needs two)."""
    g = torch.Generator().manual_seed(seed)
    return DataLoader(
        ds, batch_size=bs, shuffle=train, num_workers=workers, generator=g,
        drop_last=train and len(ds) % bs == 1 and len(ds) > 1, worker_init_fn=_seed_worker,
        persistent_workers=workers > 0, pin_memory=dev.type == "cuda",
    )


def batches(loader: DataLoader[Any], workers: int) -> Iterator[Any]:
    """The loader's batches; without worker processes they are made with ONE intra-op thread: the
    per-sample resizing and augmentation are small ops on which thread hand-offs cost more than they
    bring (one 128-px affine: 21 ms with 2 threads, 0.25 ms with one, on a busy 2-core machine)."""
    if workers > 0:
        yield from loader
        return
    threads = torch.get_num_threads()
    it = iter(loader)
    while True:
        torch.set_num_threads(1)
        try:
            batch = next(it)
        except StopIteration:
            return
        finally:
            torch.set_num_threads(threads)
        yield batch
