"""samprompt: image-level class labels to segmentation masks, through CAM-derived prompts.

The public face: :class:`PromptPipeline`, the component base classes, :class:`Prompt`, the registries.

>>> from samprompt import PROMPT_STRATEGIES
>>> sorted(PROMPT_STRATEGIES.names())[:3]
['box', 'box_center_point', 'box_inside_point']
"""

from __future__ import annotations

from importlib import metadata as _metadata

from samprompt.cams import CAM_EXTRACTORS, CamExtractor, CamResult
from samprompt.component import Component, ComponentParams
from samprompt.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    PluginError,
    RegistryError,
    SampromptError,
    StageError,
    UnknownComponentError,
)
from samprompt.maskers import MASKERS, PseudoMasker
from samprompt.pipeline import PipelineResult, PromptPipeline, StrategyResult
from samprompt.preprocess import Preprocessing
from samprompt.prompts import PROMPT_STRATEGIES, Emits, Prompt, PromptStrategy
from samprompt.registry import Registry
from samprompt.segmenters import SEGMENTERS, ImageEmbedding, Segmentation, Segmenter

try:
    __version__ = _metadata.version("samprompt")
except _metadata.PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = [
    "CAM_EXTRACTORS",
    "MASKERS",
    "PROMPT_STRATEGIES",
    "SEGMENTERS",
    "CamExtractor",
    "CamResult",
    "CheckpointError",
    "Component",
    "ComponentParams",
    "ConfigError",
    "DataError",
    "Emits",
    "ImageEmbedding",
    "PipelineResult",
    "PluginError",
    "Preprocessing",
    "Prompt",
    "PromptPipeline",
    "PromptStrategy",
    "PseudoMasker",
    "Registry",
    "RegistryError",
    "SampromptError",
    "Segmentation",
    "Segmenter",
    "StageError",
    "StrategyResult",
    "UnknownComponentError",
    "__version__",
]
