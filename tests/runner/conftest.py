"""Fixtures of the runner tests (helpers live in ``runner_helpers.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from runner_helpers import fast_config, make_dataset


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 images (4 per class) of 64 x 80 px with masks; normal masks are empty."""
    return make_dataset(tmp_path_factory.mktemp("synth") / "data")


@pytest.fixture(scope="session")
def finished_run(synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """``(run folder, RunResult)`` of :func:`fast_config` on :func:`synth_data` (6 test images)."""
    from samprompt.runner import load_run_config, run_experiment

    out = tmp_path_factory.mktemp("run") / "r"
    return out, run_experiment(load_run_config(fast_config(synth_data)), out)
