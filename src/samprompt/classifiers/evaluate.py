"""Classification metrics (numpy only) and classifier evaluation — the paper's tables 1 and 6.

Conventions: the confusion matrix ``C`` is (K, K) with ``C[true, predicted]`` counts. Per class,
precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2PR / (P + R); a ratio whose denominator is 0
is 0 (as scikit-learn's ``zero_division=0``). Macro averages are the unweighted mean over ALL ``K``
classes, including classes absent from the evaluated set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from samprompt.classifiers.checkpoint import ClassifierInfo
from samprompt.classifiers.inputs import Example, ExampleDataset, ImageLike, class_targets
from samprompt.errors import DataError
from samprompt.preprocess import Preprocessing

__all__ = [
    "ClassificationReport",
    "classification_report",
    "confusion_matrix",
    "evaluate_classifier",
    "macro_f1",
    "predict_logits",
]


def _labels(y: ArrayLike, num_classes: int, name: str) -> NDArray[np.int64]:
    a = np.asarray(y)
    if a.ndim != 1:
        raise DataError(f"{name} must be one-dimensional, got shape {a.shape}")
    if a.size and (not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= num_classes):
        raise DataError(
            f"{name} must hold class indices in [0, {num_classes}), got {a.dtype} {a.min()}..{a.max()}"
        )
    return a.astype(np.int64, copy=False)


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> NDArray[np.int64]:
    """(K, K) int64 counts, ``C[true, predicted]``.

    Raises:
        DataError: If the arrays differ in length or hold values outside ``[0, num_classes)``.
    """
    t, p = _labels(y_true, num_classes, "y_true"), _labels(y_pred, num_classes, "y_pred")
    if t.shape != p.shape:
        raise DataError(f"y_true has {t.size} entries but y_pred has {p.size}")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _ratio(num: NDArray[np.float64], den: NDArray[np.float64]) -> NDArray[np.float64]:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


@dataclass(frozen=True, eq=False)
class ClassificationReport:
    """Per-class and overall classification metrics.

    Attributes:
        class_names: Class names in index order.
        confusion: (K, K) int64, ``confusion[true, predicted]``.
    """

    class_names: tuple[str, ...]
    confusion: NDArray[np.int64]

    @classmethod
    def from_predictions(
        cls, y_true: ArrayLike, y_pred: ArrayLike, class_names: Sequence[str]
    ) -> ClassificationReport:
        """Build a report from true and predicted class indices (each (N,))."""
        names = tuple(class_names)
        return cls(names, confusion_matrix(y_true, y_pred, len(names)))

    @property
    def n(self) -> int:
        """Number of evaluated samples."""
        return int(self.confusion.sum())

    @property
    def support(self) -> NDArray[np.int64]:
        """(K,) number of true samples per class."""
        counts: NDArray[np.int64] = self.confusion.sum(axis=1)
        return counts

    @property
    def precision(self) -> NDArray[np.float64]:
        """(K,) TP / (TP + FP), 0 when nothing was predicted as the class."""
        c = self.confusion.astype(np.float64)
        return _ratio(np.diag(c), c.sum(axis=0))

    @property
    def recall(self) -> NDArray[np.float64]:
        """(K,) TP / (TP + FN), 0 for a class without true samples."""
        c = self.confusion.astype(np.float64)
        return _ratio(np.diag(c), c.sum(axis=1))

    @property
    def f1(self) -> NDArray[np.float64]:
        """(K,) harmonic mean of precision and recall (0 when both are 0)."""
        p, r = self.precision, self.recall
        return _ratio(2 * p * r, p + r)

    @property
    def accuracy(self) -> float:
        """Fraction of correct predictions (0 for an empty report)."""
        return float(np.trace(self.confusion) / self.n) if self.n else 0.0

    @property
    def macro_f1(self) -> float:
        """Unweighted mean F1 over all classes."""
        return float(self.f1.mean())

    @property
    def macro_precision(self) -> float:
        """Unweighted mean precision over all classes."""
        return float(self.precision.mean())

    @property
    def macro_recall(self) -> float:
        """Unweighted mean recall over all classes."""
        return float(self.recall.mean())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict: overall numbers, ``per_class`` and the confusion matrix (lists)."""
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "macro_precision": self.macro_precision,
            "macro_recall": self.macro_recall,
            "macro_f1": self.macro_f1,
            "class_names": list(self.class_names),
            "per_class": {
                name: {
                    "precision": float(self.precision[k]),
                    "recall": float(self.recall[k]),
                    "f1": float(self.f1[k]),
                    "support": int(self.support[k]),
                }
                for k, name in enumerate(self.class_names)
            },
            "confusion": self.confusion.tolist(),
        }

    def format_table(self, title: str | None = None, digits: int = 3) -> str:
        """Markdown tables: per-class precision/recall/F1/support, macro row, accuracy, confusion matrix."""
        f = f"{{:.{digits}f}}"
        lines = [f"**{title}**", ""] if title else []
        lines += ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        for k, name in enumerate(self.class_names):
            lines.append(
                f"| {name} | {f.format(self.precision[k])} | {f.format(self.recall[k])} | "
                f"{f.format(self.f1[k])} | {int(self.support[k])} |"
            )
        lines.append(
            f"| macro avg | {f.format(self.macro_precision)} | {f.format(self.macro_recall)} | "
            f"{f.format(self.macro_f1)} | {self.n} |"
        )
        lines += ["", f"accuracy {f.format(self.accuracy)} (n = {self.n})", ""]
        lines.append("| true \\ predicted | " + " | ".join(self.class_names) + " |")
        lines.append("|---|" + "---:|" * len(self.class_names))
        for k, name in enumerate(self.class_names):
            lines.append(f"| {name} | " + " | ".join(str(int(v)) for v in self.confusion[k]) + " |")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"ClassificationReport(n={self.n}, accuracy={self.accuracy:.3f}, macro_f1={self.macro_f1:.3f})"


def classification_report(
    y_true: ArrayLike, y_pred: ArrayLike, class_names: Sequence[str]
) -> ClassificationReport:
    """Shortcut for :meth:`ClassificationReport.from_predictions`."""
    return ClassificationReport.from_predictions(y_true, y_pred, class_names)


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> float:
    """Macro-averaged F1 over ``num_classes`` classes (see the module docstring)."""
    names = tuple(str(k) for k in range(num_classes))
    return ClassificationReport(names, confusion_matrix(y_true, y_pred, num_classes)).macro_f1


def logits_of(output: Any) -> torch.Tensor:
    """The (B, K) logits of a model output (a tensor, or an object/tuple carrying them)."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits  # type: ignore[no-any-return]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"model returned {type(output).__name__}, expected a (B, K) logits tensor")


@torch.no_grad()
def run_loader(
    model: nn.Module,
    loader: DataLoader[tuple[torch.Tensor, int]],
    device: torch.device,
    loss_fn: nn.Module | None = None,
    progress: bool = False,
) -> tuple[NDArray[np.float32], NDArray[np.int64], float]:
    """Evaluate ``model`` (in eval mode; its mode is restored) over ``loader``.

    Returns:
        ``(logits (N, K) float32, targets (N,) int64, mean loss or nan)``.
    """
    was_training = model.training
    model.eval()
    logits, targets, total, n = [], [], 0.0, 0
    try:
        for x, y in tqdm(loader, desc="eval", leave=False, disable=not progress):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = logits_of(model(x)).float()
            if loss_fn is not None:
                total += float(loss_fn(out, y)) * len(y)
            n += len(y)
            logits.append(out.cpu().numpy())
            targets.append(y.cpu().numpy())
    finally:
        model.train(was_training)
    if not logits:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64), float("nan")
    return (np.concatenate(logits), np.concatenate(targets).astype(np.int64),
            total / n if loss_fn is not None and n else float("nan"))


def _device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def predict_logits(
    model: nn.Module,
    images: Sequence[ImageLike],
    preprocessing: Preprocessing,
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = False,
) -> NDArray[np.float32]:
    """(N, K) float32 logits of ``model`` (on its own device) for N images preprocessed as given."""
    ds = ExampleDataset(images, [0] * len(images), preprocessing, augmentation=None, cache=False)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    logits, _, _ = run_loader(model, loader, _device_of(model), progress=progress)
    return logits


def evaluate_classifier(
    model: nn.Module,
    info: ClassifierInfo,
    examples: Sequence[Example],
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = False,
) -> ClassificationReport:
    """Classify labelled examples and report the metrics.

    Args:
        model: Classifier (used on the device of its parameters; its train/eval mode is restored).
        info: Its metadata: ``info.preprocessing`` makes the inputs, ``info.task`` maps the labels.
        examples: ``(image, label)`` pairs (see :mod:`samprompt.classifiers.inputs`); use
            :func:`~samprompt.classifiers.inputs.examples_from_dataset` for a data set + split ids.
        batch_size: Images per forward pass.
        num_workers: DataLoader workers.
        progress: Show a tqdm bar.

    Raises:
        DataError: A label outside the task, an unreadable image, or no examples.
    """
    if len(examples) == 0:
        raise DataError("evaluate_classifier needs at least one example")
    targets = class_targets(examples, info.task)
    ds = ExampleDataset([e[0] for e in examples], targets, info.preprocessing, augmentation=None, cache=False)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    logits, y, _ = run_loader(model, loader, _device_of(model), progress=progress)
    return ClassificationReport.from_predictions(y, logits.argmax(axis=1), info.class_names)
