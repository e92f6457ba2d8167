"""Loading images and masks from files into the arrays samprompt works with.

Conventions:

* An image is a (H, W, 3) ``uint8`` RGB array, indexed ``image[y, x, channel]``.
* A mask is a (H, W) ``bool`` array, ``True`` = foreground (lesion / object).
* Pixels are used as stored: EXIF orientation tags are ignored, so an image and its mask (which
  rarely carries the same tag) stay aligned.

Image modes (see :func:`image_to_rgb`):

* ``RGB`` as is; ``L`` and ``1`` are repeated over three channels (``1`` gives 0 / 255).
* ``RGBA``, ``LA``, ``PA``: the alpha channel is dropped, not composited over a background.
* ``P`` (palette): the palette colours are looked up.
* More than 8 bits (``I;16``, ``I;16B``, ``I``, ``F``): negative values and NaN become 0, and the
  image is divided by ``max(255, image max) / 255`` and rounded. An image whose values fit in 8 bits is
  therefore unchanged, and a brighter one is stretched by *its own maximum* so that maximum becomes 255
  (a 12-bit scan stored in 16 bits stays visible, where the fixed ``/ 257`` would make it almost
  black). The scaling is per image, so absolute intensities are not comparable across such images.
* Anything else PIL can convert (``CMYK``, ``YCbCr``, ...) goes through ``convert("RGB")``.

Mask modes (see :func:`mask_to_bool`): a pixel is foreground when its value is non-zero. For colour
masks (``RGB``, ``P``) that means *any colour channel* non-zero; for masks with alpha (``RGBA``,
``LA``, ``PA``) the colour channels decide and a fully transparent pixel (alpha 0) is background
whatever colour it stores. Alpha alone never makes a pixel foreground: an opaque black pixel is
background.

Every failure to read a file (missing, zero bytes, truncated, not an image, a dangling symbolic link or a
link loop, no read permission, a decompression bomb beyond PIL's ``Image.MAX_IMAGE_PIXELS``) raises
:class:`~samprompt.errors.DataError` naming the file. A mask that looks lossy-compressed (a JPEG, even one
named ``.png``) is read but logged as a warning (:func:`lossy_mask_reason`).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from samprompt.errors import DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "image_size",
    "image_to_rgb",
    "load_image",
    "load_mask",
    "lossy_mask_reason",
    "mask_to_bool",
]

#: File name suffixes (lower case) taken as images by the class-folder reader.
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})

_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes PIL.UnidentifiedImageError and "image file is truncated"
    SyntaxError,  # some PIL plugins signal corrupt headers this way
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)

_HIGH_BIT_MODES = frozenset({"I", "F", "I;16", "I;16L", "I;16B", "I;16N"})

StrPath = str | PathLike[str]
_T = TypeVar("_T")
_OPEN_LOCK = threading.Lock()
log = logging.getLogger(__name__)

#: PIL formats that compress with loss: a mask stored so holds artefacts next to its edges.
LOSSY_FORMATS = frozenset({"JPEG", "MPO", "JPEG2000"})


def _bomb_error(p: Path, what: str, e: BaseException) -> DataError:
    """One message with one limit: PIL warns above ``MAX_IMAGE_PIXELS`` and fails above twice that;
    samprompt refuses both, so only ``MAX_IMAGE_PIXELS`` is quoted (with the file's own pixel count)."""
    found = re.search(r"\((\d+) pixels\)", str(e))
    size = f"{int(found.group(1))} pixels, " if found else ""
    return DataError(
        f"{what} file {str(p)!r} is too large to decode safely ({size}over the limit of "
        f"{Image.MAX_IMAGE_PIXELS} pixels, PIL's Image.MAX_IMAGE_PIXELS); if you trust the file, raise "
        "PIL.Image.MAX_IMAGE_PIXELS before running"
    )


def _unreadable(p: Path, what: str, e: OSError) -> DataError:
    """A DataError for a file that cannot be opened: broken link, permissions, or another OS error."""
    if p.is_symlink() and not p.exists():
        try:
            target = f" to {os.readlink(p)!r}"
        except OSError:
            target = ""
        kind = "a symbolic link loop" if e.errno == errno.ELOOP else "a dangling symbolic link"
        return DataError(f"{what} file {str(p)!r} is {kind}{target}; fix or remove the link")
    if isinstance(e, PermissionError):
        return DataError(f"{what} file {str(p)!r} cannot be read (permission denied); fix its permissions")
    return DataError(f"{what} file {str(p)!r} cannot be read: {e.strerror or e}")


def _open(p: Path, what: str) -> Image.Image:
    """Open ``p`` with PIL (header only), turning every failure into a DataError naming the file.

    PIL's decompression-bomb *warning* (between ``MAX_IMAGE_PIXELS`` and twice that) is raised as an
    error, so a file over the limit always fails the same way. ``warnings.catch_warnings`` is not
    thread-safe, so the (cheap) header parsing runs under a lock; decoding does not.
    """
    try:
        size = p.stat().st_size
    except OSError as e:
        raise _unreadable(p, what, e) from e
    if size == 0:
        raise DataError(f"{what} file {str(p)!r} is empty (0 bytes)")
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(p)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _bomb_error(p, what, e) from e
    except PermissionError as e:
        raise _unreadable(p, what, e) from e
    except _DECODE_ERRORS as e:
        raise DataError(f"{what} file {str(p)!r} is not a readable image: {e}") from e


def _read(path: StrPath, what: str, convert: Callable[[Image.Image], _T]) -> _T:
    """Open ``path``, decode it fully and return ``convert(image)``; failures become DataErrors."""
    p = Path(path)
    with _open(p, what) as im:
        try:
            im.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise _bomb_error(p, what, e) from e
        except _DECODE_ERRORS as e:
            raise DataError(f"{what} file {str(p)!r} is not a readable image: {e}") from e
        try:
            return convert(im)
        except _DECODE_ERRORS as e:
            raise DataError(f"{what} file {str(p)!r} (mode {im.mode}) cannot be converted: {e}") from e


def image_size(path: StrPath) -> tuple[int, int]:
    """Return ``(width, height)`` of an image file from its header, without decoding the pixels.

    Raises:
        DataError: If the file is missing, empty, not an image or over PIL's pixel limit.
    """
    with _open(Path(path), "image") as im:
        w, h = im.size
    return int(w), int(h)


def _scale_high_bit(arr: NDArray[np.generic]) -> NDArray[np.uint8]:
    """(H, W) integer or float array → (H, W) uint8, divided by ``max(255, max) / 255``."""
    a = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    np.maximum(a, 0.0, out=a)
    peak = float(a.max()) if a.size else 0.0
    if peak > 255.0:
        a *= 255.0 / peak
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def image_to_rgb(im: Image.Image) -> NDArray[np.uint8]:
    """Convert a decoded PIL image of any mode to a (H, W, 3) uint8 RGB array.

    See the module docstring for the rules per mode (alpha dropped, palettes looked up, more than
    8 bits scaled by ``max(255, image max)``).

    Raises:
        ValueError: If PIL cannot convert the mode to RGB (callers wrap it in a DataError).
    """
    mode = im.mode
    if mode == "RGB":
        return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))
    if mode in ("L", "1", "LA", "La"):
        grey = np.asarray(im.getchannel(0), dtype=np.uint8) if mode != "1" else np.asarray(im.convert("L"))
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in _HIGH_BIT_MODES:
        grey = _scale_high_bit(np.asarray(im))
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("RGBA", "RGBX", "RGBa"):
        return np.ascontiguousarray(np.asarray(im, dtype=np.uint8)[:, :, :3])
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def mask_to_bool(im: Image.Image) -> NDArray[np.bool_]:
    """Convert a decoded PIL mask of any mode to a (H, W) bool array (non-zero = foreground).

    Colour masks count a pixel as foreground when any colour channel is non-zero; when the mode has an
    alpha channel, a pixel with alpha 0 is background. See the module docstring.
    """
    mode = im.mode
    if mode == "1":
        return np.array(im, dtype=bool)
    if mode in ("L", *_HIGH_BIT_MODES):
        a = np.asarray(im)
        if a.dtype.kind == "f":
            a = np.nan_to_num(a, nan=0.0)
        return np.asarray(a != 0)
    if mode in ("P", "PA"):
        im = im.convert("RGBA")
        mode = "RGBA"
    elif mode not in ("LA", "La", "RGB", "RGBA", "RGBa"):
        im = im.convert("RGB")
        mode = "RGB"
    a = np.asarray(im)
    if mode in ("LA", "La"):
        return np.asarray((a[:, :, 0] != 0) & (a[:, :, 1] != 0))
    fg = np.any(a[:, :, :3] != 0, axis=2)
    if mode in ("RGBA", "RGBa"):
        fg &= a[:, :, 3] != 0
    return np.asarray(fg)


def lossy_mask_reason(im: Image.Image, path: StrPath | None = None) -> str | None:
    """Why a decoded mask looks lossy-compressed, or ``None``.

    A mask is flagged when its file is in a lossy format (JPEG, whatever its suffix says), or when it is
    an 8-bit grey mask with more than two distinct values some of which are non-zero but below an eighth
    of its maximum: the faint halo JPEG compression leaves next to edges. Under the non-zero rule
    (:func:`mask_to_bool`) such pixels count as foreground, so the lesion grows.

    Args:
        im: The mask, opened (and, for the value check, decodable) with PIL.
        path: Its file, to say when the suffix hides the format (a JPEG named ``.png``).
    """
    fmt = (im.format or "").upper()
    if fmt in LOSSY_FORMATS:
        suffix = Path(path).suffix.lower() if path is not None else ""
        named = f" (named {suffix})" if suffix and suffix not in (".jpg", ".jpeg", ".jp2", ".mpo") else ""
        return (f"is {fmt}-compressed{named}: lossy compression adds faint non-zero pixels next to the "
                "lesion's edges, which count as foreground; store masks as PNG")
    if im.mode == "L":
        counts = np.bincount(np.asarray(im, dtype=np.uint8).ravel(), minlength=256)
        values = np.flatnonzero(counts)
        peak = int(values[-1])
        faint = int(counts[1 : max(1, peak // 8)].sum()) if peak >= 8 else 0
        if values.size > 2 and faint:
            return (f"holds {values.size} distinct values, {faint} pixels of them non-zero but below "
                    f"{peak // 8} (an eighth of its maximum {peak}), as lossy compression leaves them; "
                    "they count as foreground")
    return None


_WARNED: set[str] = set()


def _mask_to_bool_checked(path: Path) -> Callable[[Image.Image], NDArray[np.bool_]]:
    def convert(im: Image.Image) -> NDArray[np.bool_]:
        key = str(path)
        if key not in _WARNED:
            reason = lossy_mask_reason(im, path)
            if reason is not None:
                _WARNED.add(key)
                log.warning("mask file %s %s", path, reason)
        return mask_to_bool(im)

    return convert


def load_image(path: StrPath) -> NDArray[np.uint8]:
    """Load an image file as a (H, W, 3) uint8 RGB array.

    Args:
        path: Any file PIL can read (PNG, JPEG, BMP, TIFF, ...), in any mode.

    Returns:
        (H, W, 3) uint8, C-contiguous.

    Raises:
        DataError: If the file is missing, empty, truncated, not an image, over PIL's pixel limit or
            in a mode that cannot be converted to RGB. The message names the file.
    """
    return _read(path, "image", image_to_rgb)


def load_mask(
    paths: StrPath | Sequence[StrPath],
    *,
    image_path: StrPath | None = None,
    size: tuple[int, int] | None = None,
) -> NDArray[np.bool_]:
    """Load one or several mask files and merge them by logical OR.

    Args:
        paths: One mask file or a non-empty sequence of them (e.g. BUSI's ``x_mask.png`` and
            ``x_mask_1.png``), all of the same size.
        image_path: The image the mask belongs to. When given (and ``size`` is not), the mask size is
            checked against the image's size read from its header.
        size: Expected ``(width, height)``; overrides ``image_path`` for the check.

    Returns:
        (H, W) bool, ``True`` = foreground in any of the files.

    Raises:
        DataError: If a file cannot be read, or a mask's size differs from the image's (or from the
            first mask's); the message names both files and both sizes.
    """
    items = [paths] if isinstance(paths, (str, PathLike)) else list(paths)
    if not items:
        raise DataError("load_mask needs at least one mask file, got none")
    against = "the expected size"
    if size is None and image_path is not None:
        size, against = image_size(image_path), f"image {str(image_path)!r}"
    merged: NDArray[np.bool_] | None = None
    for p in items:
        m = _read(p, "mask", _mask_to_bool_checked(Path(p)))
        msize = (int(m.shape[1]), int(m.shape[0]))
        if size is not None and msize != size:
            raise DataError(
                f"mask file {str(p)!r} is {msize[0]}x{msize[1]} (WxH) but {against} is {size[0]}x{size[1]}"
            )
        if merged is None:
            merged = m
            if size is None:
                size, against = msize, f"mask {str(p)!r}"
        else:
            merged |= m
    if merged is None:  # unreachable: items is non-empty
        raise DataError("load_mask needs at least one mask file, got none")
    return merged
