"""The :class:`PseudoMasker` base class: a CAM in, a binary pseudo mask out.

Every masker first binarises the CAM (the subclass's :meth:`PseudoMasker.binarize`) and then applies the
same post-processing, in this order: drop components smaller than ``min_area`` (a fraction of the image
area), fill holes, keep components (``largest``, ``all`` or ``max_cam`` = the one with most CAM mass).
"""

from __future__ import annotations

import abc
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field
from scipy import ndimage as ndi
from typing_extensions import TypeVar

from samprompt._arrays import as_cam
from samprompt.component import Component, ComponentParams
from samprompt.regions import keep_components

__all__ = ["MP_co", "MaskerParams", "PseudoMasker"]


class MaskerParams(ComponentParams):
    """Post-processing options shared by every masker.

    Attributes:
        keep: Which connected components (8-connectivity) to keep.
        fill_holes: Fill holes inside the kept components.
        min_area: Drop components smaller than this fraction of the image area (0 keeps everything).
    """

    keep: Literal["largest", "all", "max_cam"] = "largest"
    fill_holes: bool = False
    min_area: float = Field(default=0.0, ge=0.0, lt=1.0)


#: A masker's parameter model: :class:`MaskerParams` or a subclass of it.
MP_co = TypeVar("MP_co", bound=MaskerParams, covariant=True, default=MaskerParams)


class PseudoMasker(Component[MP_co], abc.ABC):
    """Base class of pseudo maskers.

    A masker implements ONE method, :meth:`binarize`; calling the masker validates the CAM, binarises it
    and applies the shared post-processing. Its parameters are a :class:`MaskerParams` subclass given as
    the generic argument (``class MyMasker(PseudoMasker[MyMaskerParams])``); without one, the masker
    takes the post-processing options only.
    """

    Params = MaskerParams

    def __call__(self, cam: Any) -> NDArray[np.bool_]:
        """Turn a CAM into a pseudo mask.

        Args:
            cam: (H, W) float32 in [0, 1] (NaN is treated as 0, values are clipped to [0, 1]).

        Returns:
            (H, W) bool; all False when nothing passes (callers must handle an empty mask).

        Raises:
            ValueError: If ``cam`` is not a non-empty 2-D array.
        """
        c = as_cam(cam)
        mask = np.asarray(self.binarize(c), dtype=bool)
        p = self.params
        if not mask.any():
            return mask
        min_px = int(np.ceil(p.min_area * mask.size))
        if p.fill_holes:
            mask = ndi.binary_fill_holes(mask)
        return keep_components(mask, p.keep, cam=c, min_area=min_px)

    @abc.abstractmethod
    def binarize(self, cam: NDArray[np.float32]) -> NDArray[np.bool_]:
        """Binarise a validated (H, W) float32 CAM in [0, 1] (before post-processing)."""
