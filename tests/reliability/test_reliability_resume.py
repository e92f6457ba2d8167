"""A run killed with SIGKILL mid-way, then rerun, ends identical to an uninterrupted run (same seed, CPU).

The victim is a real ``python -m samprompt.cli run`` process, killed as soon as a few per-image records
exist (no clean-up code of samprompt runs: SIGKILL cannot be caught); the same command is then run again
in the same folder (in-process, through ``samprompt.cli.main``, like the undisturbed reference run). The
victim trains its classifier in its own process, so the comparison also checks that the same seed gives
the same classifier and the same numbers on the CPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from reliability_helpers import make_dataset, run_config

from samprompt.runner.outputs import read_png

KILL_AFTER = 3  # records
COMPARED = ("metrics.csv", "prompts.jsonl", "summary.csv", "names.json", "split.json")


def _cli(cfg: Path, out: Path, log: Path) -> subprocess.Popen[bytes]:
    """``python -m samprompt.cli run CONFIG --out OUT``, its output going to ``log`` (a pipe could fill up)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", SAMPROMPT_DISABLE_PLUGINS="1")
    with log.open("wb") as f:
        return subprocess.Popen([sys.executable, "-m", "samprompt.cli", "--no-progress", "run", str(cfg),
                                 "--out", str(out)], stdout=f, stderr=subprocess.STDOUT, env=env)


def _records(out: Path) -> list[Path]:
    folder = out / "records"
    return [p for p in folder.glob("*.json") if not p.name.startswith(".")] if folder.is_dir() else []


def _run_here(cfg: Path, out: Path) -> None:
    from samprompt.cli import main

    assert main(["--no-progress", "run", str(cfg), "--out", str(out)]) == 0


def _visible_files_are_complete(out: Path) -> None:
    """Every file a reader would look at is whole: JSON parses, PNG decodes (atomic writes)."""
    for p in out.rglob("*"):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix == ".json":
            json.loads(p.read_text(encoding="utf-8"))
        elif p.suffix == ".png":
            with Image.open(p) as im:
                im.load()


def test_killed_run_resumes_to_identical_results(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", per_class=4)  # 12 images of 64 x 80
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps(run_config(data, batch_size=2)))  # trains tiny_cnn, classical segmenter
    reference, victim = tmp_path / "reference", tmp_path / "victim"

    _run_here(cfg, reference)
    log = tmp_path / "victim.log"
    proc = _cli(cfg, victim, log)
    deadline = time.monotonic() + 240
    while len(_records(victim)) < KILL_AFTER:
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before it could be killed:\n{log.read_text()}")
        assert time.monotonic() < deadline, f"no records appeared:\n{log.read_text()}"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, log.read_text()

    done_before = {p.name for p in _records(victim)}
    assert KILL_AFTER <= len(done_before) < 12, "the run was not interrupted mid-way"
    assert not (victim / "metrics.csv").exists()  # run-level files are written only at the end
    _visible_files_are_complete(victim)
    stamps = {p.name: p.stat().st_mtime_ns for p in _records(victim)}
    # what a kill during a write leaves (whether or not this kill did): removed by the next run;
    # a user's own file of another name is kept
    (victim / "masks" / ".box.png.k3j_x.tmp").write_bytes(b"partial")
    (victim / "mine.tmp").write_bytes(b"keep me")

    _run_here(cfg, victim)
    assert not list(victim.rglob(".*.tmp")) and (victim / "mine.tmp").read_bytes() == b"keep me"

    # finished images were not recomputed; the rest were; nothing is missing
    assert {p.name: p.stat().st_mtime_ns for p in _records(victim) if p.name in stamps} == stamps
    assert len(_records(victim)) == len(_records(reference)) == 12
    for name in COMPARED:
        assert (victim / name).read_bytes() == (reference / name).read_bytes(), name
    manifest = json.loads((victim / "manifest.json").read_text())
    assert manifest["images"] == {"split": 12, "done": 12, "failed": 0}
    assert [i["computed"] for i in manifest["invocations"]] == [12 - len(done_before)]
    # same seed on CPU: the two independently trained classifiers are identical
    a = torch.load(victim / "classifier.pt", weights_only=True)["state_dict"]
    b = torch.load(reference / "classifier.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for rec in _records(victim):  # and so is every per-image record, up to its timing
        mine, theirs = (json.loads((f / "records" / rec.name).read_text()) for f in (victim, reference))
        mine.pop("seconds"), theirs.pop("seconds")
        assert mine == theirs, rec.name
    masks = sorted(p.relative_to(victim) for p in (victim / "masks").rglob("*.png"))
    assert masks == sorted(p.relative_to(reference) for p in (reference / "masks").rglob("*.png"))
    for rel in masks:
        np.testing.assert_array_equal(read_png(victim / rel), read_png(reference / rel))
    _visible_files_are_complete(victim)
