"""Helpers of the DICOM tests (data and export): a tiny DICOM writer. Needs pydicom (the 'medical' extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def write_dicom(path: Path, pixels: np.ndarray, **attrs: Any) -> Path:
    """Write a tiny uncompressed DICOM: (H, W) or (frames, H, W) int16 / uint8 pixels, plus attributes."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    photometric = attrs.pop("PhotometricInterpretation", "MONOCHROME2")
    ds.set_pixel_data(pixels, photometric, 8 * pixels.dtype.itemsize)
    for k, v in attrs.items():
        setattr(ds, k, v)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
