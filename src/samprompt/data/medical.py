"""DICOM and NIfTI files as 2D images and masks (optional extra ``samprompt[medical]``).

The readers (:mod:`samprompt.data.readers`) list ``.dcm`` / ``.dicom`` (pydicom) and ``.nii`` /
``.nii.gz`` (nibabel) files like PNGs, in class folders and CSV manifests, and :func:`expand` turns each
file into one :class:`~samprompt.data.datasets.Sample` per 2D image:

* **DICOM**: a single-frame file is one image with the usual id (``benign/case1``); a multi-frame file
  gives one image per frame, ids ``benign/case1#f000``, ``#f001``, ...
* **NIfTI**: a 2D file is one image; a 3D file (or 4D with one volume) gives one image per slice along
  the chosen axis (``z`` by default; a manifest's optional ``axis`` column picks ``x``, ``y`` or ``z``),
  ids ``benign/vol#z000``, ``#z001``, ... The voxel order is kept (no reorientation); a slice
  ``data[:, :, k]`` becomes the image ``data[:, :, k].T``, so image column ``x`` = first remaining voxel
  index and row ``y`` = second. :func:`~samprompt.data.medical_geometry.slice_geometry` records the
  affine and axis codes.

Unless a manifest gives a ``group``, all images of one file share a group (the file), so a split never
puts slices of one volume on both sides.

Grey values to uint8 (the (H, W, 3) uint8 convention of :mod:`samprompt.data.io`):

* DICOM: ``value = stored * RescaleSlope + RescaleIntercept``; with a ``WindowCenter`` / ``WindowWidth``
  (the first value when several are given) ``[c - w/2, c + w/2]`` maps linearly to ``0..255`` (clipped);
  without one, the frame's own ``min..max`` does. ``MONOCHROME1`` is inverted afterwards (so bright =
  dense always). RGB DICOMs (3 samples per pixel) are used as is (scaled like ``io`` when not 8-bit).
* NIfTI: the scaled data (``scl_slope`` / ``scl_inter``); ``cal_min..cal_max`` maps to ``0..255`` when
  the header sets them (``cal_max > cal_min``), else the slice's own ``min..max``.

Masks: a DICOM / NIfTI mask file gives the same frame / slice of its volume, non-zero = foreground; its
volume must have the image's shape. A PNG mask is accepted for a single 2D image. Every failure (missing
package, unreadable file, shape mismatch) is a :class:`~samprompt.errors.DataError` naming the file(s).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from samprompt.data.io import StrPath
from samprompt.data.io import load_mask as _load_png_mask
from samprompt.errors import DataError

if TYPE_CHECKING:
    from samprompt.data.datasets import Sample

__all__ = [
    "DICOM_SUFFIXES",
    "MEDICAL_SUFFIXES",
    "NIFTI_SUFFIXES",
    "expand",
    "is_medical",
    "load_medical_image",
    "load_medical_mask",
    "medical_stem",
]

logger = logging.getLogger(__name__)

DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom")
NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")
#: File name endings (lower case) read by this module.
MEDICAL_SUFFIXES: tuple[str, ...] = DICOM_SUFFIXES + NIFTI_SUFFIXES
_AXES = {"x": 0, "y": 1, "z": 2}
_PART = re.compile(r"^#(?P<kind>[fxyz])(?P<index>\d+)$")
_EXTRA = "pip install 'samprompt[medical]'"
_CACHE_SIZE = 2  # decompressed .nii.gz volumes kept (see _gz_volume)
_CACHE: OrderedDict[tuple[str, int, int], NDArray[Any]] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _suffix(path: StrPath) -> str | None:
    name = Path(path).name.lower()
    return next((s for s in MEDICAL_SUFFIXES if name.endswith(s)), None)


def is_medical(path: StrPath) -> bool:
    """Whether ``path`` ends in a DICOM (``.dcm``, ``.dicom``) or NIfTI (``.nii``, ``.nii.gz``) suffix."""
    return _suffix(path) is not None


def medical_stem(path: StrPath) -> str:
    """The file name without its suffix: ``vol.nii.gz`` → ``vol``, ``a.png`` → ``a``."""
    p = Path(path)
    s = _suffix(p)
    return p.name[: -len(s)] if s else p.stem


def _require(module: str, path: Path) -> ModuleType:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(f"reading {str(path)!r} needs the {module!r} package: {_EXTRA}") from None


# -- reading files --------------------------------------------------------------------------------
def _dicom_header(path: Path) -> Any:
    pydicom = _require("pydicom", path)
    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as e:  # any decoder failure is a bad input file, never a crash
        raise DataError(f"DICOM file {str(path)!r} is not readable: {type(e).__name__}: {e}") from e


def _dicom_pixels(path: Path, frame: int | None) -> tuple[Any, NDArray[Any]]:
    """``(header, pixels)``: one frame (``frame``, or the first) of a multi-frame file, decoded alone."""
    ds = _dicom_header(path)
    n = _frames(ds)
    k = 0 if frame is None else frame
    if not 0 <= k < n:
        raise DataError(f"DICOM file {str(path)!r}: frame {k} is outside 0..{n - 1}")
    try:
        from pydicom.pixels.utils import pixel_array

        return ds, np.asarray(pixel_array(str(path), index=k if n > 1 else None))
    except ImportError:
        raise DataError(f"reading {str(path)!r} needs pydicom >= 3: {_EXTRA}") from None
    except Exception as e:  # any decoder failure is a bad input file, never a crash
        raise DataError(f"DICOM file {str(path)!r} is not readable: {type(e).__name__}: {e}") from e


def _frames(ds: Any) -> int:
    try:
        return max(1, int(getattr(ds, "NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _nifti(path: Path) -> Any:
    nib = _require("nibabel", path)
    try:
        img = nib.load(str(path))
        shape = tuple(int(n) for n in img.shape)
    except Exception as e:  # any decoder failure is a bad input file
        raise DataError(f"NIfTI file {str(path)!r} is not readable: {type(e).__name__}: {e}") from e
    if not (len(shape) in (2, 3) or (len(shape) == 4 and shape[3] == 1)):
        raise DataError(f"NIfTI file {str(path)!r} has shape {shape}; only 2D, 3D (or 4D with one volume) are read")
    return img


def _nifti_slice(img: Any, path: Path, axis: int | None, index: int) -> NDArray[np.float64]:
    """(H, W) float64: the 2D data (``axis is None``) or slice ``index`` along ``axis``, transposed."""
    shape = tuple(int(n) for n in img.shape)
    try:
        if axis is None:
            if len(shape) != 2:
                raise DataError(f"NIfTI file {str(path)!r} is {len(shape)}D; its images need a slice id (#z000)")
            data = np.asarray(img.dataobj, dtype=np.float64)
        else:
            if not 0 <= index < shape[axis]:
                raise DataError(f"NIfTI file {str(path)!r}: slice {index} is outside 0..{shape[axis] - 1}")
            key: list[Any] = [slice(None)] * len(shape)
            key[axis] = index
            if len(shape) == 4:
                key[3] = 0
            whole = _gz_volume(img, path) if _suffix(path) == ".nii.gz" else None
            data = np.asarray((img.dataobj if whole is None else whole)[tuple(key)], dtype=np.float64)
    except DataError:
        raise
    except Exception as e:  # truncated / corrupt data
        raise DataError(f"NIfTI file {str(path)!r} cannot be decoded: {type(e).__name__}: {e}") from e
    return np.ascontiguousarray(data.T)


def _gz_volume(img: Any, path: Path) -> NDArray[Any]:
    """The whole (scaled) data of a ``.nii.gz`` volume, decompressed once and kept for the next slices.

    Reading one slice of a gzip file decompresses everything before it, so slicing a volume slice by slice
    would cost O(slices²); the last :data:`_CACHE_SIZE` volumes are kept (keyed by path, size and
    modification time, so a changed file is read again). Thread-safe.
    """
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    data = np.asarray(img.dataobj)
    with _CACHE_LOCK:
        _CACHE[key] = data
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return data


def _to_u8(v: NDArray[np.float64], lo: float, hi: float) -> NDArray[np.uint8]:
    v = np.nan_to_num(v, nan=lo, posinf=hi, neginf=lo)
    if not hi > lo:
        return np.zeros(v.shape, np.uint8)
    return np.clip(np.rint((v - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def _first(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value[0] if isinstance(value, Sequence) and not isinstance(value, str) else value)
    except (TypeError, ValueError, IndexError):
        return None


def _grey3(u8: NDArray[np.uint8]) -> NDArray[np.uint8]:
    return np.repeat(u8[:, :, None], 3, axis=2)


# -- ids ------------------------------------------------------------------------------------------
def _part(sample: Sample) -> tuple[str, int] | None:
    """``("f" | "x" | "y" | "z", index)`` from the id's ``#...`` suffix, or ``None`` for a whole file."""
    last = sample.id.rsplit("/", 1)[-1]
    stem = medical_stem(sample.image_path)
    if not last.startswith(stem):
        return None
    m = _PART.match(last[len(stem):])
    return (m.group("kind"), int(m.group("index"))) if m else None


def _base_id(sample: Sample) -> str:
    sid = sample.id
    return sid[:-4] if sid.lower().endswith(".nii") and _suffix(sample.image_path) == ".nii.gz" else sid


def expand(sample: Sample, *, axis: str = "z") -> list[Sample]:
    """The samples of one listed file: itself (ordinary images, 2D files) or one per frame / slice.

    Only headers are read. A file whose header cannot be read stays one sample, so loading it fails
    with a :class:`~samprompt.errors.DataError` (recorded per image, like a broken PNG).

    Args:
        sample: As the reader made it (id from the file name).
        axis: NIfTI slicing axis, ``"x"``, ``"y"`` or ``"z"`` (voxel axes 0, 1, 2).

    Raises:
        DataError: If ``axis`` is not one of x, y, z (the message names the file).
    """
    kind = _suffix(sample.image_path)
    if kind is None:
        return [sample]
    if axis not in _AXES:
        raise DataError(f"{str(sample.image_path)!r}: slice axis {axis!r} is not one of 'x', 'y', 'z'")
    base = dataclasses.replace(sample, id=_base_id(sample))
    try:
        if kind in DICOM_SUFFIXES:
            n, tag = _frames(_dicom_header(sample.image_path)), "f"
            if n == 1:
                return [base]
        else:
            shape = _nifti(sample.image_path).shape
            if len(shape) == 2:
                return [base]
            n, tag = int(shape[_AXES[axis]]), axis
    except DataError as e:
        logger.warning("%s; it stays one image and will fail when loaded", e)
        return [base]
    width = max(3, len(str(n - 1)))
    group = sample.group if sample.group is not None else base.id
    return [dataclasses.replace(base, id=f"{base.id}#{tag}{k:0{width}d}", group=group) for k in range(n)]


# -- loading --------------------------------------------------------------------------------------
def _dicom_image(path: Path, frame: int | None) -> NDArray[np.uint8]:
    ds, arr = _dicom_pixels(path, frame)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if samples == 3 and arr.ndim == 3:
        if arr.dtype == np.uint8:
            return np.ascontiguousarray(arr)
        a = np.maximum(np.nan_to_num(arr.astype(np.float64)), 0.0)
        return _to_u8(a, 0.0, max(255.0, float(a.max())))
    if arr.ndim != 2:
        raise DataError(f"DICOM file {str(path)!r}: pixel data of shape {arr.shape} is not a 2D frame")
    slope = _first(getattr(ds, "RescaleSlope", None))
    intercept = _first(getattr(ds, "RescaleIntercept", None))
    v = arr.astype(np.float64) * (1.0 if slope is None else slope) + (intercept or 0.0)
    c, w = _first(getattr(ds, "WindowCenter", None)), _first(getattr(ds, "WindowWidth", None))
    if c is not None and w is not None and w > 0:
        u8 = _to_u8(v, c - w / 2.0, c + w / 2.0)
    else:
        finite = v[np.isfinite(v)]
        u8 = _to_u8(v, float(finite.min()), float(finite.max())) if finite.size else np.zeros(v.shape, np.uint8)
    if str(getattr(ds, "PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
        u8 = 255 - u8
    return _grey3(u8)


def load_medical_image(sample: Sample) -> NDArray[np.uint8]:
    """Decode the 2D image of a DICOM / NIfTI sample (frame or slice from its id).

    Returns:
        (H, W, 3) uint8, grey repeated over the channels (RGB DICOMs: their colours).

    Raises:
        DataError: Missing package, unreadable file, frame / slice out of range (names the file).
    """
    path, part = sample.image_path, _part(sample)
    if _suffix(path) in DICOM_SUFFIXES:
        if part is not None and part[0] != "f":
            raise DataError(f"DICOM file {str(path)!r}: id {sample.id!r} names a slice, not a frame (#f000)")
        return _dicom_image(path, None if part is None else part[1])
    img = _nifti(path)
    axis = None if part is None else _AXES.get(part[0])
    if part is not None and axis is None:
        raise DataError(f"NIfTI file {str(path)!r}: id {sample.id!r} names a frame, not a slice (#z000)")
    v = _nifti_slice(img, path, axis, 0 if part is None else part[1])
    lo, hi = float(img.header.get("cal_min", 0) or 0), float(img.header.get("cal_max", 0) or 0)
    if not hi > lo:
        finite = v[np.isfinite(v)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    return _grey3(_to_u8(v, lo, hi))


def _image_shape(sample: Sample) -> tuple[tuple[int, ...], tuple[int, int]]:
    """(volume shape as stored, (H, W) of one image) from the header only."""
    path, part = sample.image_path, _part(sample)
    if _suffix(path) in DICOM_SUFFIXES:
        ds = _dicom_header(path)
        try:
            hw = (int(ds.Rows), int(ds.Columns))
        except (AttributeError, TypeError, ValueError) as e:
            raise DataError(f"DICOM file {str(path)!r} has no Rows / Columns: {e}") from e
        return (_frames(ds), *hw), hw
    shape = tuple(int(n) for n in _nifti(path).shape[:3])
    if len(shape) == 2:
        return shape, (shape[1], shape[0])
    axis = _AXES.get(part[0], 2) if part is not None else 2
    rest = [n for k, n in enumerate(shape) if k != axis]
    return shape, (rest[1], rest[0])


def _medical_mask(sample: Sample, mpath: Path, vol_shape: tuple[int, ...]) -> NDArray[np.bool_]:
    part = _part(sample)
    what = f"mask file {str(mpath)!r} (image {str(sample.image_path)!r})"
    if _suffix(mpath) in DICOM_SUFFIXES:
        ds = _dicom_header(mpath)
        try:
            shape: tuple[int, ...] = (_frames(ds), int(ds.Rows), int(ds.Columns))
        except (AttributeError, TypeError, ValueError) as e:
            raise DataError(f"{what}: no Rows / Columns: {e}") from e
        if _suffix(sample.image_path) not in DICOM_SUFFIXES or shape != vol_shape:
            raise DataError(f"{what}: mask frames x rows x cols {shape} differ from the image's {vol_shape}")
        arr = _dicom_pixels(mpath, part[1] if part is not None else None)[1]
        return np.asarray(arr != 0)
    img = _nifti(mpath)
    shape = tuple(int(n) for n in img.shape[:3])
    if _suffix(sample.image_path) not in NIFTI_SUFFIXES or shape != vol_shape:
        raise DataError(f"{what}: mask volume shape {shape} differs from the image's {vol_shape}")
    axis = None if part is None else _AXES[part[0]]
    return np.asarray(_nifti_slice(img, mpath, axis, 0 if part is None else part[1]) != 0)


def load_medical_mask(sample: Sample) -> NDArray[np.bool_] | None:
    """The mask of a DICOM / NIfTI sample: its mask files' matching frame / slice, merged by OR.

    Returns:
        (H, W) bool (``True`` = foreground), or ``None`` when the sample has no mask file.

    Raises:
        DataError: Unreadable file, or a mask whose volume / size differs from the image's (names both).
    """
    if not sample.mask_paths:
        return None
    vol_shape, (h, w) = _image_shape(sample)
    merged = np.zeros((h, w), bool)
    for mp in sample.mask_paths:
        if is_medical(mp):
            m = _medical_mask(sample, mp, vol_shape)
        elif _part(sample) is None:
            m = _load_png_mask(mp, size=(w, h))
        else:
            raise DataError(
                f"mask file {str(mp)!r} is a 2D image but {str(sample.image_path)!r} holds several images; "
                f"give a mask volume in the image's format"
            )
        if m.shape != (h, w):
            raise DataError(f"mask file {str(mp)!r} is {m.shape[1]}x{m.shape[0]} (WxH) but the image is {w}x{h}")
        merged |= m
    return merged
