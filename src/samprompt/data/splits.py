"""Seeded, stratified, group-aware train / val / test splits, saved as JSON.

Samples that must not be separated form a *unit*: a union-find joins the members of each duplicate
group (from :func:`~samprompt.data.audit.audit_dataset`) and the samples sharing a ``group`` value
(e.g. a patient id). A unit always goes wholly to one split, so a picture and its copies never sit on
both sides of the train / test boundary.

Units are shuffled with the seed and placed largest first. A split's *shortfall* for a unit is
``sum over labels of unit_count[label] * (fraction * class_count[label] - held[label])``. A unit of
several samples goes to a split drawn with probability proportional to its positive shortfall (so a
big patient group is not always put in train, the emptiest split at the start); a single sample then
goes to the split with the largest shortfall, which fills every split to within one sample of its
fraction of every class when there are enough single samples (the usual case).
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from samprompt._io import atomic_write_text
from samprompt.data.audit import AuditReport, audit_dataset
from samprompt.data.datasets import Dataset
from samprompt.data.io import StrPath
from samprompt.errors import ConfigError, DataError

__all__ = ["SPLIT_NAMES", "Split", "make_split"]

logger = logging.getLogger(__name__)

SplitName = Literal["train", "val", "test"]
SPLIT_NAMES: tuple[SplitName, SplitName, SplitName] = ("train", "val", "test")
_FORMAT = "samprompt-split"
_VERSION = 1


@dataclass(frozen=True)
class Split:
    """A train / val / test partition of a data set's sample ids.

    Attributes:
        train: Ids in the training split (data-set order).
        val: Ids in the validation split.
        test: Ids in the test split.
        seed: The seed it was made with.
        fractions: ``(train, val, test)`` fractions asked for.
        fingerprint: :meth:`Dataset.fingerprint` of the data it was made on.
        conflicting: How duplicate groups with different labels were handled (``"train"``/``"drop"``).
        dropped: Ids left out of every split (``conflicting="drop"``).
    """

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    seed: int
    fractions: tuple[float, float, float]
    fingerprint: str
    conflicting: Literal["train", "drop"] = "train"
    dropped: tuple[str, ...] = field(default=())

    def ids(self, name: SplitName) -> tuple[str, ...]:
        """The ids of split ``name`` (``"train"``, ``"val"`` or ``"test"``).

        Raises:
            ValueError: If ``name`` is not a split name.
        """
        if name not in SPLIT_NAMES:
            raise ValueError(f"split name must be one of {SPLIT_NAMES}, got {name!r}")
        ids: tuple[str, ...] = getattr(self, name)
        return ids

    def check(self, ds: Dataset, *, strict: bool = False) -> None:
        """Check that this split was made for ``ds``.

        Args:
            ds: The data set.
            strict: Also require the same fingerprint (same file contents and labels); otherwise a
                different fingerprint is only logged as a warning.

        Raises:
            DataError: If the split's ids (including dropped ones) are not exactly ``ds``'s ids, or
                (``strict``) the fingerprints differ.
        """
        mine = set(self.train) | set(self.val) | set(self.test) | set(self.dropped)
        theirs = set(ds.ids)
        if mine != theirs:
            missing, extra = sorted(theirs - mine), sorted(mine - theirs)
            parts = []
            if missing:
                parts.append(f"{len(missing)} samples of the data are not in the split (e.g. {missing[0]!r})")
            if extra:
                parts.append(f"{len(extra)} ids of the split are not in the data (e.g. {extra[0]!r})")
            raise DataError(f"split does not match data set {str(ds.source)!r}: {'; '.join(parts)}")
        current = ds.fingerprint() if self.fingerprint else ""
        if self.fingerprint and self.fingerprint != current:
            msg = (
                f"data set {str(ds.source)!r} has fingerprint {current[:12]}, the split was made "
                f"on {self.fingerprint[:12]}: files or labels changed since"
            )
            if strict:
                raise DataError(msg)
            logger.warning("%s", msg)

    def subset(self, ds: Dataset, name: SplitName) -> Dataset:
        """The samples of split ``name`` as a :class:`Dataset` (same root and classes as ``ds``).

        Raises:
            DataError: If the split does not match ``ds`` (see :meth:`check`).
        """
        self.check(ds)
        return ds.subset(self.ids(name))

    def indices(self, ds: Dataset, name: SplitName) -> NDArray[np.intp]:
        """(K,) positions in ``ds`` of the samples of split ``name``, ascending."""
        self.check(ds)
        return np.array(sorted(ds.position(i) for i in self.ids(name)), dtype=np.intp)

    def summary(self, ds: Dataset) -> dict[str, dict[str, int]]:
        """``{split: {label: count}}`` for the three splits (for printing)."""
        out: dict[str, dict[str, int]] = {}
        for name in SPLIT_NAMES:
            counts = Counter(ds[ds.position(i)].label for i in self.ids(name))
            out[name] = {c: counts.get(c, 0) for c in ds.classes}
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the file format of :meth:`save`)."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "seed": self.seed,
            "fractions": list(self.fractions),
            "fingerprint": self.fingerprint,
            "conflicting": self.conflicting,
            "train": list(self.train),
            "val": list(self.val),
            "test": list(self.test),
            "dropped": list(self.dropped),
        }

    def save(self, path: StrPath) -> None:
        """Write the split as UTF-8 JSON, atomically (parent folders are created)."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: StrPath, ds: Dataset | None = None, *, strict: bool = False) -> Split:
        """Read a split written by :meth:`save`; with ``ds``, also :meth:`check` it against the data.

        Raises:
            DataError: If the file cannot be read or is not a split (naming the file), or it does not
                match ``ds``.
        """
        p = Path(path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"split file {str(p)!r} cannot be read: {e}") from e
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise DataError(f'split file {str(p)!r} is not a samprompt split (no "format": "{_FORMAT}")')
        if d.get("version") != _VERSION:
            raise DataError(
                f"split file {str(p)!r} has version {d.get('version')!r}; this samprompt reads {_VERSION}"
            )
        try:
            fr = tuple(float(x) for x in d["fractions"])
            split = cls(
                train=_str_tuple(d["train"]),
                val=_str_tuple(d["val"]),
                test=_str_tuple(d["test"]),
                seed=int(d["seed"]),
                fractions=(fr[0], fr[1], fr[2]),
                fingerprint=str(d["fingerprint"]),
                conflicting=d.get("conflicting", "train"),
                dropped=_str_tuple(d.get("dropped", [])),
            )
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise DataError(f"split file {str(p)!r} is malformed: {e!r}") from e
        if split.conflicting not in ("train", "drop"):
            raise DataError(f"split file {str(p)!r} is malformed: conflicting={split.conflicting!r}")
        everything = [*split.train, *split.val, *split.test, *split.dropped]
        if len(everything) != len(set(everything)):
            dup = next(i for i, n in Counter(everything).items() if n > 1)
            raise DataError(f"split file {str(p)!r} lists id {dup!r} more than once")
        if ds is not None:
            try:
                split.check(ds, strict=strict)
            except DataError as e:
                raise DataError(f"split file {str(p)!r}: {e}") from None
        return split


def _str_tuple(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError("expected a list of id strings")
    return tuple(v)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    fr = tuple(float(f) for f in fractions)
    if (
        len(fr) != 3
        or any(not math.isfinite(f) or f < 0 for f in fr)
        or not math.isclose(sum(fr), 1.0, abs_tol=1e-6)
    ):
        raise ConfigError(
            f"split fractions must be three numbers >= 0 summing to 1 (train, val, test), got {fractions}"
        )
    return fr[0], fr[1], fr[2]


def _components(n: int, links: Iterable[Sequence[int]]) -> list[list[int]]:
    """Connected components of ``range(n)`` joined by the index lists in ``links`` (union-find)."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for members in links:
        members = list(members)
        for j in members[1:]:
            a, b = find(members[0]), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    comps: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        comps[find(i)].append(i)
    return list(comps.values())


def make_split(
    ds: Dataset,
    *,
    seed: int,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    duplicate_groups: AuditReport | Iterable[Iterable[str]] | None = None,
    use_groups: bool = True,
    conflicting: Literal["train", "drop"] = "train",
) -> Split:
    """Make a seeded train / val / test split, stratified by label, keeping groups together.

    Duplicate groups whose members carry different labels (BUSI's ``benign (433)`` = ``malignant
    (145)``) are *conflicting*: at most one of the labels is right, so such a picture must not be used
    to measure anything. By default (``conflicting="train"``) the whole group goes to **train**, where
    it costs at most a little label noise, and never to val / test, where it would make one of the two
    test labels wrong by construction. ``conflicting="drop"`` leaves its samples out of every split
    (listed in :attr:`Split.dropped`); samples tied to them only through the ``group`` column stay.
    Groups formed only by the ``group`` column may mix labels (a
    patient with a benign and a malignant lesion) and are not conflicting.

    Args:
        ds: The data set.
        seed: Seed of the shuffle; the same seed (and data) gives the same split.
        fractions: ``(train, val, test)``, each >= 0, summing to 1.
        duplicate_groups: An :class:`~samprompt.data.audit.AuditReport`, or groups of sample ids that
            must share a split. ``None`` (default) runs :func:`~samprompt.data.audit.audit_dataset` to
            find them (decodes every image once); pass ``()`` to skip duplicate handling.
        use_groups: Keep samples with the same ``group`` value together.
        conflicting: ``"train"`` or ``"drop"``, see above.

    Returns:
        The :class:`Split`; ids in each split are in data-set order.

    Raises:
        ConfigError: If ``fractions`` or ``conflicting`` are invalid.
        DataError: If a duplicate group names an id that is not in ``ds``.
    """
    fr = _check_fractions(fractions)
    if conflicting not in ("train", "drop"):
        raise ConfigError(f"conflicting must be 'train' or 'drop', got {conflicting!r}")
    if duplicate_groups is None:
        duplicate_groups = audit_dataset(ds)
    if isinstance(duplicate_groups, AuditReport):
        duplicate_groups = duplicate_groups.duplicate_groups()
    n, labels = len(ds), ds.labels
    dup_links: list[list[int]] = []
    for group in duplicate_groups:
        try:
            dup_links.append([ds.position(i) for i in group])
        except KeyError as e:
            raise DataError(
                f"duplicate group names {e.args[0]!r}, which is not in {str(ds.source)!r}"
            ) from None
    conflicted = {
        i for comp in _components(n, dup_links) if len({int(labels[i]) for i in comp}) > 1 for i in comp
    }
    if conflicting == "drop":  # conflicting samples leave; links through them (group column) go too
        dup_links = [[i for i in link if i not in conflicted] for link in dup_links]
    links = list(dup_links)
    if use_groups:
        by_group: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(ds):
            if s.group is not None and not (conflicting == "drop" and i in conflicted):
                by_group[s.group].append(i)
        links.extend(by_group.values())
    units = _components(n, links)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(units))
    units = [units[k] for k in order]
    units.sort(key=len, reverse=True)  # stable: same-size units keep their shuffled order

    n_classes = len(ds.classes)
    total = np.bincount(labels, minlength=n_classes).astype(np.float64)
    target = np.outer(np.array(fr), total)  # (3, C)
    held = np.zeros((3, n_classes), dtype=np.float64)
    assign = np.full(n, -1, dtype=np.int64)  # 0 train, 1 val, 2 test, -1 dropped
    if conflicted:
        logger.info(
            "%d samples are in duplicate groups with conflicting labels: %s",
            len(conflicted),
            "kept in train" if conflicting == "train" else "dropped",
        )
    for unit in units:
        comp = np.bincount(labels[unit], minlength=n_classes).astype(np.float64)
        if conflicted.intersection(unit):
            if conflicting == "drop":  # the unit is a single conflicting sample here
                continue
            k = 0
        else:
            score = (target - held) @ comp
            score[np.array(fr) == 0] = -np.inf
            k = int(np.argmax(score))
            positive = np.where(score > 0, score, 0.0)
            if len(unit) > 1 and positive.sum() > 0:
                k = int(rng.choice(3, p=positive / positive.sum()))
        held[k] += comp
        assign[unit] = k
    ids = ds.ids
    parts = [tuple(ids[i] for i in range(n) if assign[i] == k) for k in range(3)]
    split = Split(
        train=parts[0],
        val=parts[1],
        test=parts[2],
        seed=int(seed),
        fractions=fr,
        fingerprint=ds.fingerprint(),
        conflicting=conflicting,
        dropped=tuple(ids[i] for i in range(n) if assign[i] == -1),
    )
    logger.info(
        "split %s (seed %d): train %d, val %d, test %d, dropped %d",
        ds.source,
        seed,
        len(split.train),
        len(split.val),
        len(split.test),
        len(split.dropped),
    )
    return split
