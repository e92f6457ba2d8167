"""The weight-free default segmenter: a shape prior refined by image evidence (no weights, no downloads).

``method="polar"`` (default) — a star-shaped contour found by dynamic programming
(:mod:`samprompt.segmenters.classical_polar`):

* **box prompt**: the contour starts from the ellipse inscribed in the box and moves, angle by angle, to
  where the image shows a dark-inside / bright-outside boundary (edge + polar Chan-Vese region terms),
  against a quadratic pull back to the ellipse and a smoothness cost. It never leaves the box, and with
  ``stretch_to_box`` (a tight box, e.g. a ground-truth or well-fitting box) it is rescaled so that it
  touches all four sides. Positive points are forced inside, negative points outside.
* **points only**: the region is grown from the positive point(s) over pixels at most ``grow_tolerance``
  (in units of the crop's intensity spread) brighter than the seed, inside a disk of radius
  ``grow_max_radius`` x the image's short side; the grown region's box (not treated as tight) then feeds
  the contour search, with the points as constraints. A region that does not grow falls back to a disk of
  ``point_radius``.
* **mask_logits only**: the box of the largest positive component feeds the contour search (not tight).

``method="random_walker"`` — the original baseline: soft ellipse/disk prior blended (``prior_weight``)
with a random walker (``beta``) seeded by the prior's core and its outside.

The search runs on a crop around the prompt downsampled to at most ``work_size`` pixels on its long side
(tens of milliseconds per prompt on one CPU core at BUSI sizes). Defaults were chosen on the BUSI train
split with ground-truth boxes (see docs/quality.md); nothing else about BUSI is built in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field
from scipy import ndimage as ndi
from skimage.segmentation import random_walker
from skimage.transform import resize

from samprompt._arrays import as_grey, as_image
from samprompt.component import ComponentParams
from samprompt.prompts.base import Prompt
from samprompt.regions import keep_components, mask_to_box
from samprompt.segmenters import SEGMENTERS
from samprompt.segmenters.base import ImageEmbedding, Segmentation, Segmenter
from samprompt.segmenters.classical_polar import PolarParams, polar_contour, rasterise_star

__all__ = ["ClassicalParams", "ClassicalSegmenter"]


def _soft_ellipse(box: NDArray[np.float32], H: int, W: int) -> NDArray[np.float32]:
    """Prior in [0, 1]: 1 within half the radii, 0.5 on the inscribed ellipse, 0 beyond 1.5 x the radii."""
    x0, y0, x1, y1 = (float(v) for v in box)
    rx, ry = max((x1 - x0) / 2.0, 0.5), max((y1 - y0) / 2.0, 0.5)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    ys = (np.arange(H, dtype=np.float32) + 0.5 - cy) / ry
    xs = (np.arange(W, dtype=np.float32) + 0.5 - cx) / rx
    r = np.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
    return np.clip(1.5 - r, 0.0, 1.0)


def _sigmoid(x: NDArray[np.float32]) -> NDArray[np.float32]:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))).astype(np.float32, copy=False)


class ClassicalParams(ComponentParams):
    """Parameters of :class:`ClassicalSegmenter` (documented there)."""

    method: Literal["polar", "random_walker"] = "polar"
    work_size: int = Field(default=96, ge=16)
    context: float = Field(default=0.25, ge=0.0, le=2.0)
    smoothing: float = Field(default=1.5, ge=0.0)
    w_prior: float = Field(default=0.5, ge=0.0)
    w_edge: float = Field(default=1.0, ge=0.0)
    w_region: float = Field(default=0.3, ge=0.0)
    w_smooth: float = Field(default=0.15, ge=0.0)
    max_step: int = Field(default=2, ge=1, le=8)
    n_angles: int = Field(default=64, ge=8, le=512)
    stretch_to_box: bool = True
    grow_tolerance: float = Field(default=0.5, gt=0.0)
    grow_max_radius: float = Field(default=0.25, gt=0.0, le=1.0)
    point_radius: float = Field(default=0.08, gt=0.0, le=1.0)
    beta: float = Field(default=130.0, gt=0.0)
    prior_weight: float = Field(default=0.6, ge=0.0, le=1.0)
    polarity: Literal["dark", "bright", "auto"] = "dark"


@SEGMENTERS.register("classical")
class ClassicalSegmenter(Segmenter[ClassicalParams]):
    """Weight-free promptable segmenter (see the module docstring).

    Params:
        method: ``polar`` (star-shaped contour search, default) or ``random_walker`` (the old baseline).
        work_size: Long side, in pixels, of the crop the search runs on.
        context: Margin added around the prompt's box for the crop, as a fraction of its size.
        smoothing: Gaussian sigma in working pixels applied to the crop before the search (``polar``);
            in original pixels before the walker (``random_walker``).
        w_prior: Weight of the pull towards the ellipse (``polar``).
        w_edge: Weight of the dark-inside/bright-outside edge term (``polar``).
        w_region: Weight of the polar Chan-Vese region term (``polar``).
        w_smooth: Cost per radius bin of change between neighbouring angles (``polar``).
        max_step: Largest radius change, in bins, between neighbouring angles (``polar``).
        n_angles: Angles of the contour (``polar``).
        stretch_to_box: Treat a prompt box as tight: the contour is rescaled to touch all four sides.
        grow_tolerance: Points-only prompts: region growing accepts pixels up to this many intensity
            spreads (interquartile range of the crop) brighter than the seed.
        grow_max_radius: Points-only prompts: growing stays within this fraction of the short side.
        point_radius: Points-only fallback disk radius, as a fraction of the image's short side.
        beta: Random-walker edge sensitivity (``random_walker``).
        prior_weight: Weight of the prior in the blend with the walker (``random_walker``).
        polarity: What the object looks like: ``dark`` (darker inside than around, default: the search
            as described above), ``bright`` (brighter inside: the search runs on the negative image), or
            ``auto`` = decided per prompt from the image: the mean inside the ellipse inscribed in the
            prompt's box against the mean of the ring between the box and the box grown by ``context``
            (at least 2 pixels); for points only, disks of ``point_radius`` around the positive points
            against the whole image. Brighter inside = ``bright``.
    """

    def embed(self, image: NDArray[np.uint8]) -> ImageEmbedding:
        """Store the grey image in [0, 1] (float32); image (H, W) or (H, W, 3) uint8."""
        img = as_grey(as_image(image))  # the channels' mean / 255 (float32)
        if self.params.method == "random_walker" and self.params.smoothing > 0:
            img = ndi.gaussian_filter(img, self.params.smoothing)
        return ImageEmbedding(original_size=(img.shape[0], img.shape[1]), data=img)

    # ------------------------------------------------------------------ polar method
    def _polar_params(self) -> PolarParams:
        p = self.params
        return PolarParams(n_angles=p.n_angles, w_prior=p.w_prior, w_edge=p.w_edge, w_region=p.w_region,
                           w_smooth=p.w_smooth, max_step=p.max_step)

    def _crop(self, img: NDArray[np.float32], box: NDArray[np.float64]) -> tuple[NDArray[np.float32], tuple[int, int, int, int], float, float]:
        """Crop around ``box`` with context, smoothed, at working resolution; returns crop, window, sx, sy."""
        H, W = img.shape
        p = self.params
        x0, y0, x1, y1 = box
        mx, my = p.context * max(x1 - x0, 2.0), p.context * max(y1 - y0, 2.0)
        wx0, wy0 = int(max(0, np.floor(x0 - mx))), int(max(0, np.floor(y0 - my)))
        wx1, wy1 = int(min(W, np.ceil(x1 + mx))), int(min(H, np.ceil(y1 + my)))
        wx1, wy1 = max(wx1, wx0 + 1), max(wy1, wy0 + 1)
        crop = img[wy0:wy1, wx0:wx1]
        scale = min(1.0, p.work_size / max(crop.shape))
        shape = (max(2, round(crop.shape[0] * scale)), max(2, round(crop.shape[1] * scale)))
        small = resize(crop, shape, order=1, anti_aliasing=scale < 1.0).astype(np.float32)
        if p.smoothing > 0:
            small = ndi.gaussian_filter(small, p.smoothing)
        return small, (wx0, wy0, wx1, wy1), shape[1] / crop.shape[1], shape[0] / crop.shape[0]

    def _contour(self, img: NDArray[np.float32], box: NDArray[np.float64], prompt: Prompt, tight: bool) -> tuple[NDArray[np.bool_], float]:
        H, W = img.shape
        small, (wx0, wy0, wx1, wy1), sx, sy = self._crop(img, box)
        to_small = np.array([sx, sy])
        off = np.array([wx0, wy0], np.float64)
        lb = np.array([(box[0] - wx0) * sx, (box[1] - wy0) * sy, (box[2] - wx0) * sx, (box[3] - wy0) * sy])
        centre = ((lb[0] + lb[2]) / 2.0, (lb[1] + lb[3]) / 2.0)
        radii = ((lb[2] - lb[0]) / 2.0, (lb[3] - lb[1]) / 2.0)
        pos = (prompt.points[prompt.point_labels == 1] - off) * to_small
        neg = (prompt.points[prompt.point_labels == 0] - off) * to_small
        xs, ys, score = polar_contour(small, centre, radii, self._polar_params(), box=lb, positives=pos,
                                      negatives=neg, stretch=tight and self.params.stretch_to_box)
        xs, ys = xs / sx + wx0, ys / sy + wy0
        full = np.zeros((H, W), bool)
        ctr = ((box[0] + box[2]) / 2.0 - wx0, (box[1] + box[3]) / 2.0 - wy0)
        full[wy0:wy1, wx0:wx1] = rasterise_star(xs - wx0, ys - wy0, ctr, (wy1 - wy0, wx1 - wx0))
        return full, score

    def _grow(self, img: NDArray[np.float32], pos: NDArray[np.float32]) -> NDArray[np.float64] | None:
        """Box of the region grown from the positive points (original pixels), or ``None``."""
        H, W = img.shape
        p = self.params
        rad = p.grow_max_radius * min(H, W)
        boxes = []
        for x, y in pos:
            win = np.array([x - rad, y - rad, x + rad, y + rad])
            small, (wx0, wy0, _, _), sx, sy = self._crop(img, win)
            h, w = small.shape
            px, py = (x - wx0) * sx, (y - wy0) * sy
            ix, iy = int(np.clip(px, 0, w - 1)), int(np.clip(py, 0, h - 1))
            seed = float(np.median(small[max(0, iy - 1):iy + 2, max(0, ix - 1):ix + 2]))
            q1, q3 = np.percentile(small, [25, 75])
            spread = max(float(q3 - q1), 0.02)
            yy, xx = np.mgrid[0:h, 0:w]
            disk = ((xx + 0.5 - px) / (rad * sx)) ** 2 + ((yy + 0.5 - py) / (rad * sy)) ** 2 <= 1.0
            cand = (small <= seed + p.grow_tolerance * spread) & disk
            cand = ndi.binary_opening(cand, iterations=1)
            lab, _ = ndi.label(cand)
            if lab[iy, ix] == 0:
                continue
            region = ndi.binary_fill_holes(lab == lab[iy, ix])
            b = mask_to_box(region)
            if b is None or region.sum() < 9:
                continue
            boxes.append(np.array([b[0] / sx + wx0, b[1] / sy + wy0, b[2] / sx + wx0, b[3] / sy + wy0]))
        if not boxes:
            return None
        arr = np.array(boxes)
        return np.array([arr[:, 0].min(), arr[:, 1].min(), arr[:, 2].max(), arr[:, 3].max()])

    def _decode_polar(self, img: NDArray[np.float32], prompt: Prompt) -> tuple[NDArray[np.bool_], float]:
        H, W = img.shape
        pos = prompt.points[prompt.point_labels == 1]
        box: NDArray[np.float64] | None
        if prompt.box is not None:
            box = np.asarray(prompt.box, np.float64)
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                return np.zeros((H, W), bool), 0.0
            return self._contour(img, box, prompt, tight=True)
        box = None
        if len(pos):
            box = self._grow(img, pos)
            if box is None:
                r = self.params.point_radius * min(H, W)
                box = np.array([pos[:, 0].min() - r, pos[:, 1].min() - r, pos[:, 0].max() + r, pos[:, 1].max() + r])
            else:  # a grown box is a loose estimate: give the contour some room
                cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                hw, hh = (box[2] - box[0]) / 2 * 1.15 + 1, (box[3] - box[1]) / 2 * 1.15 + 1
                box = np.array([cx - hw, cy - hh, cx + hw, cy + hh])
        elif prompt.mask_logits is not None:
            logits = prompt.mask_logits
            if logits.shape != (H, W):
                logits = resize(logits, (H, W), order=1, preserve_range=True).astype(np.float32)
            b = mask_to_box(keep_components(logits > 0, "largest"))
            box = None if b is None else b.astype(np.float64)
        if box is None:
            return np.zeros((H, W), bool), 0.0
        box = np.clip(box, 0, [W, H, W, H])
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            return np.zeros((H, W), bool), 0.0
        return self._contour(img, box, prompt, tight=False)

    # ------------------------------------------------------------------ random-walker method (baseline)
    def _prior(self, prompt: Prompt, H: int, W: int) -> NDArray[np.float32]:
        p = self.params
        prior = np.zeros((H, W), np.float32)
        if prompt.box is not None:
            prior = _soft_ellipse(prompt.box, H, W)
        pos = prompt.points[prompt.point_labels == 1]
        neg = prompt.points[prompt.point_labels == 0]
        if len(pos) and prompt.box is None:
            rad = p.point_radius * min(H, W)
            yy, xx = np.mgrid[0:H, 0:W].astype(np.float32) + 0.5
            for x, y in pos:
                d = np.sqrt((xx - x) ** 2 + (yy - y) ** 2) / rad
                prior = np.maximum(prior, np.clip(1.5 - d, 0.0, 1.0))
        if prompt.mask_logits is not None:
            logits = prompt.mask_logits
            if logits.shape != (H, W):
                logits = resize(logits, (H, W), order=1, preserve_range=True).astype(np.float32)
            prior = np.maximum(prior, _sigmoid(logits))
        if len(neg):
            yy, xx = np.mgrid[0:H, 0:W].astype(np.float32) + 0.5
            rad = 0.03 * min(H, W) + 1
            for x, y in neg:
                prior[(xx - x) ** 2 + (yy - y) ** 2 <= rad**2] = 0.0
        return prior

    def _decode_walker(self, img: NDArray[np.float32], prompt: Prompt) -> tuple[NDArray[np.bool_], float]:
        H, W = img.shape
        prior = self._prior(prompt, H, W)
        if not (prior > 0.5).any():
            return np.zeros((H, W), bool), 0.0
        ys, xs = np.nonzero(prior > 0)
        pad = max(4, int(0.15 * max(np.ptp(ys) + 1, np.ptp(xs) + 1)))
        y0, y1 = max(0, ys.min() - pad), min(H, ys.max() + 1 + pad)
        x0, x1 = max(0, xs.min() - pad), min(W, xs.max() + 1 + pad)
        crop, pcrop = img[y0:y1, x0:x1], prior[y0:y1, x0:x1]
        scale = min(1.0, self.params.work_size / max(crop.shape))
        shape = (max(2, round(crop.shape[0] * scale)), max(2, round(crop.shape[1] * scale)))
        small = resize(crop, shape, order=1, anti_aliasing=True).astype(np.float64)
        psmall = resize(pcrop, shape, order=1).astype(np.float32)
        seeds = np.zeros(shape, np.int32)
        seeds[psmall >= 0.85] = 1
        seeds[psmall <= 0.0] = 2
        seeds[[0, -1], :] = np.where(seeds[[0, -1], :] == 1, 1, 2)
        seeds[:, [0, -1]] = np.where(seeds[:, [0, -1]] == 1, 1, 2)
        walk = psmall
        lo, hi = float(small.min()), float(small.max())
        # A flat crop has no edges to walk along (skimage would divide by its zero std): keep the prior.
        if (seeds == 1).any() and (seeds == 2).any() and (seeds == 0).any() and hi - lo > 1e-6:
            norm = (small - lo) / (hi - lo)
            try:
                walk = random_walker(norm, seeds, beta=self.params.beta, mode="cg_j", return_full_prob=True)[0]
            except Exception:  # noqa: BLE001 - degenerate systems fall back to the prior
                walk = psmall
            if not np.all(np.isfinite(walk)):
                walk = psmall
        w = self.params.prior_weight
        prob_small = w * psmall + (1.0 - w) * walk.astype(np.float32)
        prob = resize(prob_small, crop.shape, order=1).astype(np.float32)
        full = np.zeros((H, W), bool)
        full[y0:y1, x0:x1] = prob > 0.5
        full = keep_components(full, "max_cam", cam=prior)
        score = float(prob[full[y0:y1, x0:x1]].mean()) if full.any() else 0.0
        return full, score

    def bright_inside(self, img: NDArray[np.float32], prompt: Prompt) -> bool:
        """Whether the prompted object is brighter than its surroundings (``polarity="auto"``).

        Args:
            img: (H, W) grey image in [0, 1] (the embedding's data).
            prompt: Its box, else its positive points, decide.
        """
        H, W = img.shape
        pos = prompt.points[prompt.point_labels == 1]
        if prompt.box is not None:
            box = np.asarray(prompt.box, np.float64)
        elif len(pos):  # the object's size is unknown: a disk at each point against the whole image
            r = max(1.0, self.params.point_radius * min(H, W))
            yy, xx = np.mgrid[0:H, 0:W] + 0.5
            disk = np.zeros((H, W), bool)
            for x, y in pos:
                disk |= (xx - x) ** 2 + (yy - y) ** 2 <= r * r
            return bool(disk.any() and img[disk].mean() > img.mean())
        else:
            return False
        box = np.clip(box, 0, [W, H, W, H])
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            return False
        inside = _soft_ellipse(box.astype(np.float32), H, W) >= 0.5
        m = max(2.0, self.params.context * max(box[2] - box[0], box[3] - box[1]))
        x0, y0 = int(max(0, np.floor(box[0] - m))), int(max(0, np.floor(box[1] - m)))
        x1, y1 = int(min(W, np.ceil(box[2] + m))), int(min(H, np.ceil(box[3] + m)))
        ring = np.zeros((H, W), bool)
        ring[y0:y1, x0:x1] = True
        ring[int(box[1]):int(np.ceil(box[3])), int(box[0]):int(np.ceil(box[2]))] = False
        if not inside.any() or not ring.any():
            return False
        return bool(img[inside].mean() > img[ring].mean())

    # ------------------------------------------------------------------ public
    def decode(self, embedding: ImageEmbedding, prompts: Sequence[Prompt]) -> Segmentation:
        """Decode each prompt; returns (K, H, W) masks and (K,) confidence scores in [0, 1]."""
        img: Any = embedding.data
        if not prompts:
            return self.empty(embedding)
        one = self._decode_polar if self.params.method == "polar" else self._decode_walker
        negative: list[Any] = []  # the negative image, made once when needed

        def oriented(prompt: Prompt) -> Any:
            if self.params.polarity == "dark" or (self.params.polarity == "auto"
                                                  and not self.bright_inside(img, prompt)):
                return img
            if not negative:
                negative.append((1.0 - img).astype(np.float32))
            return negative[0]

        outs = [one(oriented(p), p) for p in prompts]
        return Segmentation(
            masks=np.stack([o[0] for o in outs]), scores=np.array([o[1] for o in outs], np.float32)
        )
