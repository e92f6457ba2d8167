"""The edges of a run: one run per folder (lock), interruptions while the report is written, file modes,
errors before any work, and the run's last message."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from reliability_helpers import make_dataset, png_bytes, run_config, save_tiny_checkpoint

from samprompt.cli import main
from samprompt.errors import ConfigError
from samprompt.runner.lock import LOCK_NAME, lock_owner, run_lock


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("end")
    return make_dataset(tmp / "data", per_class=2), save_tiny_checkpoint(tmp / "clf.pt")


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--no-progress", *argv])
    return code, out.getvalue(), err.getvalue()


def _config(tmp: Path, data: Path, ckpt: Path | None, **extra: Any) -> Path:
    path = tmp / "run.json"
    path.write_text(json.dumps(run_config(data, checkpoint=ckpt, **extra)))
    return path


def _complete(out: Path, n_images: int) -> None:
    """Every run-level output is there and consistent with ``n_images`` finished images."""
    names = json.loads((out / "names.json").read_text())
    assert len(names) == n_images == len(list((out / "records").glob("*.json")))
    with (out / "metrics.csv").open(encoding="utf-8", newline="") as f:
        assert {r["image"] for r in csv.DictReader(f)} == set(names)
    assert (out / "report.html").read_text(encoding="utf-8").rstrip().endswith("</html>")
    assert "finished" in (out / "summary.md").read_text(encoding="utf-8")
    assert not list(out.rglob(".*.tmp")) and not (out / LOCK_NAME).exists()


# ---------------------------------------------------------------------------------------------- the lock
def test_a_second_run_on_a_busy_folder_is_refused(small: tuple[Path, Path], tmp_path: Path) -> None:
    data, ckpt = small
    out = tmp_path / "run"
    with run_lock(out) as path:  # this process is "the first run"
        assert path == out / LOCK_NAME
        owner = lock_owner(out)
        assert owner is not None and owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        code, _, err = _cli("run", str(_config(tmp_path, data, ckpt)), "--out", str(out))
        assert code == 2
        assert f"run folder {str(out)!r} is in use by another samprompt run (pid {os.getpid()}" in err
        assert "wait for it to finish or choose another --out" in err and "Traceback" not in err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # the refused run wrote nothing
    assert not path.exists()
    assert _cli("run", str(_config(tmp_path, data, ckpt)), "--out", str(out))[0] == 0


_HOLDER = """
import json, os, socket, sys
stat = open(f"/proc/{os.getpid()}/stat").read()
start = stat[stat.rfind(")") + 2:].split()[19]
me = {"pid": os.getpid(), "host": socket.gethostname(), "process_start": start, "started": "now"}
os.makedirs(sys.argv[1], exist_ok=True)
with open(os.path.join(sys.argv[1], ".samprompt.lock"), "x") as f:
    json.dump(me, f)
print("held", flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_two_processes_one_folder(small: tuple[Path, Path], tmp_path: Path) -> None:
    """Another live process holds the folder's lock (written in the lock's format by a bare Python process,
    which starts in a fraction of samprompt's import time): the run is refused. Killed with SIGKILL, its
    lock stays behind, is found stale, and the run takes the folder over."""
    data, ckpt = small
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code, _, err = _cli("run", str(_config(tmp_path, data, ckpt)), "--out", str(out))
        assert code == 2 and f"is in use by another samprompt run (pid {holder.pid} on" in err
        holder.kill()
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert lock_owner(out)["pid"] == holder.pid  # type: ignore[index]  # SIGKILL: the lock stays behind
    code, stdout, _ = _cli("run", str(_config(tmp_path, data, ckpt)), "--out", str(out))
    assert code == 0 and "complete: all 6 images finished" in stdout
    _complete(out, 6)


def test_a_lock_of_a_dead_process_is_taken_over(small: tuple[Path, Path], tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    data, ckpt = small
    out = tmp_path / "run"
    out.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead = int(gone.stdout)
    (out / LOCK_NAME).write_text(json.dumps({"pid": dead, "host": socket.gethostname(), "started": "earlier"}))
    with caplog.at_level(logging.WARNING, logger="samprompt.runner.lock"):
        code, _, _ = _cli("run", str(_config(tmp_path, data, ckpt)), "--out", str(out))
    assert code == 0
    assert any(f"process {dead} no longer exists" in r.getMessage() for r in caplog.records)
    _complete(out, 6)


@pytest.mark.parametrize("content", ["{not json", json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                             "process_start": "-1"})],
                         ids=["unreadable", "pid reused"])
def test_stale_locks_never_leave_a_folder_stuck(tmp_path: Path, content: str) -> None:
    (tmp_path / LOCK_NAME).write_text(content)
    with run_lock(tmp_path) as path:
        assert path is not None and lock_owner(tmp_path)["pid"] == os.getpid()  # type: ignore[index]
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_lock_from_another_host_is_refused_with_a_way_out(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere.invalid", "started": "t"}))
    with pytest.raises(ConfigError, match=r"pid 1 on 'elsewhere.invalid'.*delete '.*\.samprompt\.lock'"), \
            run_lock(tmp_path):
        pass
    assert (tmp_path / LOCK_NAME).exists()  # not ours to remove


def test_lock_disabled_and_released_on_interrupt(tmp_path: Path) -> None:
    with run_lock(tmp_path, enabled=False) as path:
        assert path is None and not (tmp_path / LOCK_NAME).exists()
    with pytest.raises(KeyboardInterrupt), run_lock(tmp_path):
        raise KeyboardInterrupt
    assert not (tmp_path / LOCK_NAME).exists()


# ---------------------------------------------------------------------------------------------- interruptions
def _stop_in_report(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    from samprompt.report import html

    real = html.render_report

    def interrupted(*a: Any, **k: Any) -> str:
        k["progress"] = None
        real(*a, **k)  # the work is done, then the interruption arrives before the file is written
        if how == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        raise KeyboardInterrupt

    monkeypatch.setattr(html, "render_report", interrupted)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_interruption_while_the_report_is_written_leaves_the_folder_resumable(
        how: str, small: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, ckpt = small
    cfg, out = _config(tmp_path, data, ckpt), tmp_path / "run"
    with monkeypatch.context() as mp:
        _stop_in_report(mp, how)
        code, _, err = _cli("run", str(cfg), "--out", str(out))
    assert code == 130 and "interrupted; rerun the same command to resume" in err
    assert not (out / "report.html").exists() and not (out / LOCK_NAME).exists()
    assert not list(out.rglob(".*.tmp"))
    assert len(list((out / "records").glob("*.json"))) == 6
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the run's handler is gone again
    code, stdout, _ = _cli("run", str(cfg), "--out", str(out))
    assert code == 0 and "images: 6 of 6 finished (0 computed now)" in stdout
    _complete(out, 6)


# ---------------------------------------------------------------------------------------------- file modes
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_run_outputs_honour_the_umask(umask: int, small: tuple[Path, Path], tmp_path: Path) -> None:
    data, ckpt = small
    cfg, out = _config(tmp_path, data, ckpt), tmp_path / "run"
    old = os.umask(umask)
    try:
        assert _cli("run", str(cfg), "--out", str(out))[0] == 0
    finally:
        os.umask(old)
    files = [p for p in out.rglob("*") if p.is_file()]
    folders = [out, *(p for p in out.rglob("*") if p.is_dir())]
    assert len(files) > 20 and len(folders) > 5
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(0o666 & ~umask)}
    assert {oct(p.stat().st_mode & 0o777) for p in folders} == {oct(0o777 & ~umask)}


def test_a_trained_classifier_file_honours_the_umask(small: tuple[Path, Path], tmp_path: Path) -> None:
    from samprompt.classifiers import save_classifier
    from samprompt.classifiers.checkpoint import load_classifier

    _, ckpt = small
    model, info = load_classifier(ckpt)
    old = os.umask(0o022)
    try:
        path = save_classifier(tmp_path / "c.pt", model, info)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


# ---------------------------------------------------------------------------------------------- before any work
def test_a_data_error_leaves_no_run_folder(small: tuple[Path, Path], tmp_path: Path) -> None:
    _, ckpt = small
    data = make_dataset(tmp_path / "data", per_class=1)
    (data / "Benign").mkdir()
    (data / "Benign" / "x.png").write_bytes(png_bytes(np.zeros((8, 8), np.uint8)))
    out = tmp_path / "run"
    code, _, err = _cli("run", str(_config(tmp_path, data, ckpt)), "--out", str(out))
    assert code == 2 and "differ only by case" in err and "'Benign'" in err
    assert not out.exists()


def test_labels_a_checkpoint_lacks_are_refused_before_any_work(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", per_class=1)
    ckpt = save_tiny_checkpoint(tmp_path / "clf.pt", class_names=("Benign", "malignant", "normal"))
    out = tmp_path / "run"
    code, stdout, err = _cli("run", str(_config(tmp_path, data, ckpt)), "--out", str(out))
    assert code == 2 and not stdout
    assert f"classifier checkpoint {str(ckpt)!r} does not know" in err
    assert "'benign' (did you mean 'Benign'? labels are case-sensitive) on 1 sample(s)" in err
    assert str(data / "benign" / "benign (1).png") in err
    assert not out.exists()


def test_an_error_after_setup_removes_the_folder_it_made(small: tuple[Path, Path], tmp_path: Path) -> None:
    data, ckpt = small
    out = tmp_path / "run"
    cfg = _config(tmp_path, data, ckpt, target=["no such class"])
    code, _, err = _cli("run", str(cfg), "--out", str(out))
    assert code == 2 and "no such class" in err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- last message
def test_the_last_message_tells_permanent_failures_from_unfinished_work(small: tuple[Path, Path],
                                                                        tmp_path: Path) -> None:
    _, ckpt = small
    data = tmp_path / "data"
    make_dataset(data, per_class=2)
    (data / "normal" / "zz broken.png").write_bytes(b"not an image")  # last in data-set order
    cfg, out = _config(tmp_path, data, ckpt), tmp_path / "run"
    code, stdout, _ = _cli("run", str(cfg), "--out", str(out), "--limit", "3")
    assert code == 0
    assert stdout.rstrip().splitlines()[-1] == "incomplete: 4 image(s) not finished yet: rerun the same command to " \
                                               "continue"
    code, stdout, err = _cli("run", str(cfg), "--out", str(out))
    assert code == 1 and "broken" in err
    last = stdout.rstrip().splitlines()[-1]
    assert last.startswith("complete: 6 of 7 images finished, 1 failed permanently (see failures.jsonl; a rerun")
    failure = json.loads((out / "failures.jsonl").read_text())
    assert failure["stage"] == "load" and failure["permanent"] is True
    code, stdout, _ = _cli("run", str(cfg), "--out", str(out))  # the advice holds: a rerun changes nothing
    assert code == 1 and stdout.rstrip().splitlines()[-1] == last


def test_a_write_failure_is_not_permanent(small: tuple[Path, Path], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import samprompt.runner.run as run_mod

    data, ckpt = small
    cfg, out = _config(tmp_path, data, ckpt), tmp_path / "run"
    real = run_mod.commit_image
    calls = {"n": 0}

    def flaky(outputs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(outputs)

    monkeypatch.setattr(run_mod, "commit_image", flaky)
    code, stdout, _ = _cli("run", str(cfg), "--out", str(out))
    assert code == 1
    assert stdout.rstrip().splitlines()[-1] == (
        "incomplete: 1 image(s) not finished yet (1 failed for a reason a rerun may not meet; see failures.jsonl): "
        "rerun the same command to continue")
    monkeypatch.setattr(run_mod, "commit_image", real)
    code, stdout, _ = _cli("run", str(cfg), "--out", str(out))
    assert code == 0 and stdout.rstrip().splitlines()[-1] == "complete: all 6 images finished"


# ---------------------------------------------------------------------------------------------- preset banner
def test_the_demo_banner_names_the_bundled_sample_only_for_the_bundled_sample(tmp_path: Path) -> None:
    from samprompt.runner.presets import preset, sample_data_path

    (bundled,) = preset("demo")
    assert bundled.data["description"].startswith("Demo on the bundled 60-image BUSI sample:")
    (mine,) = preset("demo", tmp_path)
    assert mine.data["description"].startswith(f"Demo on your data ({tmp_path.absolute()}):")
    (moved,) = preset("demo", overrides=[f"data.path={json.dumps(str(tmp_path))}"])
    assert "bundled" not in moved.data["description"]
    (again,) = preset("demo", sample_data_path() / ".." / "busi")
    assert "bundled 60-image BUSI sample" in again.data["description"]
