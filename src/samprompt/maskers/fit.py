"""Choose a threshold masker's value from the data, without masks.

The paper thresholds every CAM at a fixed value (0.8 of its maximum). How wide a CAM is depends on the
classifier and its training: a CAM trained to stay inside the lesion is peaked, and at 0.8 its region is
a fraction of the lesion. :func:`fit_threshold` chooses the value instead, on images whose masks it never
reads: per image, the box of the masked CAM is compared with a REFERENCE box that does not come from the
CAM, in a run the region a label-only scorer chooses (:func:`samprompt.proposals.guide_masks`), and the
value whose boxes agree best on average wins. A run does this when its config says
``pipeline.masker: {name: threshold, params: {value: fit}}`` (:mod:`samprompt.runner.fitting`).

Boxes are ``(x0, y0, x1, y1)`` pixel edges (end exclusive) on the CAM's (= the image's) grid, as
:func:`samprompt.regions.mask_to_box` returns them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from samprompt.errors import ConfigError, DataError
from samprompt.maskers.builtin import ThresholdMasker
from samprompt.regions import box_iou, mask_to_box

__all__ = ["DEFAULT_GRID", "ThresholdFit", "fit_threshold", "threshold_agreement"]

#: The values :func:`fit_threshold` tries by default: 0.05, 0.10, ..., 0.95.
DEFAULT_GRID: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))


@dataclass(frozen=True)
class ThresholdFit:
    """The chosen threshold and the evidence for it.

    Attributes:
        value: The chosen value (one of the grid's).
        curve: Grid value → mean box IoU between the masked CAM's box and the reference box.
        images: How many images had a reference box (the others were left out).
    """

    value: float
    curve: dict[float, float] = field(default_factory=dict)
    images: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping (the curve's keys as strings with two decimals)."""
        return {"value": self.value, "images": self.images, "curve": {f"{t:.2f}": v for t, v in self.curve.items()}}


def _check_grid(grid: Sequence[float]) -> list[float]:
    values = [float(t) for t in grid]
    if not values or any(not 0.0 <= t < 1.0 for t in values):
        raise ConfigError(f"fit_threshold: grid values must lie in [0, 1) and there must be at least one, got {values}")
    return values


def threshold_agreement(cam: NDArray[np.floating], reference: NDArray[np.floating] | Sequence[float],
                        *, masker_params: Mapping[str, Any] | None = None,
                        grid: Sequence[float] = DEFAULT_GRID) -> NDArray[np.float64]:
    """Box IoU between the reference box and the box of ``cam`` masked at each grid value.

    Args:
        cam: (H, W) CAM in [0, 1] (as the pipeline's CAM extractor returns it).
        reference: ``(x0, y0, x1, y1)`` pixel edges on the CAM's grid.
        masker_params: The threshold masker's other parameters (``keep``, ``fill_holes``, ``min_area``);
            ``value`` is ignored.
        grid: Threshold values to try.

    Returns:
        ``(len(grid),)`` box IoUs (0 where the masked CAM is empty).

    Raises:
        ConfigError: A grid value outside [0, 1), or bad masker parameters.
    """
    values = _check_grid(grid)
    params = {k: v for k, v in (masker_params or {}).items() if k != "value"}
    ref = np.asarray(reference, dtype=np.float64).reshape(4)
    out = np.zeros(len(values))
    for k, t in enumerate(values):
        box = mask_to_box(ThresholdMasker(value=t, **params)(cam))
        out[k] = box_iou(box, ref)
    return out


def fit_threshold(
    cams: Iterable[NDArray[np.floating]],
    references: Iterable[NDArray[np.floating] | Sequence[float] | None],
    *,
    masker_params: Mapping[str, Any] | None = None,
    grid: Sequence[float] = DEFAULT_GRID,
) -> ThresholdFit:
    """Choose the threshold whose masked-CAM boxes agree best with the reference boxes.

    ``cams`` and ``references`` are read in step (lazily: a generator of CAMs keeps one in memory at a
    time). An image whose reference is ``None`` is left out. Ties go to the value nearest the grid's
    middle.

    Args:
        cams: (H, W) CAMs in [0, 1].
        references: One ``(x0, y0, x1, y1)`` box (pixel edges, the CAM's grid) or ``None`` per CAM.
        masker_params: See :func:`threshold_agreement`.
        grid: Threshold values to try (default :data:`DEFAULT_GRID`).

    Returns:
        The :class:`ThresholdFit`.

    Raises:
        DataError: No image has a reference box.
        ConfigError: A bad grid or masker parameters.

    Example:
        >>> import numpy as np
        >>> yy, xx = np.mgrid[0:40, 0:40]
        >>> cam = np.exp(-((yy - 20) ** 2 + (xx - 20) ** 2) / 50.0).astype(np.float32)  # peak at (20, 20)
        >>> fit = fit_threshold([cam], [(12, 12, 29, 29)], grid=[0.2, 0.5, 0.8])
        >>> fit.value, round(fit.curve[0.2], 2)
        (0.2, 1.0)
    """
    values = _check_grid(grid)
    total = np.zeros(len(values))
    n = 0
    for cam, ref in zip(cams, references, strict=True):
        if ref is None:
            continue
        total += threshold_agreement(cam, ref, masker_params=masker_params, grid=values)
        n += 1
    if n == 0:
        raise DataError("fit_threshold: no image has a reference box (the scorer chose no region on any image)")
    mean = total / n
    middle = (min(values) + max(values)) / 2
    best = max(range(len(values)), key=lambda k: (round(float(mean[k]), 12), -abs(values[k] - middle)))
    return ThresholdFit(value=values[best], curve={t: float(m) for t, m in zip(values, mean)}, images=n)
