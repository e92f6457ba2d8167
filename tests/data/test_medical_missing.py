"""Without the 'medical' extra, DICOM / NIfTI files fail with a DataError naming the file and the extra."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from samprompt.data import audit_dataset, open_dataset
from samprompt.errors import DataError


def test_missing_packages_give_a_clear_per_image_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pydicom", None)
    monkeypatch.setitem(sys.modules, "nibabel", None)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.dcm").write_bytes(b"x")
    (tmp_path / "c" / "b.nii.gz").write_bytes(b"x")
    ds = open_dataset(tmp_path)  # listing works: each file stays one image
    assert ds.ids == ["c/a", "c/b"]
    with pytest.raises(DataError, match=r"a\.dcm.*'pydicom'.*samprompt\[medical\]"):
        ds.load_image("c/a")
    problems = dict(audit_dataset(ds, workers=1).problems)
    assert "'nibabel'" in problems["c/b"] and "b.nii.gz" in problems["c/b"]
