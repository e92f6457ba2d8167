"""Shared pytest fixtures and the environment every test runs in."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Tests never reach the network and never see a user's plugins unless a test installs one itself.
os.environ.setdefault("TORCH_HOME", os.path.join(os.path.dirname(__file__), ".torch-home-unused"))


@pytest.fixture(autouse=True, scope="session")
def _tiny_sam_model_type() -> None:
    """The test-only SAM model type ``tiny`` exists in every test (``samprompt.testing`` registers it)."""
    import samprompt.testing  # noqa: F401


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """The tests run tiny models: one thread is faster, and far faster when the 2 cores are shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def _hypothesis_profile() -> None:
    """Property tests are derandomised (the same examples every run, no time deadline) so CI is stable;
    ``pytest --hypothesis-seed=N`` or ``HYPOTHESIS_PROFILE=explore`` explores new examples."""
    from hypothesis import settings

    settings.register_profile("stable", derandomize=True, deadline=None, print_blob=True)
    settings.register_profile("explore", deadline=None, print_blob=True)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "stable"))


_hypothesis_profile()
