"""Star-shaped (polar) contour search used by the weight-free ``classical`` segmenter.

The contour is a radius per angle around a centre, in coordinates normalised by the prompt's radii (so
the ellipse inscribed in a box is the constant radius 1). The radius sequence minimises, by dynamic
programming over a ring of angles:

* a **shape prior** ``w_prior * (rho - 1)^2 / 0.1`` (stay close to the ellipse),
* an **edge term** ``-w_edge * clip(dI/drho / s, 0, 3)``: a dark-inside / bright-outside step along the
  ray (lesions in ultrasound are hypoechoic); ``s`` is the 90th percentile of ``|dI/drho|`` in the image crop,
* a **region term** ``w_region * (sum_{inside} e_in + sum_{outside} e_out)`` along the ray (a polar
  Chan-Vese), ``e = min(((I - mu) / contrast)^2, 4)`` with ``mu_in`` the median of the inner quarter and
  ``mu_out`` the median outside the box,
* a **smoothness** cost ``w_smooth * |drho index|`` between neighbouring angles (steps of at most
  ``max_step`` radius bins).

Hard constraints: the radius never leaves the box (when a box is given); a positive point forces the
contour to enclose it, a negative point to exclude it. ``stretch`` rescales each half-axis of the found
contour so that its bounding box is the prompt box exactly (a tight box touches the object on all four
sides), except on a side that holds a negative point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import map_coordinates
from skimage.draw import polygon2mask

from samprompt._arrays import fill_holes

__all__ = ["PolarParams", "polar_contour", "rasterise", "rasterise_star"]


@dataclass(frozen=True)
class PolarParams:
    """Weights of :func:`polar_contour` (see the module docstring)."""

    n_angles: int = 64
    n_radii: int = 48
    r_min: float = 0.3
    r_max: float = 1.42
    w_prior: float = 1.0
    w_edge: float = 1.0
    w_region: float = 0.3
    w_smooth: float = 0.3
    max_step: int = 2


def _dp_ring(cost: NDArray[np.float64], w_smooth: float, max_step: int) -> NDArray[np.intp]:
    """Minimum-cost path through (A, R) ``cost`` with |step| <= max_step; open at the seam.

    Ties go to the most negative step (the first in ``-max_step .. max_step``)."""
    A, R = cost.shape
    m = int(max_step)
    ks = np.arange(-m, m + 1)
    penalty = (w_smooth * np.abs(ks))[:, None]
    idx = np.arange(R)
    came_from = idx[None, :] - ks[:, None]  # (2m+1, R): the radius each step comes from
    acc = cost[0].copy()
    back = np.zeros((A, R), np.intp)
    padded = np.full(R + 2 * m, np.inf)  # radii outside [0, R) cost infinity
    # row i of the reversed windows holds acc[r - ks[i]] for every radius r
    windows = np.lib.stride_tricks.sliding_window_view(padded, R)[::-1]
    for a in range(1, A):
        padded[m:m + R] = acc
        cand = windows + penalty
        j = np.argmin(cand, axis=0)
        acc = cand[j, idx] + cost[a]
        back[a] = came_from[j, idx]
    j = int(np.argmin(acc))
    path = np.empty(A, np.intp)
    path[-1] = j
    for a in range(A - 1, 0, -1):
        j = int(back[a, j])
        path[a - 1] = j
    return path


def polar_contour(
    img: NDArray[np.float32],
    centre: tuple[float, float],
    radii: tuple[float, float],
    params: PolarParams,
    *,
    box: NDArray[np.float32] | None = None,
    positives: NDArray[np.float32] | None = None,
    negatives: NDArray[np.float32] | None = None,
    stretch: bool = False,
) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    """Find the contour; all coordinates in the pixels of ``img`` (pixel centres at ``i + 0.5``).

    Args:
        img: (h, w) smoothed grey image in [0, 1] (a crop, already at working resolution).
        centre: ``(cx, cy)`` of the polar frame.
        radii: ``(rx, ry)`` normalising radii (the prior contour is the ellipse with these radii).
        params: Weights.
        box: Optional ``(x0, y0, x1, y1)`` the contour must stay inside (and reach, with ``stretch``).
        positives: (N, 2) points the contour must enclose; negatives: points it must exclude.
        stretch: Rescale each half-axis so the contour's bounding box equals ``box``.

    Returns:
        ``(xs, ys, score)``: the polygon vertices and a confidence in [0, 1] (mean edge strength on the
        contour blended with the inside/outside contrast).
    """
    p = params
    cx, cy = centre
    rx, ry = max(radii[0], 0.5), max(radii[1], 0.5)
    th = np.arange(p.n_angles) * 2.0 * np.pi / p.n_angles
    c, s = np.cos(th), np.sin(th)
    rho1 = np.linspace(p.r_min, p.r_max, p.n_radii)
    rho = np.broadcast_to(rho1[None, :], (p.n_angles, p.n_radii))
    X = cx + rho * rx * c[:, None] - 0.5
    Y = cy + rho * ry * s[:, None] - 0.5
    P = map_coordinates(img, [Y, X], order=1, mode="nearest")
    valid = np.ones(rho.shape, bool)
    h, w = img.shape
    if box is not None:
        bx0, by0, bx1, by1 = (float(v) for v in box)
        with np.errstate(divide="ignore"):
            lim_x = np.where(c > 1e-9, (bx1 - cx) / (rx * c), np.where(c < -1e-9, (bx0 - cx) / (rx * c), np.inf))
            lim_y = np.where(s > 1e-9, (by1 - cy) / (ry * s), np.where(s < -1e-9, (by0 - cy) / (ry * s), np.inf))
        lim = np.minimum(lim_x, lim_y)
        valid &= rho <= lim[:, None] + 1e-6
        inside_box = np.zeros((h, w), bool)
        inside_box[max(0, int(np.floor(by0))):int(np.ceil(by1)), max(0, int(np.floor(bx0))):int(np.ceil(bx1))] = True
        ring = img[~inside_box]
    else:
        yy = (np.arange(h) + 0.5 - cy) / ry
        xx = (np.arange(w) + 0.5 - cx) / rx
        ring = img[(yy[:, None] ** 2 + xx[None, :] ** 2) > 1.3**2]
    valid[:, 0] = True  # the innermost radius is always allowed
    mu_in = float(np.median(P[:, : max(1, p.n_radii // 4)]))
    mu_out = float(np.median(ring)) if ring.size > 10 else float(P[:, -1].mean())
    contrast = max(abs(mu_out - mu_in), 0.03)
    e_in = np.minimum(((P - mu_in) / contrast) ** 2, 4.0)
    e_out = np.minimum(((P - mu_out) / contrast) ** 2, 4.0)
    c_in = np.cumsum(e_in, axis=1)
    c_out = np.concatenate([np.cumsum(e_out[:, ::-1], axis=1)[:, ::-1][:, 1:], np.zeros((p.n_angles, 1))], axis=1)
    region = (c_in + c_out) * (10.0 / p.n_radii)
    region -= region.min(axis=1, keepdims=True)
    d = np.gradient(P, axis=1)
    sign = 1.0 if mu_out >= mu_in else -1.0
    scale = float(np.percentile(np.abs(d), 90)) + 1e-4
    edge = np.clip(sign * d / scale, 0.0, 3.0)
    cost = p.w_region * region - p.w_edge * edge + p.w_prior * (rho - 1.0) ** 2 / 0.1
    big = 1e6
    cost = np.where(valid, cost, big)
    for pts, positive in ((positives, True), (negatives, False)):
        if pts is None or len(pts) == 0:
            continue
        for x, y in np.asarray(pts, np.float64):
            ang = np.arctan2((y - cy) / ry, (x - cx) / rx) % (2 * np.pi)
            r_pt = float(np.hypot((x - cx) / rx, (y - cy) / ry))
            a = round(ang / (2 * np.pi) * p.n_angles) % p.n_angles
            for da in (-1, 0, 1):
                row = (a + da) % p.n_angles
                if positive:
                    cost[row, rho1 < r_pt + 0.05] += big
                elif r_pt > p.r_min:
                    cost[row, rho1 >= r_pt - 0.1] += big
    # Circular closure: solve with the seam at angle 0, then again with the seam opposite, keep the second.
    half = p.n_angles // 2
    path = np.roll(_dp_ring(np.roll(cost, half, axis=0), p.w_smooth, p.max_step), -half)
    rr = rho1[path]
    xs = cx + rr * rx * c
    ys = cy + rr * ry * s
    if stretch and box is not None:
        # A side holding a negative point is left alone: stretching it could swallow the point.
        negs = np.zeros((0, 2)) if negatives is None or len(negatives) == 0 else np.asarray(negatives, np.float64)
        for axis, arr, lo, hi, cen in ((0, xs, bx0, bx1, cx), (1, ys, by0, by1, cy)):
            low, high = arr < cen, arr >= cen
            if low.any() and arr.min() < cen and not np.any(negs[:, axis] < cen):
                arr[low] = cen + (arr[low] - cen) * (cen - lo) / max(cen - arr.min(), 1e-3)
            if high.any() and arr.max() > cen and not np.any(negs[:, axis] >= cen):
                arr[high] = cen + (arr[high] - cen) * (hi - cen) / max(arr.max() - cen, 1e-3)
    on_edge = edge[np.arange(p.n_angles), path]
    score = float(np.clip(0.5 * on_edge.mean() / 3.0 + 0.5 * min(contrast / 0.3, 1.0), 0.0, 1.0))
    return xs, ys, score


def rasterise(xs: NDArray[np.float64], ys: NDArray[np.float64], shape: tuple[int, int]) -> NDArray[np.bool_]:
    """Fill the polygon (vertex coordinates with pixel centres at ``i + 0.5``) on an (H, W) grid."""
    m = polygon2mask(shape, np.stack([ys - 0.5, xs - 0.5], axis=1))
    return fill_holes(m) if m.any() else np.asarray(m, dtype=bool)


def rasterise_star(
    xs: NDArray[np.float64], ys: NDArray[np.float64], centre: tuple[float, float], shape: tuple[int, int]
) -> NDArray[np.bool_]:
    """Fill a polygon that is star-shaped about ``centre`` (pixel centres at ``i + 0.5``), vectorised.

    Each pixel is inside when its distance to ``centre`` is at most the contour's distance at the pixel's
    angle (linear interpolation between vertices, in polar coordinates). Much faster than a general
    polygon fill for the contours of :func:`polar_contour`.
    """
    cx, cy = centre
    H, W = shape
    va = np.arctan2(ys - cy, xs - cx)
    vr = np.hypot(ys - cy, xs - cx)
    order = np.argsort(va)
    va, vr = va[order], vr[order]
    x0, x1 = max(0, int(np.floor(xs.min()))), min(W, int(np.ceil(xs.max())) + 1)
    y0, y1 = max(0, int(np.floor(ys.min()))), min(H, int(np.ceil(ys.max())) + 1)
    out = np.zeros((H, W), bool)
    if x1 <= x0 or y1 <= y0:
        return out
    py = (np.arange(y0, y1) + 0.5 - cy)[:, None]
    px = (np.arange(x0, x1) + 0.5 - cx)[None, :]
    ang = np.arctan2(py, px)
    rad = np.hypot(py, px)
    lim = np.interp(ang, va, vr, period=2 * np.pi)
    out[y0:y1, x0:x1] = rad <= lim
    return out
