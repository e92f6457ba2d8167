"""argparse glue for a ``samprompt train`` command: flags → :class:`TrainConfig` → ``train_from_paths``.

The CLI owner wires it like this (nothing here prints)::

    sub = subparsers.add_parser("train", help="train a classifier")
    add_train_arguments(sub)
    ...
    args = parser.parse_args()
    config = train_config_from_args(args)
    result = train_from_paths(args.data, args.split, args.out, config, task=args.task,
                              progress=args.progress)
    for name, report in result.reports.items():
        print(report.format_table(name))

Precedence: defaults < ``--config`` file (JSON, or YAML with PyYAML) < explicit flags.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from samprompt.classifiers.train import TrainConfig
from samprompt.errors import ConfigError

__all__ = ["add_train_arguments", "train_config_from_args"]

#: Flags that map one-to-one onto TrainConfig fields (dest → field).
_DIRECT = ("arch", "head", "dropout", "weights", "epochs", "batch_size", "lr", "weight_decay", "patience",
           "seed", "device", "num_workers")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` flags to ``parser`` (every config flag defaults to "not given")."""
    parser.add_argument("--data", type=Path, required=True, help="class-folder root or CSV manifest")
    parser.add_argument("--split", type=Path, default=None,
                        help="split JSON (default: make a leak-free split and save it to OUT/split.json)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (classifier.pt, reports)")
    parser.add_argument("--task", choices=["multiclass", "binary"], default="multiclass",
                        help="multiclass = one output per class; binary = normal vs. the rest")
    parser.add_argument("--config", type=Path, default=None,
                        help="TrainConfig as JSON/YAML; flags override it")
    s = argparse.SUPPRESS
    parser.add_argument("--arch", default=s,
                        help="resnet18 | resnet34 | resnet50 | tiny_cnn | torchvision:<name>")
    parser.add_argument("--head", choices=["fc", "paper"], default=s)
    parser.add_argument("--dropout", type=float, default=s)
    parser.add_argument("--weights", default=s,
                        help="local state-dict file or cached torchvision weights name")
    parser.add_argument("--epochs", type=int, default=s)
    parser.add_argument("--batch-size", type=int, default=s)
    parser.add_argument("--lr", type=float, default=s)
    parser.add_argument("--weight-decay", type=float, default=s)
    parser.add_argument("--class-weights", default=s, help="auto | none | comma-separated list")
    parser.add_argument("--input-size", type=int, nargs="+", default=s, help="S or H W")
    parser.add_argument("--mode", choices=["resize", "letterbox"], default=s)
    parser.add_argument("--patience", type=int, default=s, help="early-stopping patience (0 = never)")
    parser.add_argument("--seed", type=int, default=s)
    parser.add_argument("--deterministic", action="store_true", default=s)
    parser.add_argument("--device", default=s, help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--num-workers", type=int, default=s)
    parser.add_argument("--no-augment", action="store_true", default=s, help="switch augmentation off")
    parser.add_argument("--progress", action="store_true", help="show progress bars")


def _read_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--config {str(path)!r} cannot be read: {exc}") from exc
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError as exc:
                raise ConfigError(
                    f"--config {str(path)!r}: YAML needs PyYAML (pip install samprompt[yaml])"
                ) from exc
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except ConfigError:
        raise
    except Exception as exc:  # any parser error of JSON/YAML
        raise ConfigError(f"--config {str(path)!r} is not valid: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("train"), dict):
        data = data["train"]
    if not isinstance(data, dict):
        raise ConfigError(f"--config {str(path)!r} must hold a mapping of TrainConfig fields")
    return data


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build the :class:`TrainConfig` from parsed ``train`` flags (and ``--config``).

    Raises:
        ConfigError: Unreadable config file or invalid values (location ``train.<field>``).
    """
    ns = vars(args)
    data: dict[str, Any] = _read_config(ns["config"]) if ns.get("config") else {}
    for key in _DIRECT:
        if key in ns:
            data[key] = ns[key]
    if "patience" in ns and ns["patience"] == 0:
        data["patience"] = None
    if "deterministic" in ns:
        data["deterministic"] = True
    if "class_weights" in ns:
        text = str(ns["class_weights"]).strip().lower()
        if text in ("auto", "none"):
            data["class_weights"] = None if text == "none" else "auto"
        else:
            try:
                data["class_weights"] = [float(v) for v in text.split(",")]
            except ValueError as exc:
                raise ConfigError(f"--class-weights: expected auto, none or numbers, got {text!r}") from exc
    pre = dict(data.get("preprocessing") or {})
    if "input_size" in ns:
        size = ns["input_size"]
        pre["input_size"] = size[0] if len(size) == 1 else tuple(size[:2])
    if "mode" in ns:
        pre["mode"] = ns["mode"]
    if pre:
        data["preprocessing"] = pre
    if "no_augment" in ns:
        data["augmentation"] = {**dict(data.get("augmentation") or {}), "enabled": False}
    return TrainConfig.parse(data)
