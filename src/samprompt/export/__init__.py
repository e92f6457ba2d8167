"""Exports of a finished run's masks: COCO RLE, an nnU-Net v2 raw data set, NIfTI label volumes.

:func:`export_run` is what ``samprompt export RUN --format coco|nnunet|nifti --out DIR`` calls:

* ``coco`` (:func:`~samprompt.export.coco.export_coco`, extra ``coco``): ``DIR/annotations.json``;
* ``nnunet`` (:func:`~samprompt.export.nnunet.export_nnunet`): ``imagesTr/``, ``labelsTr/``,
  ``dataset.json`` in ``DIR`` (name it ``$nnUNet_raw/DatasetXXX_Name``);
* ``nifti`` (:func:`~samprompt.export.nifti.export_nifti`, extra ``medical``): label volumes aligned
  with NIfTI / DICOM inputs.

Each exports the masks of one strategy (default: the run's first) prompted from one source (``cam``, the
pseudo labels, by default; ``gt`` for the ground-truth-prompted baseline).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Literal

from samprompt.errors import ConfigError
from samprompt.export._run import RunImage, RunOutputs
from samprompt.export.coco import export_coco
from samprompt.export.nifti import export_nifti
from samprompt.export.nnunet import export_nnunet

__all__ = ["FORMATS", "RunImage", "RunOutputs", "export_coco", "export_nifti", "export_nnunet", "export_run"]

#: Export formats, as ``--format`` takes them.
FORMATS: tuple[str, ...] = ("coco", "nnunet", "nifti")


def export_run(
    run_dir: str | PathLike[str],
    fmt: str,
    out: str | PathLike[str],
    strategy: str | None = None,
    *,
    source: str = "cam",
    labels: Literal["lesion", "class"] = "lesion",
) -> Path:
    """Export a finished run folder's masks.

    Args:
        run_dir: The run folder written by ``samprompt run`` / :func:`~samprompt.runner.run_experiment`.
        fmt: ``coco``, ``nnunet`` or ``nifti``.
        out: Output folder (created).
        strategy: Strategy label (default: the run's first).
        source: ``cam`` or ``gt``: which prompts made the masks.
        labels: ``nnunet`` / ``nifti``: ``lesion`` (one foreground label) or ``class`` (one per class).

    Returns:
        The written file (``coco``) or folder (``nnunet``, ``nifti``).

    Raises:
        ConfigError: Unknown format, strategy or source; an optional package missing; ``nifti`` for a
            run whose inputs are not NIfTI / DICOM.
        DataError: Not a run folder, or a run file / input file cannot be read.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"export format {fmt!r} is not one of {list(FORMATS)}")
    run, dest = RunOutputs(run_dir), Path(out)
    if fmt == "coco":
        return export_coco(run, dest, strategy=strategy, source=source)
    if fmt == "nnunet":
        return export_nnunet(run, dest, strategy=strategy, source=source, labels=labels)
    return export_nifti(run, dest, strategy=strategy, source=source, labels=labels)
