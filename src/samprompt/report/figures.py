"""Pictures for the report, drawn with numpy and PIL only (no plotting library).

Everything works on (H, W, 3) uint8 RGB arrays or PIL images and is downscaled to a small long side
first, so a report with dozens of panels stays a few hundred kilobytes to a few megabytes. Prompt
coordinates are in original-image pixels (boxes ``x0, y0, x1, y1``; points ``x, y``) and are scaled with
the picture.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage as ndi

__all__ = [
    "CAM_COLORS",
    "caption",
    "colorize",
    "data_uri",
    "draw_prompt",
    "histograms",
    "outline",
    "strip",
    "thumbnail",
]

#: Anchors of the CAM colour map (dark blue → cyan → yellow → red), evenly spaced over [0, 1].
CAM_COLORS: NDArray[np.float64] = np.array(
    [[20, 20, 90], [30, 110, 200], [40, 200, 200], [240, 230, 60], [220, 40, 30]], dtype=np.float64
)

CAM_COLOR = (255, 200, 0)
GT_COLOR = (40, 220, 60)
PRED_COLOR = (255, 60, 60)
PROMPT_COLOR = (0, 230, 255)


def _font(size: int = 10) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font without sizes
        return ImageFont.load_default()


def thumbnail(image: NDArray[Any], long_side: int) -> tuple[Image.Image, float]:
    """Downscale (never upscale) an (H, W) or (H, W, 3) uint8 array; return ``(image, scale)``."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    pil = Image.fromarray(np.ascontiguousarray(arr.astype(np.uint8)))
    scale = min(1.0, long_side / max(pil.size))
    if scale < 1.0:
        size = (max(1, round(pil.width * scale)), max(1, round(pil.height * scale)))
        pil = pil.resize(size, Image.Resampling.BILINEAR)
    return pil, scale


def colorize(cam: NDArray[np.floating]) -> NDArray[np.uint8]:
    """Map an (H, W) array in [0, 1] to (H, W, 3) uint8 colours with :data:`CAM_COLORS`."""
    v = np.clip(np.nan_to_num(np.asarray(cam, dtype=np.float64)), 0.0, 1.0) * (len(CAM_COLORS) - 1)
    lo = np.minimum(np.floor(v).astype(np.int64), len(CAM_COLORS) - 2)
    t = (v - lo)[..., None]
    rgb: NDArray[np.uint8] = np.rint(CAM_COLORS[lo] * (1 - t) + CAM_COLORS[lo + 1] * t).astype(np.uint8)
    return rgb


def blend(image: NDArray[np.uint8], overlay: NDArray[np.uint8], alpha: float) -> NDArray[np.uint8]:
    """``(1 - alpha) * image + alpha * overlay`` on (H, W, 3) uint8 arrays."""
    return np.rint(image.astype(np.float32) * (1 - alpha) + overlay.astype(np.float32) * alpha).astype(np.uint8)


def outline(
    image: NDArray[np.uint8], mask: NDArray[np.bool_] | None, color: tuple[int, int, int], *,
    fill: float = 0.0, width: int = 1,
) -> NDArray[np.uint8]:
    """Draw a mask's boundary (``width`` px) and an optional translucent fill on an (H, W, 3) image."""
    out = np.array(image, dtype=np.uint8, copy=True)
    if mask is None or not mask.any():
        return out
    m = np.asarray(mask, dtype=bool)
    col = np.array(color, dtype=np.float32)
    if fill > 0:
        out[m] = np.rint(out[m] * (1 - fill) + col * fill).astype(np.uint8)
    edge = m & ~ndi.binary_erosion(m, iterations=max(1, width), border_value=0)
    out[edge] = col.astype(np.uint8)
    return out


def resize_mask(mask: NDArray[np.bool_], size: tuple[int, int]) -> NDArray[np.bool_]:
    """Nearest-neighbour resize of a bool mask to PIL ``size`` = (width, height)."""
    pil = Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255)
    return np.asarray(pil.resize(size, Image.Resampling.NEAREST)) > 127


def draw_prompt(pil: Image.Image, prompt: Mapping[str, Any] | None, scale: float,
                color: tuple[int, int, int] = PROMPT_COLOR) -> Image.Image:
    """Draw a prompt (``Prompt.to_dict()`` form) onto ``pil`` in place: box outline, stars for points."""
    if not prompt:
        return pil
    d = ImageDraw.Draw(pil)
    box = prompt.get("box")
    if box is not None:
        x0, y0, x1, y1 = (float(v) * scale for v in box)
        d.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=color, width=1)
    for (x, y), lab in zip(prompt.get("points", []), prompt.get("point_labels", []), strict=False):
        cx, cy, r = x * scale, y * scale, 3
        c = (60, 255, 60) if lab == 1 else (255, 60, 200)
        d.line([cx - r, cy, cx + r, cy], fill=c, width=2)
        d.line([cx, cy - r, cx, cy + r], fill=c, width=2)
    return pil


def caption(pil: Image.Image, text: str, width: int | None = None) -> Image.Image:
    """The picture with a caption under it: one strip per line of ``text``, each clipped to the width."""
    w = width or pil.width
    font = _font(10)
    lines = text.split("\n")
    canvas = Image.new("RGB", (w, pil.height + 13 * len(lines) + 1), (255, 255, 255))
    canvas.paste(pil, ((w - pil.width) // 2, 0))
    d = ImageDraw.Draw(canvas)
    for k, line in enumerate(lines):
        while line and d.textlength(line, font=font) > w - 2:
            line = line[:-2] + "…" if len(line) > 2 else ""
        d.text((1, pil.height + 1 + 13 * k), line, fill=(20, 20, 20), font=font)
    return canvas


def strip(tiles: Sequence[Image.Image], gap: int = 3) -> Image.Image:
    """Tiles side by side on white, top-aligned."""
    if not tiles:
        return Image.new("RGB", (1, 1), (255, 255, 255))
    w = sum(t.width for t in tiles) + gap * (len(tiles) - 1)
    h = max(t.height for t in tiles)
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    x = 0
    for t in tiles:
        canvas.paste(t, (x, 0))
        x += t.width + gap
    return canvas


def histograms(series: Mapping[str, Mapping[str, Sequence[float]]], *, bins: int = 10,
               size: tuple[int, int] = (220, 120)) -> Image.Image:
    """Small-multiple histograms over [0, 1]: one panel per key, bars for each sub-series.

    Args:
        series: Panel title → {series name → values}; NaN values are ignored. Series are drawn in
            the colours CAM-orange, GT-green, then grey.
        bins: Number of equal bins on [0, 1].
        size: (width, height) of one panel in pixels.
    """
    font = _font(10)
    colors = [CAM_COLOR, GT_COLOR, (140, 140, 140)]
    panels = []
    for title, sub in series.items():
        W, H = size
        img = Image.new("RGB", (W, H), (255, 255, 255))
        d = ImageDraw.Draw(img)
        left, bottom, top = 6, H - 16, 16
        d.text((left, 1), title, fill=(0, 0, 0), font=font)
        counts = []
        for vals in sub.values():
            v = np.asarray(list(vals), dtype=np.float64)
            v = v[np.isfinite(v)]
            counts.append(np.histogram(np.clip(v, 0, 1), bins=bins, range=(0.0, 1.0))[0] / max(1, v.size))
        peak = max([float(c.max()) for c in counts if c.size] + [1e-9])
        bw = (W - 2 * left) / bins
        k = max(1, len(counts))
        for s, c in enumerate(counts):
            for b, frac in enumerate(c):
                x0 = left + b * bw + s * bw / k
                h = (bottom - top) * frac / peak
                d.rectangle([x0, bottom - h, x0 + bw / k - 1, bottom], fill=colors[min(s, 2)])
        d.line([left, bottom, W - left, bottom], fill=(0, 0, 0))
        d.text((left, bottom + 2), "0", fill=(0, 0, 0), font=font)
        d.text((W - left - 6, bottom + 2), "1", fill=(0, 0, 0), font=font)
        x = left + 20
        for s, name in enumerate(sub):
            d.rectangle([x, bottom + 5, x + 6, bottom + 11], fill=colors[min(s, 2)])
            d.text((x + 9, bottom + 2), name, fill=(0, 0, 0), font=font)
            x += 12 + int(d.textlength(name, font=font)) + 8
        panels.append(img)
    return strip(panels, gap=8)


def data_uri(pil: Image.Image, colors: int = 192) -> str:
    """A ``data:image/png;base64,...`` URI of ``pil``, palette-quantised to keep it small."""
    buf = io.BytesIO()
    q = pil.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    q.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
