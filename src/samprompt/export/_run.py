"""Read access to a finished run folder for the exporters (records, masks, the run's data set)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from samprompt.data import Dataset, open_dataset
from samprompt.errors import ConfigError, DataError
from samprompt.runner.outputs import read_png
from samprompt.runner.records import SOURCES, mask_path

__all__ = ["RunImage", "RunOutputs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunImage:
    """One finished image of a run.

    Attributes:
        id: Sample id (``benign/benign (1)``, ``ct/vol#z042``).
        stem: Its file stem in the run folder (``safe_name`` of the id), unique and file-name safe.
        label: The image's class label.
        split: ``train`` / ``val`` / ``test``.
        height: Image height in pixels.
        width: Image width in pixels.
        strategies: Strategy labels the run applied to it, in pipeline order.
    """

    id: str
    stem: str
    label: str
    split: str
    height: int
    width: int
    strategies: tuple[str, ...]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"run file {str(path)!r} cannot be read: {e}") from e


class RunOutputs:
    """The finished images of a run folder (see :func:`~samprompt.runner.run.run_experiment`).

    Args:
        run_dir: The run folder (holds ``config.json`` and ``records/``).

    Raises:
        DataError: If the folder has no ``config.json`` or no finished image (no ``records/*.json``),
            or a record is unreadable.
    """

    def __init__(self, run_dir: str | PathLike[str]) -> None:
        self.dir = Path(run_dir)
        cfg = self.dir / "config.json"
        records = sorted((self.dir / "records").glob("*.json")) if (self.dir / "records").is_dir() else []
        if not cfg.is_file() or not records:
            raise DataError(
                f"{str(self.dir)!r} is not a run folder with finished images "
                f"(expected config.json and records/*.json written by `samprompt run`)"
            )
        self.config: dict[str, Any] = _read_json(cfg)
        images = []
        for p in records:
            r = _read_json(p)
            try:
                h, w = (int(v) for v in r["size"])
                images.append(RunImage(str(r["image"]), str(r["file"]), str(r["label"]), str(r["split"]),
                                       h, w, tuple(str(s) for s in r["strategies"])))
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"run record {str(p)!r} lacks a field or has a bad value: {e!r}") from e
        self.images: list[RunImage] = sorted(images, key=lambda im: im.id)
        self._dataset: Dataset | None = None

    @property
    def name(self) -> str:
        """The run's ``name`` from its config (the folder name when unset)."""
        return str(self.config.get("name") or self.dir.name)

    @property
    def strategies(self) -> list[str]:
        """Strategy labels of the run, in pipeline order (those of its first finished image)."""
        return list(self.images[0].strategies)

    @property
    def classes(self) -> list[str]:
        """Sorted class labels of the finished images."""
        return sorted({im.label for im in self.images})

    def resolve(self, strategy: str | None, source: str) -> str:
        """The strategy label to export: ``strategy``, or the run's first one when ``None``.

        Raises:
            ConfigError: If the strategy is not one of the run's, or ``source`` is not ``cam`` / ``gt``.
        """
        if source not in SOURCES:
            raise ConfigError(f"source {source!r} is not one of {list(SOURCES)}")
        if strategy is None:
            return self.strategies[0]
        if strategy not in self.strategies:
            raise ConfigError(f"strategy {strategy!r} is not one of the run's strategies {self.strategies}")
        return strategy

    def mask(self, image: RunImage, strategy: str, source: str) -> NDArray[np.bool_]:
        """(H, W) bool mask of ``image`` by ``strategy`` prompted from ``source`` (``True`` = foreground).

        Raises:
            DataError: If the mask file is missing, unreadable or not of the image's size.
        """
        path = mask_path(self.dir, strategy, source, image.id)
        m = read_png(path)
        if m.shape[:2] != (image.height, image.width):
            raise DataError(f"run mask {str(path)!r} is {m.shape[:2]} but its record says "
                            f"{(image.height, image.width)}")
        return np.asarray(m > 0) if m.ndim == 2 else np.asarray(m.any(axis=2))

    def dataset(self) -> Dataset:
        """The run's data set, opened again from ``config.json``'s ``data`` section.

        Raises:
            DataError: If the data are no longer where the run read them.
        """
        if self._dataset is None:
            data = self.config.get("data") or {}
            if "path" not in data:
                raise DataError(f"{str(self.dir / 'config.json')!r} has no data.path")
            try:
                self._dataset = open_dataset(data["path"], classes=data.get("classes"))
            except DataError as e:
                raise DataError(f"the data of run {str(self.dir)!r} cannot be opened again: {e}") from e
        return self._dataset
