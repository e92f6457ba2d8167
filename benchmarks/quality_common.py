"""Shared helpers of the quality benchmarks: BUSI loading, the leak-free split, a small on-disk cache.

The split is samprompt's own: ``make_split(open_dataset(BUSI), seed=0)`` with the default fractions
(0.7 / 0.15 / 0.15), duplicate groups from ``audit_dataset`` kept together and conflicting-label
duplicates sent to train. It is saved next to the cache so every script reports on the same ids.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

BUSI = Path(os.environ.get("BUSI_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data" / "BUSI" / "Dataset_BUSI_with_GT"))
CACHE = Path(os.environ.get("QUALITY_CACHE", "/tmp/qcache"))


def load_split():
    """Return ``(dataset, split)`` (split cached as JSON in CACHE)."""
    from samprompt.data import open_dataset
    from samprompt.data.splits import Split, make_split

    ds = open_dataset(BUSI)
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / "split_seed0.json"
    if path.exists():
        return ds, Split.load(path, ds)
    split = make_split(ds, seed=0)
    split.save(path)
    return ds, split


def load_records():
    """All samples as dicts: id, label, split, grey uint8 image (H, W), mask bool (H, W). Cached."""
    path = CACHE / "records.pkl"
    if path.exists():
        with open(path, "rb") as f:
            return pickle.load(f)
    ds, split = load_split()
    where = {i: name for name in ("train", "val", "test") for i in split.ids(name)}
    recs = []
    for k, s in enumerate(ds):
        if s.id not in where:
            continue
        img = ds.load_image(k)
        m = ds.load_mask(k)
        grey = img if img.ndim == 2 else img.mean(axis=2).round().astype(np.uint8)
        recs.append({"id": s.id, "label": s.label, "split": where[s.id], "grey": grey,
                     "rgb_is_grey": img.ndim == 2 or bool((img[..., 0] == img[..., 1]).all()),
                     "mask": np.zeros(grey.shape, bool) if m is None else m})
    with open(path, "wb") as f:
        pickle.dump(recs, f, protocol=4)
    return recs


def lesions(recs, split):
    """Records of lesion images (benign, malignant) with a non-empty mask in ``split``."""
    return [r for r in recs if r["split"] == split and r["label"] != "normal" and r["mask"].any()]
