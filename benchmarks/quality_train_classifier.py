"""Train the from-scratch classifier used by the quality benchmarks (no pretrained weights anywhere).

ResNet18, 3 classes (benign / malignant / normal), whole image resized to 128 x 128, samprompt's default
augmentation, AdamW lr 1e-3, weight decay 1e-2, cosine, batch 32, inverse-frequency class weights, best
epoch by validation macro-F1 (samprompt split seed 0: train for fitting, val for the epoch choice).

    .venv/bin/python benchmarks/quality_train_classifier.py [--epochs 15] [--size 128] [--threads 1]

Writes ``$QUALITY_CACHE/clf_resnet18_128.pt`` (default /tmp/qcache) and prints val/test accuracy.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from quality_common import CACHE, load_split


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from samprompt.classifiers.inputs import examples_from_dataset
    from samprompt.classifiers.task import TaskSpec
    from samprompt.classifiers.train import TrainConfig, train_classifier
    from samprompt.preprocess import Preprocessing

    ds, split = load_split()
    task = TaskSpec(class_names=("benign", "malignant", "normal"))
    cfg = TrainConfig(arch="resnet18", epochs=args.epochs, batch_size=32, lr=1e-3, weight_decay=1e-2,
                      preprocessing=Preprocessing(input_size=args.size), patience=10, device="cpu", seed=0)
    out = CACHE / f"clf_resnet18_{args.size}.pt"
    t0 = time.time()
    res = train_classifier(examples_from_dataset(ds, split.train), examples_from_dataset(ds, split.val),
                           task=task, config=cfg, checkpoint=out,
                           callback=lambda s: print(s, f"{time.time() - t0:.0f}s", flush=True))
    print("best", getattr(res, "best_epoch", None), "saved", out, flush=True)


if __name__ == "__main__":
    main()
