"""Candidate regions of an image: dark, bright or colour-distinct compact regions (region proposals).

Every proposal works on a *working image* (:class:`Work`): the grey image, or its negative (``bright``:
bright regions become dark), or a colour-distinctness map (``colour``: 1 - the normalised distance of each
pixel's colour from the image's median colour, so colour-distinct regions are dark), downscaled and
smoothed. The thresholds then look for DARK compact regions of the working image (see
:func:`propose_candidates`); ``dark`` is the grey image itself (today's behaviour, unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi
from skimage.filters import threshold_multiotsu, threshold_otsu
from skimage.transform import resize

from samprompt._arrays import as_grey, as_image, fill_holes
from samprompt.regions import mask_to_box

__all__ = ["POLARITIES", "Candidate", "Polarity", "Work", "grey_of", "propose_candidates", "to_polarity"]

#: What a working image makes dark: the grey image (``dark`` lesions), its negative (``bright``), or the
#: colour distinctness (``colour``).
Polarity = Literal["dark", "bright", "colour"]
POLARITIES: tuple[Polarity, ...] = ("dark", "bright", "colour")


@dataclass(frozen=True, eq=False)
class Candidate:
    """One candidate region.

    Attributes:
        mask: (h, w) bool at the WORKING resolution (see ``scale``).
        scale: ``(sy, sx)`` working pixels per original pixel.
        hits: How many thresholds produced (nearly) this region.
    """

    mask: NDArray[np.bool_]
    scale: tuple[float, float]
    hits: int = 1

    def box(self) -> NDArray[np.float32]:
        """Bounding box in ORIGINAL pixels (pixel edges)."""
        b = mask_to_box(self.mask)
        if b is None:
            raise ValueError("a candidate's mask is empty")
        sy, sx = self.scale
        return np.array([b[0] / sx, b[1] / sy, b[2] / sx, b[3] / sy], np.float32)

    def full_mask(self, shape: tuple[int, int]) -> NDArray[np.bool_]:
        """The region at the original (H, W)."""
        scaled: NDArray[np.float64] = resize(self.mask.astype(np.float32), shape, order=1)
        return scaled > 0.5


def grey_of(image: Any) -> NDArray[np.float32]:
    """(H, W) float32 grey in [0, 1] of an (H, W[, 3]) uint8 image (the mean of its channels), or a float
    grey image itself; what :class:`Work` starts from."""
    return as_grey(image)



def to_polarity(grey: NDArray[np.float32], image: Any, polarity: str) -> NDArray[np.float32]:
    """The full-size working grey image of ``polarity``: ``grey`` itself (``dark``), ``1 - grey``
    (``bright``) or ``1 -`` the chroma distance from the median chroma (chroma = RGB minus its grey
    level), divided by its maximum (at least 0.25; ``colour``: a grey image gives an almost flat map).

    Args:
        grey: (H, W) float grey in [0, 1] of ``image``.
        image: The image it came from ((H, W[, 3]) uint8, or (H, W) float).
        polarity: One of :data:`POLARITIES`.
    """
    if polarity == "dark":
        return grey
    if polarity == "bright":
        return (1.0 - grey).astype(np.float32)
    if polarity == "colour":
        arr = np.asarray(image)
        if arr.ndim == 2:
            return np.ones_like(grey)
        rgb = as_image(arr).astype(np.float32) / 255.0
        chroma = rgb - rgb.mean(axis=2, keepdims=True)  # brightness is the dark / bright polarities' business
        d = np.linalg.norm(chroma - np.median(chroma.reshape(-1, 3), axis=0), axis=2)
        # scaled by the largest distance, but never by less than 0.25 (a grey image's rounding noise
        # must not be blown up into strong "colour" regions)
        out: NDArray[np.float32] = (1.0 - d / max(float(d.max()), 0.25)).astype(np.float32)
        return out
    raise ValueError(f"polarity must be one of {POLARITIES}, got {polarity!r}")


class Work:
    """One image prepared once for all stages: its working grey version at full size (``grey``, see
    :func:`to_polarity`), the smoothed downscaled copy (``small``, what proposals, features and refinement
    use) and its local-darkness maps (``local``).

    Args:
        image: (H, W) or (H, W, 3) uint8, or (H, W) float grey in [0, 1].
        sigma: Gaussian smoothing of ``small`` (working pixels).
        work_size: Long side of ``small`` (when ``shape`` is not given).
        shape: ``small``'s (h, w).
        polarity: One of :data:`POLARITIES`.
        grey: The image's (H, W) float32 grey in [0, 1] when already made (:func:`grey_of`; shared by the
            working images of several polarities).
    """

    def __init__(self, image: Any, sigma: float, *, work_size: int = 128,
                 shape: tuple[int, int] | None = None, polarity: str = "dark",
                 grey: NDArray[np.float32] | None = None) -> None:
        self.polarity = polarity
        self.grey = to_polarity(as_grey(image) if grey is None else grey, image, polarity)
        H, W = self.grey.shape
        if shape is None:
            s = min(1.0, work_size / max(H, W))
            shape = (max(8, round(H * s)), max(8, round(W * s)))
        # anti-aliasing is a no-op unless the image is shrunk (its Gaussian width is then 0)
        small = resize(self.grey, shape, order=1, anti_aliasing=True).astype(np.float32)
        self.small = ndi.gaussian_filter(small, sigma) if sigma > 0 else small
        self.sigma = sigma
        self.scale = (shape[0] / H, shape[1] / W)
        self._local: dict[float, NDArray[np.float32]] = {}

    def local(self, width: float) -> NDArray[np.float32]:
        """``small`` minus its blur of width ``width`` x its long side (dark = negative)."""
        if width not in self._local:
            self._local[width] = self.small - ndi.gaussian_filter(self.small, width * max(self.small.shape))
        return self._local[width]


def _iou(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    inter = np.count_nonzero(a & b)
    return inter / max(1, int(np.count_nonzero(a | b)))


Box = tuple[slice, slice]


def _box_of(mask: NDArray[np.bool_]) -> Box:
    """The (rows, columns) slices of a non-empty mask's bounding box."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return slice(int(ys[0]), int(ys[-1]) + 1), slice(int(xs[0]), int(xs[-1]) + 1)


def _grown(box: Box, pad: int, shape: tuple[int, ...]) -> Box:
    """``box`` grown by ``pad`` pixels on every side, clipped to an array of ``shape``."""
    ys, xs = box
    return (slice(max(0, ys.start - pad), min(shape[0], ys.stop + pad)),
            slice(max(0, xs.start - pad), min(shape[1], xs.stop + pad)))


def _crop_around(mask: NDArray[np.bool_], pad: int) -> Box:
    """The bounding box of ``mask`` grown by ``pad`` pixels, clipped to the array."""
    return _grown(_box_of(mask), pad, mask.shape)


def _fill_holes(region: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """``ndi.binary_fill_holes`` of a non-empty mask, computed on its box plus a 1-pixel frame (the same
    result: background touching the box's edge reaches the image border around the box)."""
    sl = _crop_around(region, 1)
    out = np.zeros_like(region)
    out[sl] = fill_holes(region[sl])
    return out


def _ring_in(mask: NDArray[np.bool_], box: Box, iterations: int) -> tuple[Box, NDArray[np.bool_]]:
    """``binary_dilation(mask, iterations) & ~mask`` of a non-empty mask whose bounding box is ``box``,
    as ``(window, ring)``: the ring inside ``window`` (the box grown by ``iterations``), zero outside it."""
    win = _grown(box, iterations, mask.shape)
    m = mask[win]
    return win, ndi.binary_dilation(m, iterations=iterations) & ~m


def _ring(mask: NDArray[np.bool_], iterations: int) -> NDArray[np.bool_]:
    """``binary_dilation(mask, iterations) & ~mask`` of a non-empty mask, computed around its box."""
    win, ring = _ring_in(mask, _box_of(mask), iterations)
    out = np.zeros_like(mask)
    out[win] = ring
    return out


def _shrink_mask(full: NDArray[np.bool_], shape: tuple[int, int]) -> NDArray[np.bool_]:
    """``resize(full.astype(np.float32), shape, order=1) > 0.5`` (scikit-image's anti-aliased linear
    resize) with the anti-aliasing blur computed only near the mask: away from it the blur of zeros is
    exactly zero, so the values, and the result, are the same (``tests/quality`` checks it)."""
    if not full.any():
        return np.zeros(shape, bool)
    factors = np.divide(full.shape, shape)
    sigma = np.maximum(0, (factors - 1) / 2)  # scikit-image's default anti-aliasing width
    radius = [int(4.0 * s + 0.5) for s in sigma]  # scipy's truncate = 4
    ys = np.flatnonzero(full.any(axis=1))
    xs = np.flatnonzero(full.any(axis=0))
    H, W = full.shape
    # blur a window of 2 radii around the mask (exact within 1 radius), keep the inner 1-radius part
    outer = (slice(max(0, ys[0] - 2 * radius[0]), min(H, ys[-1] + 1 + 2 * radius[0])),
             slice(max(0, xs[0] - 2 * radius[1]), min(W, xs[-1] + 1 + 2 * radius[1])))
    inner = (slice(max(0, ys[0] - radius[0]), min(H, ys[-1] + 1 + radius[0])),
             slice(max(0, xs[0] - radius[1]), min(W, xs[-1] + 1 + radius[1])))
    blurred_outer = ndi.gaussian_filter(full[outer].astype(np.float32), sigma, mode="mirror")
    blurred = np.zeros(full.shape, np.float32)
    blurred[inner] = blurred_outer[inner[0].start - outer[0].start:inner[0].stop - outer[0].start,
                                   inner[1].start - outer[1].start:inner[1].stop - outer[1].start]
    scaled: NDArray[np.float64] = resize(blurred, shape, order=1, anti_aliasing=False)
    return scaled > 0.5


def propose_candidates(
    image: Any,
    *,
    work_size: int = 128,
    sigma: float = 1.5,
    quantiles: Sequence[float] = (0.1, 0.2, 0.3, 0.4),
    local_sigma: float = 0.15,
    min_area: float = 0.002,
    max_area: float = 0.4,
    opening: Sequence[int] | int = (1,),
    max_candidates: int = 60,
    segments: Sequence[float] = (50.0, 200.0),
    polarity: str = "dark",
) -> list[Candidate]:
    """Compact candidate regions of one image that are dark in its ``polarity``'s working image.

    Args:
        image: (H, W) or (H, W, 3) uint8, or (H, W) float grey in [0, 1].
        work_size: Long side of the working image.
        sigma: Gaussian smoothing (working pixels) before thresholding.
        quantiles: Dark quantile levels of the global and local-darkness maps.
        local_sigma: Width of the blur subtracted for the local-darkness map, as a fraction of the long side.
        min_area: Smallest candidate, fraction of the image area.
        max_area: Largest candidate, fraction of the image area.
        opening: Binary-opening iteration counts applied to each thresholded map (each gives its own
            components; larger openings split regions joined by thin bridges).
        max_candidates: Keep at most this many (most often re-found first).
        segments: Also propose the darker-than-median regions of a Felzenszwalb over-segmentation at
            each of these scales (empty = none).
        polarity: ``dark`` (dark regions), ``bright`` or ``colour`` (see :func:`to_polarity`).

    Returns:
        Candidates (possibly empty).
    """
    return _propose(Work(image, sigma, work_size=work_size, polarity=polarity), quantiles=quantiles, local_sigma=local_sigma,
                    min_area=min_area, max_area=max_area, opening=opening, max_candidates=max_candidates,
                    segments=segments)


def _propose(work: Work, *, quantiles: Sequence[float], min_area: float, max_area: float, max_candidates: int,
             segments: Sequence[float], local_sigma: float = 0.15, opening: Sequence[int] | int = (1,)
             ) -> list[Candidate]:
    small, scale = work.small, work.scale
    n = small.size
    local = work.local(local_sigma)
    levels: list[NDArray[np.bool_]] = []
    for q in quantiles:
        levels.append(small <= np.quantile(small, q))
        levels.append(local <= np.quantile(local, q))
    if float(np.ptp(small)) > 1e-3:
        levels.append(small <= threshold_otsu(small))
        try:
            levels.append(small <= threshold_multiotsu(small, classes=3)[0])
        except ValueError:
            pass
        levels.append(local <= threshold_otsu(local))
    found: list[list[Any]] = []  # [mask, hits, area]
    openings = (opening,) if isinstance(opening, int) else tuple(opening)
    labelled = []
    for lev in levels:
        for it in openings:
            labelled.append(ndi.label(ndi.binary_opening(lev, iterations=it) if it else lev))
    if segments:
        from skimage.segmentation import felzenszwalb

        med = float(np.median(small))
        for sc in segments:
            seg = felzenszwalb(small, scale=sc, sigma=0.0, min_size=max(4, int(min_area * n)))
            means = ndi.mean(small, seg, np.arange(seg.max() + 1))
            dark = np.asarray(means) < med
            labelled.append((np.where(dark[seg], seg + 1, 0), int(seg.max()) + 1))
    for lab, k in labelled:
        if k == 0:
            continue
        areas = np.bincount(lab.ravel(), minlength=k + 1)
        boxes = ndi.find_objects(lab, max_label=k)
        for j in range(1, k + 1):
            if not (min_area * n <= areas[j] <= max_area * n):
                continue
            # _fill_holes(lab == j), on the component's box (not None: it has pixels) plus a 1-pixel frame
            sl = _grown(boxes[j - 1], 1, small.shape)
            region = np.zeros(small.shape, bool)
            region[sl] = fill_holes(lab[sl] == j)
            a = np.count_nonzero(region)
            for entry in found:
                # IoU <= min(area) / max(area): skip the pixel test where the areas alone rule a match out
                if min(a, entry[2]) > 0.85 * max(a, entry[2]) and _iou(entry[0], region) > 0.85:
                    entry[1] += 1
                    break
            else:
                found.append([region, 1, a])
    found.sort(key=lambda e: -e[1])
    return [Candidate(mask=m, scale=scale, hits=h) for m, h, _ in found[:max_candidates]]

