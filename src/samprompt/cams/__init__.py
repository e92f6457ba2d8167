"""Class activation map extractors: the :class:`CamExtractor` base and the TorchCAM adapters."""

from samprompt.cams.base import CamExtractor, CamResult, Target, normalize_targets
from samprompt.registry import Registry

#: Registry of CAM extractors; plugins use the entry-point group ``samprompt.cam_extractors``.
CAM_EXTRACTORS: Registry[CamExtractor] = Registry(
    "CAM extractor",
    "samprompt.cam_extractors",
    CamExtractor,
    builtin_modules=("samprompt.cams.torchcam", "samprompt.cams.fused"),
)

__all__ = ["CAM_EXTRACTORS", "CamExtractor", "CamResult", "Target", "normalize_targets"]
