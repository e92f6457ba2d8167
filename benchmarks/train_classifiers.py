"""Benchmark: train the paper's two classifiers FROM SCRATCH on BUSI and print tables 1 and 6.

* ResNet-18, 3 classes (benign / malignant / normal) — the paper's table 1 setting;
* ResNet-34, binary (normal vs. abnormal = benign + malignant) — the paper's table 6 setting.

Both use the same leak-free split (``samprompt.data.make_split``: duplicate groups stay in one split,
conflicting-label duplicates go to train), made once with ``--seed`` and saved as ``<out>/split.json``
(or read from ``--split``). The paper initialised from ImageNet; samprompt never downloads weights, so
these runs start from random init unless ``--weights18/--weights34`` name local or cached weights.

Example (2 CPU cores, a few epochs at a reduced input size)::

    PYTHONPATH=src python benchmarks/train_classifiers.py --epochs 6 --input-size 160 --out runs/clf
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import cast

import torch

from samprompt.classifiers import TrainConfig, train_from_paths
from samprompt.classifiers.task import TaskPreset
from samprompt.classifiers.train import EpochStats
from samprompt.preprocess import Preprocessing

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "BUSI" / "Dataset_BUSI_with_GT"

#: Paper's F1 per class (ImageNet-initialised), for side-by-side printing.
PAPER_F1 = {
    "resnet18_multiclass": {"normal": 0.83, "benign": 0.88, "malignant": 0.77},
    "resnet34_binary": {"normal": 0.87, "abnormal": 0.97},
}


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BUSI class-folder root")
    p.add_argument("--split", type=Path, default=None, help="split JSON (default: make one, leak-free)")
    p.add_argument("--out", type=Path, default=Path("runs/train_classifiers"), help="output folder")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--mode", choices=["resize", "letterbox"], default="resize")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--head", choices=["fc", "paper"], default="paper")
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", nargs="+", default=list(PAPER_F1), choices=list(PAPER_F1), help="which runs")
    p.add_argument("--weights18", default=None, help="initial weights for ResNet-18 (local/cached only)")
    p.add_argument("--weights34", default=None, help="initial weights for ResNet-34 (local/cached only)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (1 is much faster than 2 on a busy 2-core machine)")
    p.add_argument("--progress", action="store_true", help="tqdm bars")
    return p.parse_args(argv)


def _paper_table(name: str, report: dict[str, object]) -> str:
    per = cast(dict[str, dict[str, float]], report["per_class"])
    rows = ["| class | F1 (ours) | F1 (paper, ImageNet init) |", "|---|---:|---:|"]
    for cls, ref in PAPER_F1[name].items():
        rows.append(f"| {cls} | {per[cls]['f1']:.3f} | {ref:.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code."""
    a = _args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    split = a.split
    if split is None:
        from samprompt.data.datasets import open_dataset
        from samprompt.data.splits import make_split

        t = time.perf_counter()
        ds = open_dataset(a.data)
        sp = make_split(ds, seed=a.seed)
        split = a.out / "split.json"
        sp.save(split)
        print(f"split made in {time.perf_counter() - t:.0f}s: {sp.summary(ds)}", flush=True)
    summary: dict[str, object] = {"args": {k: str(v) for k, v in vars(a).items()}, "torch": torch.__version__,
                                  "threads": torch.get_num_threads(), "runs": {}}
    for name in a.runs:
        arch, task = name.split("_")
        cfg = TrainConfig(
            arch=arch, head=a.head, dropout=a.dropout, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
            patience=a.patience, seed=a.seed, device=a.device, num_workers=a.num_workers,
            weights=a.weights18 if arch == "resnet18" else a.weights34,
            preprocessing=Preprocessing(input_size=a.input_size, mode=a.mode),
        )

        def show(s: EpochStats, name: str = name) -> None:
            print(f"[{name}] epoch {s.epoch}: train loss {s.train_loss:.4f}  val loss {s.val_loss:.4f}  "
                  f"val macro-F1 {s.val_macro_f1:.3f}  acc {s.val_accuracy:.3f}  ({s.seconds:.0f}s)",
                  flush=True)

        t = time.perf_counter()
        res = train_from_paths(
            a.data, split, a.out / name, cfg, task=cast(TaskPreset, task), progress=a.progress, callback=show
        )
        wall = time.perf_counter() - t
        print(f"\n## {name}: best epoch {res.best_epoch}/{len(res.history)}, "
              f"wall {wall:.0f}s, device {res.device}\n")
        entry: dict[str, object] = {
            "wall_s": wall, "best_epoch": res.best_epoch, "epochs_run": len(res.history),
            "checkpoint": str(res.checkpoint_path),
        }
        for split_name, rep in res.reports.items():
            print(rep.format_table(f"{name} — {split_name}") + "\n")
            entry[split_name] = rep.to_dict()
        if "test" in res.reports:
            print(_paper_table(name, res.reports["test"].to_dict()) + "\n", flush=True)
        summary["runs"][name] = entry  # type: ignore[index]
        (a.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(f"summary written to {a.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
