"""A run's masks as NIfTI label volumes aligned with its NIfTI / DICOM inputs (extra ``samprompt[medical]``).

For each input file (a NIfTI volume or a DICOM file) that has at least one finished image in the run, one
label volume ``<out>/<stem>.nii.gz`` with the input's voxel grid:

* NIfTI input: the same shape and affine (the input header's ``qform`` / ``sform`` codes are kept);
* DICOM input: shape ``(Columns, Rows, frames)`` and the affine built from ImagePositionPatient /
  ImageOrientationPatient / PixelSpacing (see :func:`~samprompt.data.medical_geometry.slice_geometry`).

Each finished slice / frame is written where it came from (image ``mask[y, x]`` → voxel
``[x, y]`` of the slice), voxels of slices the run did not process stay 0; ``index.json`` lists, per
label file, its input file and the slices written (``axis``, indices). Values: 1 = foreground
(``labels="class"``: the class index, 1.. in sorted class order), uint8. ``<stem>`` is the run-folder
stem of the input's base id (the id without ``#z042``), so names are ASCII and unique.

Runs whose inputs are PNG / JPEG have no voxel grid to align with: :func:`export_nifti` refuses them
with a :class:`~samprompt.errors.ConfigError` naming the first such image.
"""

from __future__ import annotations

import gzip
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from samprompt.data.medical import is_medical
from samprompt.data.medical_geometry import slice_geometry
from samprompt.errors import ConfigError
from samprompt.export._run import RunOutputs
from samprompt.runner.outputs import atomic_write_bytes, atomic_write_json, safe_name

__all__ = ["export_nifti"]

log = logging.getLogger(__name__)

_PART = re.compile(r"#[fxyz]\d+$")  # the frame / slice suffix of a sample id


@dataclass
class _Volume:
    base: str
    path: Path
    shape: tuple[int, ...]
    affine: NDArray[np.float64]
    kind: str
    axis: int | None
    data: NDArray[np.uint8]
    written: list[int] = field(default_factory=list)


def _nibabel() -> Any:
    try:
        import nibabel
    except ImportError:
        raise ConfigError("export format 'nifti' needs nibabel: pip install 'samprompt[medical]'") from None
    return nibabel


def export_nifti(
    run: RunOutputs,
    out: Path,
    *,
    strategy: str | None = None,
    source: str = "cam",
    labels: Literal["lesion", "class"] = "lesion",
) -> Path:
    """Write one label volume per NIfTI / DICOM input file of a run, on the input's voxel grid.

    Args:
        run: The run folder (its data must still be where the run read them: headers are read again).
        out: Output folder (created).
        strategy: Strategy label whose masks are written (default: the run's first).
        source: ``cam`` (pseudo labels) or ``gt`` (masks prompted from ground truth).
        labels: ``lesion`` (foreground = 1) or ``class`` (foreground = the image's class index).

    Returns:
        ``out``.

    Raises:
        ConfigError: A run input is not NIfTI / DICOM, nibabel is missing, unknown strategy / source.
        DataError: The run's data cannot be opened again or a header / mask is unreadable.
    """
    nib = _nibabel()
    if labels not in ("lesion", "class"):
        raise ConfigError(f"labels must be 'lesion' or 'class', got {labels!r}")
    label = run.resolve(strategy, source)
    ds = run.dataset()
    values = {c: (1 if labels == "lesion" else k) for k, c in enumerate(run.classes, start=1)}
    volumes: dict[Path, _Volume] = {}
    for im in run.images:
        sample = ds[ds.position(im.id)]
        if not is_medical(sample.image_path):
            raise ConfigError(
                f"export format 'nifti' needs NIfTI or DICOM inputs, but image {im.id!r} of run "
                f"{str(run.dir)!r} is {sample.image_path.name!r}; use --format nnunet or coco"
            )
        geo = slice_geometry(sample)
        vol = volumes.get(geo.path)
        if vol is None:
            vol = _Volume(_PART.sub("", im.id), geo.path, geo.shape, np.array(geo.affine), geo.kind, geo.axis,
                          np.zeros(geo.shape, np.uint8))
            volumes[geo.path] = vol
        plane = np.where(run.mask(im, label, source), values[im.label], 0).astype(np.uint8).T  # [x, y]
        if geo.axis is None:
            vol.data[...] = plane
        else:
            key: list[Any] = [slice(None)] * len(geo.shape)
            key[geo.axis] = geo.index
            vol.data[tuple(key)] = plane
        vol.written.append(geo.index)
    out.mkdir(parents=True, exist_ok=True)
    index: dict[str, dict[str, Any]] = {}
    for vol in volumes.values():
        if vol.kind == "nifti":
            src = nib.load(str(vol.path))
            img = nib.Nifti1Image(vol.data, src.affine, header=src.header)
        else:
            img = nib.Nifti1Image(vol.data, vol.affine)
        img.set_data_dtype(np.uint8)
        img.header.set_slope_inter(1.0, 0.0)
        name = f"{safe_name(vol.base)}.nii.gz"
        atomic_write_bytes(out / name, gzip.compress(img.to_bytes(), compresslevel=6))
        index[name] = {"source": str(vol.path), "id": vol.base, "axis": vol.axis, "slices": sorted(vol.written)}
    atomic_write_json(out / "index.json", {"run": str(run.dir), "strategy": label, "source": source,
                                           "labels": labels, "files": index})
    log.info("wrote %d NIfTI label volumes to %s", len(index), out)
    return out

