"""Data sets: reading images, masks and labels; auditing them; splitting them.

* :func:`open_dataset` reads class folders (BUSI layout) or a CSV manifest into a lazily loaded
  :class:`Dataset` of :class:`Sample` s.
* :func:`load_image` / :func:`load_mask` turn any image file into a (H, W, 3) uint8 RGB array or a
  (H, W) bool mask.
* :func:`audit_dataset` counts classes and masks, finds exact and near duplicate images, unreadable
  files and masks that look lossy-compressed.
* :func:`check_labels_against_classes` checks a data set's labels against a classifier's, before any work.
* :func:`prefetch` loads the next items in worker threads while the caller works on the current ones.
* :func:`make_split` makes a seeded, stratified, duplicate- and group-aware train / val / test
  :class:`Split`.
"""

from __future__ import annotations

from samprompt.data.audit import AuditReport, ClassCounts, DuplicateGroup, audit_dataset
from samprompt.data.datasets import Dataset, DatasetImages, Sample, sample_id
from samprompt.data.hashing import hamming_distance, near_pairs, perceptual_hash, pixel_hash
from samprompt.data.io import IMAGE_EXTENSIONS, image_size, load_image, load_mask, lossy_mask_reason
from samprompt.data.labels import check_labels_against_classes
from samprompt.data.prefetch import prefetch
from samprompt.data.readers import open_dataset, read_class_folders, read_manifest
from samprompt.data.splits import SPLIT_NAMES, Split, make_split

__all__ = [
    "IMAGE_EXTENSIONS",
    "SPLIT_NAMES",
    "AuditReport",
    "ClassCounts",
    "Dataset",
    "DatasetImages",
    "DuplicateGroup",
    "Sample",
    "Split",
    "audit_dataset",
    "check_labels_against_classes",
    "hamming_distance",
    "image_size",
    "load_image",
    "load_mask",
    "lossy_mask_reason",
    "make_split",
    "near_pairs",
    "open_dataset",
    "perceptual_hash",
    "pixel_hash",
    "prefetch",
    "read_class_folders",
    "read_manifest",
    "sample_id",
]
