"""Promptable segmenters: the :class:`Segmenter` base, SAM and the weight-free default."""

from samprompt.registry import Registry
from samprompt.segmenters.base import ImageEmbedding, Segmentation, Segmenter

#: Registry of segmenters; plugins use the entry-point group ``samprompt.segmenters``.
SEGMENTERS: Registry[Segmenter] = Registry(
    "segmenter",
    "samprompt.segmenters",
    Segmenter,
    builtin_modules=(
        "samprompt.segmenters.sam",
        "samprompt.segmenters.classical",
        "samprompt.segmenters.sam2_segmenter",
        "samprompt.segmenters.hf_sam",
    ),
)

__all__ = ["SEGMENTERS", "ImageEmbedding", "Segmentation", "Segmenter"]
