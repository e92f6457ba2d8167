"""Fixtures of the export tests: small finished runs (PNG data, NIfTI data) made like the runner tests'."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from runner_helpers import fast_config, make_dataset


@pytest.fixture(scope="session")
def png_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run (classical segmenter, 3 strategies) on 12 synthetic PNG images; 6 processed."""
    from samprompt.runner import load_run_config, run_experiment

    data = make_dataset(tmp_path_factory.mktemp("png") / "data")
    out = tmp_path_factory.mktemp("png_run") / "r"
    run_experiment(load_run_config(fast_config(data)), out)
    return out


@pytest.fixture(scope="session")
def nifti_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run on 8 NIfTI volumes of 4 slices (2 classes), split by volume, ``use: all``."""
    nib = pytest.importorskip("nibabel", reason="NIfTI export needs the 'medical' extra (nibabel)")
    from samprompt.runner import load_run_config, run_experiment

    root = tmp_path_factory.mktemp("nii") / "data"
    rng = np.random.default_rng(0)
    affine = np.diag([0.8, 0.6, 2.5, 1.0])
    affine[:3, 3] = (-10.0, 5.0, 30.0)
    for cls in ("lesion", "clear"):
        (root / cls).mkdir(parents=True)
        for k in range(4):
            vol = 150 + 20 * rng.standard_normal((40, 32, 4))
            seg = np.zeros(vol.shape, np.uint8)
            if cls == "lesion":
                seg[10 + k:24 + k, 8:20, 1:3] = 1
                vol[seg > 0] = 40
            nib.save(nib.Nifti1Image(vol.astype(np.int16), affine), str(root / cls / f"v{k}.nii.gz"))
            nib.save(nib.Nifti1Image(seg, affine), str(root / cls / f"v{k}_mask.nii.gz"))
    cfg = fast_config(root, split={"fractions": [0.5, 0.0, 0.5], "use": "all"})
    out = tmp_path_factory.mktemp("nii_run") / "r"
    run_experiment(load_run_config(cfg), out)
    return out


@pytest.fixture(scope="session")
def dicom_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run on 8 three-frame DICOM files with position / orientation / spacing, ``use: all``."""
    pytest.importorskip("pydicom", reason="DICOM input needs the 'medical' extra (pydicom)")
    pytest.importorskip("nibabel", reason="NIfTI export needs the 'medical' extra (nibabel)")
    from medical_helpers import write_dicom

    from samprompt.runner import load_run_config, run_experiment

    def write(path: Path, pixels: np.ndarray) -> None:
        # row spacing, column spacing in PixelSpacing
        write_dicom(path, pixels, ImageOrientationPatient=[1, 0, 0, 0, 1, 0], ImagePositionPatient=[10, 20, 30],
                    PixelSpacing=[0.5, 0.7], SliceThickness=2)

    root = tmp_path_factory.mktemp("dcm") / "data"
    rng = np.random.default_rng(1)
    for cls in ("lesion", "clear"):
        (root / cls).mkdir(parents=True)
        for k in range(4):
            frames = np.clip(150 + 20 * rng.standard_normal((3, 36, 44)), 0, 255).astype(np.uint8)
            seg = np.zeros(frames.shape, np.uint8)
            if cls == "lesion":
                seg[:, 8 + k:22 + k, 10:26] = 1
                frames[seg > 0] = 40
            write(root / cls / f"s{k}.dcm", frames)
            write(root / cls / f"s{k}_mask.dcm", seg)
    out = tmp_path_factory.mktemp("dcm_run") / "r"
    run_experiment(load_run_config(fast_config(root, split={"fractions": [0.5, 0.0, 0.5], "use": "all"})), out)
    return out
