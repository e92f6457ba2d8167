"""Built-in pseudo maskers: fixed threshold, Otsu, percentile."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field
from skimage.filters import threshold_otsu

from samprompt.errors import ConfigError
from samprompt.maskers import MASKERS
from samprompt.maskers.base import MaskerParams, PseudoMasker

__all__ = [
    "OtsuMasker",
    "PercentileMasker",
    "PercentileParams",
    "ThresholdMasker",
    "ThresholdParams",
    "percentile_linear",
]


class ThresholdParams(MaskerParams):
    """Parameters of :class:`ThresholdMasker`: the threshold ``value`` plus the post-processing options.

    In a run config, ``value: fit`` asks the run to choose the value from the data, without masks
    (:func:`samprompt.maskers.fit.fit_threshold`, written to ``threshold.json``); the masker itself needs a
    number.
    """

    value: Annotated[float, Field(ge=0.0, le=1.0)] | Literal["fit"] = 0.5


class PercentileParams(MaskerParams):
    """Parameters of :class:`PercentileMasker`: the percentile ``q`` plus the post-processing options."""

    q: float = Field(default=90.0, gt=0.0, lt=100.0)


@MASKERS.register("threshold")
class ThresholdMasker(PseudoMasker[ThresholdParams]):
    """Foreground where ``cam > value`` (strictly greater, as the paper's ``> 0.8`` / ``0.6`` / ``0.5``).

    Example:
        >>> import numpy as np
        >>> cam = np.array([[0.1, 0.9], [0.85, 0.2]], dtype=np.float32)
        >>> ThresholdMasker(value=0.8, keep="all")(cam).astype(int).tolist()
        [[0, 1], [1, 0]]
    """

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params.value == "fit":
            raise ConfigError("threshold.params.value: 'fit' is chosen by a run (samprompt run, its fit stage: "
                              "threshold.json); to build the masker yourself give a number, e.g. the value "
                              "samprompt.maskers.fit.fit_threshold returns")

    def binarize(self, cam: NDArray[np.float32]) -> NDArray[np.bool_]:
        value = self.params.value
        if isinstance(value, str):  # refused by __init__; kept for the type checker
            raise ConfigError("threshold.params.value must be a number here")
        return cam > value


@MASKERS.register("otsu")
class OtsuMasker(PseudoMasker):
    """Foreground where ``cam > t`` with ``t`` chosen by Otsu's method on the CAM's histogram.

    A constant CAM has no threshold and gives an empty mask.
    """

    def binarize(self, cam: NDArray[np.float32]) -> NDArray[np.bool_]:
        lo, hi = float(cam.min()), float(cam.max())
        if hi - lo <= 1e-6:
            return np.zeros(cam.shape, dtype=bool)
        # Otsu on a 256-bin histogram over [min, max] (as scikit-image does by default), built with one
        # bincount instead of a full sort: several times faster on large CAMs.
        bins = np.minimum(((cam - lo) * (256.0 / (hi - lo))).astype(np.intp), 255)
        counts = np.bincount(bins.ravel(), minlength=256)
        centers = lo + (np.arange(256) + 0.5) * ((hi - lo) / 256.0)
        threshold: np.floating = threshold_otsu(hist=(counts, centers))
        return cam > threshold


@MASKERS.register("percentile")
class PercentileMasker(PseudoMasker[PercentileParams]):
    """Foreground where ``cam`` exceeds its ``q``-th percentile (keeps about ``100 - q`` % of pixels).

    A constant CAM gives an empty mask (nothing exceeds it).
    """

    def binarize(self, cam: NDArray[np.float32]) -> NDArray[np.bool_]:
        return cam > percentile_linear(cam, self.params.q)


def percentile_linear(values: NDArray[np.floating], q: float) -> np.floating:
    """``np.percentile(values, q)`` (linear interpolation), bit for bit, in a third of the time on large arrays.

    NumPy partitions around both neighbouring order statistics at once, which is several times slower than
    one partition: this partitions around the lower one only and takes the upper one as the minimum of
    what lies above it, then interpolates with NumPy itself (:func:`numpy.quantile` of those two values),
    so the rounding is NumPy's.

    Args:
        values: Any shape, finite floats (NaN is not handled; :func:`~samprompt._arrays.as_cam` removes it).
        q: Percentile in [0, 100].

    Returns:
        The percentile, of ``values``' float dtype.

    Example:
        >>> percentile_linear(np.array([0.0, 1.0, 2.0, 10.0], np.float32), 90.0)
        np.float32(7.6)
    """
    flat = np.asarray(values).ravel()
    if flat.size == 0:
        raise ValueError("percentile_linear needs at least one value")
    index = (flat.size - 1) * (float(q) / 100.0)
    k = min(int(np.floor(index)), flat.size - 1)
    part = np.partition(flat, k)
    lower = part[k]
    upper = part[k + 1:].min() if k + 1 < flat.size else lower
    result: np.floating = np.quantile(np.array([lower, upper], dtype=flat.dtype), index - k)
    return result
