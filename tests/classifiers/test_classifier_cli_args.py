"""argparse glue of the train command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from samprompt.classifiers.cli_args import add_train_arguments, train_config_from_args
from samprompt.errors import ConfigError


def _parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_train_arguments(p)
    return p.parse_args(["--data", "d", "--out", "o", *argv])


def test_defaults_are_the_train_config_defaults() -> None:
    args = _parse()
    assert args.task == "multiclass" and args.split is None
    cfg = train_config_from_args(args)
    assert cfg.arch == "resnet18" and cfg.augmentation.enabled and cfg.patience == 10


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"train": {"arch": "resnet34", "epochs": 3, "lr": 0.01}}))
    cfg = train_config_from_args(_parse(
        "--config", str(path), "--epochs", "5", "--input-size", "96", "128", "--mode", "letterbox",
        "--class-weights", "1,2", "--patience", "0", "--no-augment", "--deterministic", "--head", "paper",
    ))
    assert (cfg.arch, cfg.epochs, cfg.lr, cfg.head) == ("resnet34", 5, 0.01, "paper")
    assert cfg.preprocessing.input_size == (96, 128) and cfg.preprocessing.mode == "letterbox"
    assert cfg.class_weights == [1.0, 2.0] and cfg.patience is None
    assert not cfg.augmentation.enabled and cfg.deterministic


def test_bad_values_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.lr"):
        train_config_from_args(_parse("--lr", "-1"))
    with pytest.raises(ConfigError, match="class-weights"):
        train_config_from_args(_parse("--class-weights", "a,b"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        train_config_from_args(_parse("--config", str(bad)))
