"""The ``samprompt`` command line: commands, flags, exit codes and messages (on the bundled sample)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from samprompt.cli import main
from samprompt.runner.presets import sample_data_path

SAMPLE = sample_data_path()
FAST = ["--set", "classifier.train.arch=tiny_cnn", "--set", "classifier.train.epochs=1",
        "--set", "classifier.train.preprocessing.input_size=32", "--set", "device=cpu"]




def _small_data(root: Path, per_class: int = 3) -> Path:
    for cls in ("benign", "malignant", "normal"):
        (root / cls).mkdir(parents=True)
        for img in sorted((SAMPLE / cls).glob("*).png"))[:per_class]:
            shutil.copy(img, root / cls / img.name)
            shutil.copy(img.with_name(img.stem + "_mask.png"), root / cls)
    return root


def _config(tmp_path: Path, data: Path, **extra: Any) -> Path:
    cfg = {"name": "cli", "data": {"path": str(data)}, "split": {"fractions": [0.5, 0.0, 0.5], "use": "all"},
           "classifier": {"train": {"arch": "tiny_cnn", "epochs": 1, "preprocessing": {"input_size": 32}}},
           "device": "cpu", "pipeline": {"prompts": [{"name": "box"}, {"name": "center_point"}]},
           "report": {"panels": 2, "gallery": 1, "thumb": 48}, **extra}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(cfg))
    return path


def test_version_help_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("samprompt ")
    assert main([]) == 2
    assert main(["run", "--bogus"]) == 2
    assert main(["run"]) == 2
    assert "give a CONFIG file" in capsys.readouterr().err


def test_list_and_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("tiny_cnn", "gradcam", "threshold", "box_center_point", "classical", "sam"):
        assert f"  {name}\n" in out
    assert main(["list", "segmenters"]) == 0
    assert capsys.readouterr().out.startswith("segmenters:")
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "paper:" in out and "demo:" in out and "resnet34-binary-gradcam" in out
    assert main(["presets", "--show", "paper"]) == 0
    assert len(json.loads(capsys.readouterr().out)["runs"]) == 3


def test_audit_and_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--no-progress", "audit", str(SAMPLE), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_samples"] == 60
    assert main(["--no-progress", "audit", str(SAMPLE)]) == 0
    assert "normal" in capsys.readouterr().out
    out = tmp_path / "split.json"
    assert main(["--no-progress", "split", str(SAMPLE), "--seed", "3", "--out", str(out)]) == 0
    from samprompt.data import Split, open_dataset

    sp = Split.load(out, open_dataset(SAMPLE))
    assert sp.seed == 3 and len(sp.train) + len(sp.val) + len(sp.test) == 60
    assert main(["audit", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_run_config_limit_resume_and_changed_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _small_data(tmp_path / "data")
    cfg = _config(tmp_path, data)
    out = tmp_path / "run"
    assert main(["--no-progress", "run", str(cfg), "--out", str(out), "--limit", "2"]) == 0
    text = capsys.readouterr().out
    assert "2 of 9 finished" in text and "rerun the same command" in text
    assert main(["--no-progress", "run", str(cfg), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "9 of 9 finished (7 computed now)" in text and f"report:  {out / 'report.html'}" in text
    # another split of the same run: its images' records are reused (nothing upstream changed)
    assert main(["--no-progress", "run", str(cfg), "--out", str(out), "--split", "test"]) == 0
    assert "(0 computed now)" in capsys.readouterr().out
    # another seed makes another split and classifier: refused without --force
    assert main(["--no-progress", "run", str(cfg), "--out", str(out), "--seed", "5"]) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "seed" in err and "--force" in err and "Traceback" not in err


def test_run_errors_exit_2_with_the_location(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, SAMPLE, pipelin={})
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "pipelin" in err and "Traceback" not in err
    cfg = _config(tmp_path, SAMPLE, pipeline={"segmenter": {"name": "sam", "params": {"model_type": "vit_l"}}})
    assert main(["--no-progress", "run", str(cfg), "--out", str(tmp_path / "r")]) == 2
    assert "checkpoint" in capsys.readouterr().err


def test_run_with_failures_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _small_data(tmp_path / "data", per_class=2)
    (data / "normal" / "broken.png").write_bytes(b"\x89PNG broken")
    cfg = _config(tmp_path, data)
    assert main(["--no-progress", "run", str(cfg), "--out", str(tmp_path / "run")]) == 1
    captured = capsys.readouterr()
    assert "1 image(s) failed" in captured.err and "normal/broken: stage load" in captured.err
    assert (tmp_path / "run" / "report.html").exists()


def test_preset_and_demo_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _small_data(tmp_path / "data", per_class=2)
    args = ["--no-progress", "run", "--preset", "paper", str(data), "--out", str(tmp_path / "paper"),
            "--limit", "1", *FAST, "--set", "classifier.train.head=fc"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for name in ("resnet18-gradcam", "resnet18-gradcampp", "resnet34-binary-gradcam"):
        assert (tmp_path / "paper" / name / "summary.md").exists() and f"== paper/{name}" in out
    assert not (tmp_path / "paper" / "resnet18-gradcampp" / "classifier.pt").exists()  # reuses the ResNet18
    assert main(["--no-progress", "demo", "--out", str(tmp_path / "demo"), *FAST[:6], "--set", "limit=3"]) == 0
    out = capsys.readouterr().out
    assert "demo finished in" in out and "report.html" in out


def test_train_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _small_data(tmp_path / "data", per_class=4)
    out = tmp_path / "clf"
    args = ["--no-progress", "train", str(data), "--out", str(out), "--arch", "tiny_cnn", "--epochs", "1",
            "--input-size", "32", "--device", "cpu", "--set", "batch_size=4"]
    assert main(args) == 0
    assert (out / "classifier.pt").exists() and "checkpoint:" in capsys.readouterr().out


def test_closed_stdout_pipe_is_quiet() -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        f"{sys.executable} -m samprompt.cli list | head -1",
        shell=True, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.stdout.strip() == "classifiers:"
    assert "Broken pipe" not in proc.stderr and "error" not in proc.stderr
