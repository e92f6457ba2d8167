"""Checks on class labels: unusable labels, labels differing only by case, labels a classifier lacks.

Every reader (class folders, CSV manifests, and any later one) runs :func:`label_problem` on each label
and :func:`check_case_variants` on the set of labels, so ``Benign`` next to ``benign`` or a label holding a
control character is a clear :class:`~samprompt.errors.DataError` instead of a silent extra class.
:func:`check_labels_against_classes` compares a data set's labels with the labels a classifier (its task)
accepts, before any work starts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike

from samprompt.errors import DataError

__all__ = ["case_variants", "check_case_variants", "check_labels_against_classes", "label_problem"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def label_problem(label: str) -> str | None:
    """Why ``label`` cannot be a class name, or ``None`` when it can.

    A label must be non-empty, hold no control character (``\\t``, ``\\n``, ``\\x1b``, ...) and have no
    leading or trailing white space.
    """
    if not label:
        return "empty label"
    bad = _CONTROL.search(label)
    if bad:
        return f"label {label!r} contains a control character ({bad.group()!r}); rename it"
    if label != label.strip():
        return f"label {label!r} has leading or trailing white space; remove it"
    return None


def case_variants(labels: Iterable[str]) -> list[list[str]]:
    """Groups (sorted, each of two or more) of distinct labels equal up to case (``Benign``, ``benign``)."""
    groups: dict[str, set[str]] = {}
    for lab in labels:
        groups.setdefault(lab.casefold(), set()).add(lab)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def check_case_variants(examples: Mapping[str, str], where: str) -> None:
    """Raise if two labels differ only by case.

    Args:
        examples: Label → where it occurs first (a file or ``line N``), for the message.
        where: The data set (folder or CSV), for the message.

    Raises:
        DataError: Naming the labels and where each occurs.
    """
    groups = case_variants(examples)
    if groups:
        shown = " and ".join(f"{lab!r} ({examples[lab]})" for lab in groups[0])
        raise DataError(
            f"{where}: labels {shown} differ only by case, so they would become separate classes; "
            "use one spelling (labels are case-sensitive)"
        )


def _near(label: str, known: Sequence[str]) -> str:
    same = [k for k in known if k.casefold() == label.casefold()]
    return f" (did you mean {same[0]!r}? labels are case-sensitive)" if same else ""


def check_labels_against_classes(
    samples: Iterable[tuple[str, str | PathLike[str]]], known: Iterable[str], where: str
) -> None:
    """Raise unless every label is one the classifier knows.

    Call it before any image is processed, e.g. with a data set and a checkpoint's task::

        task = info.task  # a ClassifierInfo's TaskSpec
        check_labels_against_classes(((s.label, s.image_path) for s in dataset),
                                     task.mapping or task.class_names, f"classifier checkpoint {path!r}")

    Args:
        samples: ``(label, file)`` per sample (the file is quoted as an example).
        known: The labels accepted (a task's mapping keys, or its class names for the identity task).
        where: What the labels are checked against, for the message (e.g. the checkpoint's path).

    Raises:
        DataError: Listing every unknown label with an example file and how many samples carry it, the
            accepted labels, and a case-insensitive match when there is one (``Benign`` vs ``benign``).
    """
    accepted = sorted(set(known))
    unknown: dict[str, tuple[str, int]] = {}
    for label, path in samples:
        if label in accepted:
            continue
        first, n = unknown.get(label, (str(path), 0))
        unknown[label] = (first, n + 1)
    if not unknown:
        return
    parts = [f"{lab!r}{_near(lab, accepted)} on {n} sample(s), e.g. {first!r}"
             for lab, (first, n) in sorted(unknown.items())]
    raise DataError(
        f"the data hold label(s) that {where} does not know: {'; '.join(parts)}. It knows {accepted}. "
        "Rename the labels (class folders or the CSV's label column), restrict the data with data.classes, "
        "or use a classifier trained on these labels"
    )
