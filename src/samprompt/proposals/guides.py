"""Guide masks for a classifier's training: the region a label-only scorer chooses on each image.

A from-scratch classifier's CAM points at whatever separates the classes (borders, calipers, text), not
at the lesion. A scorer fitted from image labels alone (:func:`~samprompt.proposals.fit.fit_scorer` with
the ``mil`` or ``contrast`` learner and no CAM features) needs no classifier, so it can run BEFORE the
training; the region it chooses on each lesion image becomes that image's guide mask, and the training's
guidance term (:class:`~samprompt.classifiers.TrainConfig` ``guide_weight``) pulls the CAM towards it.
No mask file is read: the guides are made from the images and the scorer only.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from samprompt.errors import ConfigError
from samprompt.parallel import WorkerPool
from samprompt.proposals.scorer import ScorerFile, load_scorer
from samprompt.proposals.select import ProposalSelector, selector_from_scorer

__all__ = ["PackedMask", "guide_masks"]

log = logging.getLogger(__name__)


class PackedMask:
    """A bool mask kept as the bits of its bounding box (a few KB instead of H x W bytes); calling it
    returns the (H, W) mask again.

    Args:
        mask: (H, W) bool mask with at least one pixel set.
    """

    def __init__(self, mask: NDArray[np.bool_]) -> None:
        m = np.asarray(mask, bool)
        if m.ndim != 2 or not m.any():
            raise ValueError(f"PackedMask needs a non-empty (H, W) mask, got shape {m.shape}")
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        self.shape = (int(m.shape[0]), int(m.shape[1]))
        #: ``(y0, x0, y1, x1)`` of the set pixels (end exclusive), in pixels of the original grid.
        self.box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
        y0, x0, y1, x1 = self.box
        self._bits = np.packbits(m[y0:y1, x0:x1])

    def __call__(self) -> NDArray[np.bool_]:
        """The (H, W) bool mask."""
        y0, x0, y1, x1 = self.box
        out = np.zeros(self.shape, bool)
        n = (y1 - y0) * (x1 - x0)
        out[y0:y1, x0:x1] = np.unpackbits(self._bits, count=n).astype(bool).reshape(y1 - y0, x1 - x0)
        return out


def _choose(selector: ProposalSelector, image: NDArray[Any]) -> tuple[PackedMask | None, float]:
    region, score = selector.choose(image, None)
    return (None, score) if region is None or not region.any() else (PackedMask(region), score)


def guide_masks(
    images: Sequence[NDArray[Any]],
    scorer: ScorerFile | str | os.PathLike[str],
    use: Sequence[bool] | None = None,
    *,
    workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
    settings: Mapping[str, Any] | None = None,
    keep: float = 1.0,
) -> list[PackedMask | None]:
    """The region the scorer chooses on each image, as a guide mask for :func:`~samprompt.classifiers.train_classifier`.

    Args:
        images: (H, W[, 3]) uint8 images (a sequence read when indexed is fine, e.g. a
            :class:`~samprompt.runner.fitting.LabelsOnly` view).
        scorer: A :class:`~samprompt.proposals.scorer.ScorerFile`, a shipped name or a scorer file, whose
            stages read no CAM feature (fit it without ``cam_features``).
        use: Which images get a guide (e.g. the lesion images; the others get ``None``); default all.
        workers: Worker processes choosing the regions (0: this process); the guides are the same.
        progress: ``progress(done, total)`` after each chunk of images.
        settings: Other :class:`~samprompt.proposals.select.ProposalSelector` settings (e.g. ``work_size``;
            the scorer file's polarity and shadow penalty otherwise).
        keep: The fraction (in (0, 1]) of the images with a region that keep it as their guide: those whose
            chosen region has the highest second-stage score (``ceil(keep * n)`` of ``n``, ties by image
            order); the others get ``None``. The scorer's confidence ranks its choices well (on 453 BUSI
            train images the Spearman correlation of score and box IoU with the lesion was 0.63), so a
            smaller fraction trades guides for cleaner ones.

    Returns:
        Per image: a :class:`PackedMask` (call it for the (H, W) bool mask on the image's pixel grid, row
        ``y``, column ``x``; :func:`~samprompt.classifiers.train_classifier` takes it as it is), or
        ``None`` (not used, or no region proposed).

    Raises:
        ConfigError: The scorer's weights read the CAM (a guide must not need the classifier it trains),
            ``use`` of another length than ``images``, or ``keep`` out of (0, 1].
    """
    if not 0.0 < keep <= 1.0:
        raise ConfigError(f"guide masks: keep must be in (0, 1], got {keep}")
    sf = scorer if isinstance(scorer, ScorerFile) else load_scorer(scorer)
    selector = selector_from_scorer(sf, **dict(settings or {}))
    if selector.uses_cam(1) or selector.uses_cam(2):
        raise ConfigError("guide scorer: its weights read the CAM features, and a guide for training a classifier "
                          "must not need that classifier's CAM; fit the scorer without cam_features")
    flags = [True] * len(images) if use is None else [bool(u) for u in use]
    if len(flags) != len(images):
        raise ConfigError(f"guide masks: {len(images)} images but {len(flags)} use flags")
    todo = [k for k, u in enumerate(flags) if u]
    out: list[PackedMask | None] = [None] * len(images)
    scores: dict[int, float] = {}
    pool = WorkerPool(workers, "workers", "the guide scorer") if workers else None
    step = max(1, 4 * (workers or 1))
    try:
        for s in range(0, len(todo), step):
            chunk = todo[s:s + step]
            if pool is None:
                got = [_choose(selector, images[k]) for k in chunk]
            else:
                got = pool.map(_choose, (selector,), [(images[k],) for k in chunk], key="guides")
            for k, (g, score) in zip(chunk, got):
                out[k] = g
                if g is not None:
                    scores[k] = score
            if progress is not None:
                progress(min(s + step, len(todo)), len(todo))
    finally:
        if pool is not None:
            pool.close()
    if keep < 1.0 and scores:
        ranked = sorted(scores, key=lambda k: (-scores[k], k))
        for k in ranked[math.ceil(keep * len(ranked)):]:
            out[k] = None
        log.info("guide masks: the %d most confident of %d regions kept (keep %.2f)",
                 math.ceil(keep * len(ranked)), len(ranked), keep)
    log.info("guide masks: %d of %d images have one", sum(g is not None for g in out), len(images))
    return out
