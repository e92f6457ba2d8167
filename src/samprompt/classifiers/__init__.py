"""Image-level classifiers: builders, training, checkpoints and evaluation.

* :data:`CLASSIFIERS` / :func:`build_classifier` — ResNet18/34/50, ``tiny_cnn``, ``torchvision:<name>``;
* :class:`TaskSpec` — output classes and the data-set label mapping (multi-class or binary);
* :func:`train_classifier` / :class:`TrainConfig` — training with the paper's recipe, best by macro-F1;
* :func:`train_from_paths` — the same from a data-set folder/manifest and a split file (CLI entry);
* :func:`save_classifier` / :func:`load_classifier` — one safe (``weights_only``) checkpoint file;
* :func:`evaluate_classifier` / :class:`ClassificationReport` — accuracy, per-class P/R/F1, confusion.
"""

from __future__ import annotations

from samprompt.classifiers.builders import CLASSIFIERS, TinyCNN, build_classifier, make_head, replace_head
from samprompt.classifiers.checkpoint import ClassifierInfo, load_classifier, read_info, save_classifier
from samprompt.classifiers.cli_args import add_train_arguments, train_config_from_args
from samprompt.classifiers.evaluate import (
    ClassificationReport,
    classification_report,
    confusion_matrix,
    evaluate_classifier,
    macro_f1,
    predict_logits,
)
from samprompt.classifiers.inputs import AugmentConfig, Example, ExampleDataset, examples_from_dataset
from samprompt.classifiers.run import train_from_paths
from samprompt.classifiers.task import TaskSpec
from samprompt.classifiers.train import EpochStats, TrainConfig, TrainResult, train_classifier

__all__ = [
    "CLASSIFIERS",
    "AugmentConfig",
    "ClassificationReport",
    "ClassifierInfo",
    "EpochStats",
    "Example",
    "ExampleDataset",
    "TaskSpec",
    "TinyCNN",
    "TrainConfig",
    "TrainResult",
    "add_train_arguments",
    "build_classifier",
    "classification_report",
    "confusion_matrix",
    "evaluate_classifier",
    "examples_from_dataset",
    "load_classifier",
    "macro_f1",
    "make_head",
    "predict_logits",
    "read_info",
    "replace_head",
    "save_classifier",
    "train_classifier",
    "train_config_from_args",
    "train_from_paths",
]
