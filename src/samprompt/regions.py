"""Region utilities shared by maskers, prompt strategies and metrics.

Conventions: masks are (H, W) bool arrays indexed ``mask[y, x]``. Boxes are (4,) float32
``x0, y0, x1, y1`` in pixel-edge coordinates of the original image: a mask whose only foreground
pixel is ``(x=3, y=5)`` has the box ``(3, 5, 4, 6)``, so ``x1 - x0`` is the width in pixels and a box
never extends past ``(W, H)``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TypeVar, cast

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

__all__ = [
    "bbox_slices",
    "box_iou",
    "clip_box",
    "ellipse_in_box",
    "keep_components",
    "label_components",
    "mask_to_box",
    "shared_components",
]

_STRUCTURE_8 = np.ones((3, 3), dtype=bool)
_T = TypeVar("_T")
_SHARED = threading.local()  # .cache: the active shared_components() memo of this thread, if any


def label_components(mask: NDArray[np.bool_]) -> tuple[NDArray[np.int32], int]:
    """Label the 8-connected components of ``mask``.

    Returns:
        ``(labels, n)``: (H, W) int32 labels (0 = background, 1..n components) and the count ``n``.
    """
    labels, n = ndi.label(mask, structure=_STRUCTURE_8)
    return labels.astype(np.int32, copy=False), int(n)


def keep_components(
    mask: NDArray[np.bool_],
    mode: Literal["largest", "all", "max_cam"] = "largest",
    cam: NDArray[np.float32] | None = None,
    min_area: int = 0,
) -> NDArray[np.bool_]:
    """Select connected components of ``mask``.

    Args:
        mask: (H, W) bool.
        mode: ``"largest"`` keeps the component with most pixels (ties: the one labelled first in
            row-major order); ``"all"`` keeps every component; ``"max_cam"`` keeps the component with the
            largest CAM mass (sum of ``cam`` over the component), which needs ``cam``.
        cam: (H, W) float32, needed for ``"max_cam"``.
        min_area: Components with fewer pixels are dropped first (0 keeps all).

    Returns:
        (H, W) bool; all False when nothing is left.
    """
    if mode not in ("largest", "all", "max_cam"):
        raise ValueError(f"mode must be 'largest', 'all' or 'max_cam', got {mode!r}")
    if mode == "max_cam" and cam is None:
        raise ValueError("keep_components(mode='max_cam') needs a cam")
    used_cam = cam if mode == "max_cam" else None
    return _shared(("keep", mode, int(min_area)), (mask, used_cam), lambda: _keep(mask, mode, cam, min_area))


def _shared(tag: tuple[Any, ...], arrays: tuple[Any, ...], compute: Callable[[], _T]) -> _T:
    """``compute()``, memoised per ``tag`` and array identities inside :func:`shared_components` when every
    array (``None`` entries aside) is read-only; an array result is made read-only (callers share it)."""
    cache = getattr(_SHARED, "cache", None)
    if cache is None or any(a is not None and a.flags.writeable for a in arrays):
        return compute()
    key = (*tag, *(id(a) for a in arrays))
    hit = cache.get(key)
    if hit is not None and all(h is a for h, a in zip(hit[0], arrays)):
        return cast(_T, hit[1])
    out = compute()
    if isinstance(out, np.ndarray):
        out.flags.writeable = False
    cache[key] = (arrays, out)  # the arrays are held, so their ids cannot be reused meanwhile
    return out


@contextmanager
def shared_components() -> Iterator[None]:
    """Within this block (in the calling thread), :func:`keep_components` computes each selection once.

    Only READ-ONLY arrays are memoised (a writeable one could change between two calls): calls with the
    same read-only ``mask`` and (for ``"max_cam"``) ``cam`` objects, ``mode`` and ``min_area`` return the
    same read-only array, and :func:`bbox_slices` (hence :func:`mask_to_box`) of the same read-only mask
    object is computed once. The pipeline hands its strategies read-only views and runs them inside such
    a block, so five strategies prompting on the largest component label it once instead of five times.
    Arrays are matched by identity, not by value, and are held by the memo until the block ends. Blocks
    nest (the inner one shares the outer memo).

    Example:
        >>> m = np.zeros((4, 4), bool); m[1:3, 1:3] = True
        >>> m.flags.writeable = False
        >>> with shared_components():
        ...     keep_components(m) is keep_components(m)
        True
    """
    outer = getattr(_SHARED, "cache", None)
    _SHARED.cache = {} if outer is None else outer
    try:
        yield
    finally:
        _SHARED.cache = outer


def _keep(
    mask: NDArray[np.bool_], mode: str, cam: NDArray[np.float32] | None, min_area: int
) -> NDArray[np.bool_]:
    out = np.zeros(mask.shape, dtype=bool)
    window = bbox_slices(mask)
    if window is None:
        return out
    # Label only the mask's bounding box: pseudo masks are usually a small part of the image.
    crop = mask[window]
    labels, n = label_components(crop)
    if n == 1 and min_area <= 1:
        out[window] = crop
        return out
    out[window] = _select(labels, n, mode, None if cam is None else cam[window], min_area)
    return out


def _select(
    labels: NDArray[np.int32], n: int, mode: str, cam: NDArray[np.float32] | None, min_area: int
) -> NDArray[np.bool_]:
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    areas[0] = 0
    valid = areas >= max(int(min_area), 1)
    valid[0] = False
    if not valid.any():
        return np.zeros(labels.shape, dtype=bool)
    if mode == "all":
        return valid[labels]
    if mode == "largest":
        score = np.where(valid, areas, -1).astype(np.float64)
    else:  # max_cam (validated by the caller)
        weights = np.zeros(labels.size) if cam is None else cam.ravel().astype(np.float64)
        mass = np.bincount(labels.ravel(), weights=weights, minlength=n + 1)
        score = np.where(valid, mass, -np.inf)
    return np.asarray(labels == int(np.argmax(score)), dtype=bool)


def bbox_slices(mask: NDArray[np.bool_]) -> tuple[slice, slice] | None:
    """``(rows, cols)`` slices of the foreground's bounding box (``mask[rows, cols]``); ``None`` if empty.

    Inside :func:`shared_components`, computed once per mask object."""
    return _shared(("bbox",), (mask,), lambda: _bbox_slices(mask))


def _bbox_slices(mask: NDArray[np.bool_]) -> tuple[slice, slice] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def mask_to_box(mask: NDArray[np.bool_]) -> NDArray[np.float32] | None:
    """Bounding box of the foreground pixels, ``(x0, y0, x1, y1)`` pixel edges; ``None`` if empty."""
    window = bbox_slices(mask)
    if window is None:
        return None
    rows, cols = window
    return np.array([cols.start, rows.start, cols.stop, rows.stop], dtype=np.float32)


def clip_box(box: NDArray[np.floating], width: int, height: int) -> NDArray[np.float32]:
    """Clip a box to the image ``[0, W] x [0, H]`` and order its corners."""
    a, b, c, d = (float(v) for v in np.asarray(box, dtype=np.float32).reshape(4))
    x0, x1 = (a, c) if a <= c else (c, a)
    y0, y1 = (b, d) if b <= d else (d, b)
    return np.array(
        [min(max(x0, 0.0), width), min(max(y0, 0.0), height), min(max(x1, 0.0), width), min(max(y1, 0.0), height)],
        dtype=np.float32,
    )


def box_iou(a: NDArray[np.floating] | None, b: NDArray[np.floating] | None) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes; 0.0 if either is ``None`` or empty."""
    if a is None or b is None:
        return 0.0
    ix = max(0.0, min(float(a[2]), float(b[2])) - max(float(a[0]), float(b[0])))
    iy = max(0.0, min(float(a[3]), float(b[3])) - max(float(a[1]), float(b[1])))
    inter = ix * iy
    area_a = max(0.0, float(a[2] - a[0])) * max(0.0, float(a[3] - a[1]))
    area_b = max(0.0, float(b[2] - b[0])) * max(0.0, float(b[3] - b[1]))
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def ellipse_in_box(box: NDArray[np.floating] | None, height: int, width: int) -> NDArray[np.bool_]:
    """The ellipse inscribed in ``box``, rasterised on an (H, W) grid (pixel centres at ``i + 0.5``).

    This is the "box prior": what a segmenter given only the box could answer without looking at the
    image. An empty or ``None`` box gives an all-False mask.
    """
    out = np.zeros((height, width), dtype=bool)
    if box is None:
        return out
    x0, y0, x1, y1 = (float(v) for v in box)
    rx, ry = (x1 - x0) / 2.0, (y1 - y0) / 2.0
    if rx <= 0 or ry <= 0:
        return out
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    ys = (np.arange(height, dtype=np.float32) + 0.5 - cy) / ry
    xs = (np.arange(width, dtype=np.float32) + 0.5 - cx) / rx
    return (ys[:, None] ** 2 + xs[None, :] ** 2) <= 1.0
