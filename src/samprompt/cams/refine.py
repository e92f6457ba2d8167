"""Image-guided CAM refinement: :func:`guided_filter`.

A CAM comes from a coarse grid (7 x 7 to 28 x 28 cells for a ResNet at common input sizes) and is
upsampled smoothly, so its edges are blobs that ignore the image's own edges. The guided filter
(He, Sun and Tang, "Guided image filtering", ECCV 2010) models the output, in every window of the image,
as a linear function of the image's grey level, ``q = a * I + b``, fitted to the CAM in that window by least
squares (``a`` shrunk towards 0 by ``eps``). Where a window holds a region that is darker (or brighter)
than its surround and the CAM is high on one side of its edge, the output follows that edge; in flat
windows it is the CAM's local mean. The sign of ``a`` is fitted per window, so dark and bright objects are
treated alike. Used by the ``tta`` extractor's ``refine: guided``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi
from skimage.transform import resize

from samprompt._arrays import as_grey

__all__ = ["guided_filter"]

#: Longest side at which the filter's coefficients are computed (larger images are filtered at this size
#: and the coefficients upsampled: the "fast guided filter" approximation).
WORK_SIDE = 512


def guided_filter(cam: NDArray[np.floating[Any]], image: Any, radius: float = 0.08, eps: float = 1e-4
                  ) -> NDArray[np.float32]:
    """The CAM filtered with the image's grey level as the guide, min-max normalised to [0, 1].

    Args:
        cam: (H, W) CAM on the image's pixel grid (``cam[y, x]``), any range.
        image: (H, W[, 3]) uint8 image (its grey level is the mean of its channels), or an (H, W) float
            grey image in [0, 1].
        radius: Window half-width as a fraction of the image's long side (in (0, 0.5]); the window is
            ``2 * r + 1`` pixels square, ``r = max(1, round(radius * long side))``, the long side of the grid it is
            computed on (at most 512 px). The defaults (0.08, ``eps`` 1e-4) were chosen on BUSI val.
        eps: Regularisation of the local linear coefficient (grey levels in [0, 1]; in (0, 1]): larger
            values keep more of the CAM's own smooth shape in windows of low image contrast.

    Returns:
        (H, W) float32 in [0, 1] (all zeros when the filtered map is constant).

    Raises:
        ValueError: ``cam`` and ``image`` of different (H, W), or ``radius`` / ``eps`` out of range.
    """
    grey = as_grey(image)
    c = np.asarray(cam, np.float32)
    if c.ndim != 2 or c.shape != grey.shape:
        raise ValueError(f"guided_filter: the CAM's shape {c.shape} is not the image's (H, W) {grey.shape}")
    if not 0.0 < radius <= 0.5:
        raise ValueError(f"guided_filter: radius must be in (0, 0.5] (a fraction of the long side), got {radius}")
    if not 0.0 < eps <= 1.0:
        raise ValueError(f"guided_filter: eps must be in (0, 1], got {eps}")
    H, W = grey.shape
    s = min(1.0, WORK_SIDE / max(H, W))
    small = (max(2, round(H * s)), max(2, round(W * s)))
    I_s, p_s = (grey, c) if s == 1.0 else (
        resize(grey, small, order=1, anti_aliasing=True).astype(np.float32),
        resize(c, small, order=1, anti_aliasing=True).astype(np.float32))
    size = 2 * max(1, round(radius * max(small))) + 1

    def box(x: NDArray[np.float32]) -> NDArray[np.float32]:
        out: NDArray[np.float32] = ndi.uniform_filter(x, size, mode="reflect")
        return out

    mean_I, mean_p = box(I_s), box(p_s)
    var_I = box(I_s * I_s) - mean_I * mean_I
    cov_Ip = box(I_s * p_s) - mean_I * mean_p
    a = (cov_Ip / (np.maximum(var_I, 0.0) + eps)).astype(np.float32)
    b = (mean_p - a * mean_I).astype(np.float32)
    mean_a, mean_b = box(a), box(b)
    if s != 1.0:
        mean_a = resize(mean_a, (H, W), order=1).astype(np.float32)
        mean_b = resize(mean_b, (H, W), order=1).astype(np.float32)
    q = np.nan_to_num(mean_a * grey + mean_b, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(q.min()), float(q.max())
    if hi - lo <= 1e-12:
        return np.zeros((H, W), np.float32)
    out: NDArray[np.float32] = ((q - lo) / (hi - lo)).astype(np.float32)
    return out
