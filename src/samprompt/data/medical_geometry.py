"""Where a DICOM / NIfTI sample's 2D image sits in its file: shape, slice, affine (for aligned exports).

:func:`slice_geometry` reads headers only (extra ``samprompt[medical]``). Conventions are those of
:mod:`samprompt.data.medical`: NIfTI voxels are not reoriented, an image is ``data[:, :, k].T`` of its
volume; a DICOM file is the volume ``(Columns, Rows, frames)``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from samprompt.data.medical import (
    _AXES,
    DICOM_SUFFIXES,
    _dicom_header,
    _image_shape,
    _nifti,
    _part,
    _require,
    _suffix,
)
from samprompt.errors import DataError

if TYPE_CHECKING:
    from samprompt.data.datasets import Sample

__all__ = ["SliceGeometry", "slice_geometry"]


@dataclasses.dataclass(frozen=True)
class SliceGeometry:
    """Where a sample's 2D image sits in its file (for writing aligned label volumes).

    Attributes:
        path: The image file.
        kind: ``"nifti"`` or ``"dicom"``.
        shape: The file's voxel shape: NIfTI ``(X, Y[, Z])``; DICOM ``(Columns, Rows, frames)``.
        axis: Voxel axis the image was cut along (DICOM: 2, the frame axis), or ``None`` for a 2D file.
        index: Slice / frame index along ``axis`` (0 for a 2D file).
        affine: 4 x 4 voxel → world (RAS+, mm) matrix: the NIfTI's own, or built from the DICOM's
            ImagePositionPatient / ImageOrientationPatient / PixelSpacing (identity directions and 1 mm
            when absent).
        axcodes: Orientation codes of the voxel axes, e.g. ``("R", "A", "S")``.
    """

    path: Path
    kind: str
    shape: tuple[int, ...]
    axis: int | None
    index: int
    affine: tuple[tuple[float, ...], ...]
    axcodes: tuple[str, ...]


def _dicom_affine(ds: Any) -> NDArray[np.float64]:
    iop = getattr(ds, "ImageOrientationPatient", None)
    ipp = getattr(ds, "ImagePositionPatient", None)
    ps = getattr(ds, "PixelSpacing", None)
    try:
        row_cos = np.array([float(v) for v in iop[:3]]) if iop else np.array([1.0, 0.0, 0.0])
        col_cos = np.array([float(v) for v in iop[3:6]]) if iop else np.array([0.0, 1.0, 0.0])
        dy, dx = (float(ps[0]), float(ps[1])) if ps else (1.0, 1.0)
        origin = np.array([float(v) for v in ipp[:3]]) if ipp else np.zeros(3)
        dz = float(getattr(ds, "SpacingBetweenSlices", None) or getattr(ds, "SliceThickness", None) or 1.0)
    except (TypeError, ValueError, IndexError):
        row_cos, col_cos, dx, dy, origin, dz = np.eye(3)[0], np.eye(3)[1], 1.0, 1.0, np.zeros(3), 1.0
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1] = row_cos * dx, col_cos * dy  # voxel i = column, j = row
    lps[:3, 2], lps[:3, 3] = np.cross(row_cos, col_cos) * dz, origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM LPS → NIfTI RAS


def slice_geometry(sample: Sample) -> SliceGeometry:
    """The file, shape, affine and slice of a DICOM / NIfTI sample (headers only).

    Raises:
        DataError: If the sample is not a DICOM / NIfTI file or its header is unreadable.
    """
    path, part = sample.image_path, _part(sample)
    kind = _suffix(path)
    if kind is None:
        raise DataError(f"{str(path)!r} is not a DICOM or NIfTI file")
    nib = _require("nibabel", path)
    if kind in DICOM_SUFFIXES:
        ds = _dicom_header(path)
        vol, _ = _image_shape(sample)
        affine = _dicom_affine(ds)
        shape: tuple[int, ...] = (vol[2], vol[1], vol[0])
        axis: int | None = 2
    else:
        img = _nifti(path)
        affine = np.asarray(img.affine, dtype=np.float64)
        shape = tuple(int(n) for n in img.shape[:3])
        axis = None if part is None else _AXES[part[0]]
    codes = tuple(str(c) for c in nib.aff2axcodes(affine))
    rows = tuple(tuple(float(v) for v in r) for r in affine)
    return SliceGeometry(path, "dicom" if kind in DICOM_SUFFIXES else "nifti", shape, axis,
                         0 if part is None else part[1], rows, codes)
