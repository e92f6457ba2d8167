"""Shared fixtures of the classifier tests: a tiny synthetic two-class image set."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from samprompt.classifiers import TaskSpec
from samprompt.classifiers.inputs import Example


def synthetic_examples(n: int, seed: int = 0, size: tuple[int, int] = (36, 44)) -> list[Example]:
    """``n`` noisy dark images, half of them ("bright") with a bright 12 x 12 square somewhere."""
    rng = np.random.default_rng(seed)
    out: list[Example] = []
    for i in range(n):
        img = (rng.random((*size, 3)) * 60).astype(np.uint8)
        label = "bright" if i % 2 else "dark"
        if label == "bright":
            y, x = int(rng.integers(2, size[0] - 14)), int(rng.integers(2, size[1] - 14))
            img[y : y + 12, x : x + 12] = 220
        out.append((img, label))
    return out




@pytest.fixture
def make_examples() -> Callable[..., list[Example]]:
    """Factory of synthetic examples: ``make_examples(n, seed=0)``."""
    return synthetic_examples


@pytest.fixture
def bright_task() -> TaskSpec:
    """The two-class task of the synthetic examples."""
    return TaskSpec(class_names=("dark", "bright"))
