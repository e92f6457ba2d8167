"""Shared pytest fixtures and the environment every test runs in."""

from __future__ import annotations

import os

import pytest

# Tests never reach the network and never see a user's plugins unless a test installs one itself.
os.environ.setdefault("TORCH_HOME", os.path.join(os.path.dirname(__file__), ".torch-home-unused"))


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
