"""Every script in ``examples/`` runs (as a user would run it) and prints what it is about."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

#: Script → a line its output must contain (a regular expression, searched line by line).
EXPECTED = {
    "quickstart.py": r"^\s+box: box=\[\d+, \d+, \d+, \d+\] dice\(CAM prompt\)=0\.\d{3} dice\(GT prompt\)=",
    "custom_strategy.py": r"^registered prompt strategies: .*\bshrunk_box\b",
    "ground_truth_baseline.py": r"^\s*box_center_point\s+0\.\d{3}\s+0\.\d{3}\s+\d+%\s+1$",
    "sam_tiny.py": r"^(tiny SAM loaded from a checkpoint file|skipped: )",
    "weight_free_segmenter.py": r"^\s+dark_in_box: mean Dice over 4 synthetic images: box 0\.\d{3}",
}


def test_every_example_has_an_expected_line() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs(script: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    assert re.search(EXPECTED[script], proc.stdout, re.MULTILINE), f"{script} printed:\n{proc.stdout}"
