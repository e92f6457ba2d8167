"""Pydantic models of a pipeline configuration, and their JSON / YAML file round trip.

A pipeline config is a mapping with the keys ``classifier``, ``cam``, ``masker``, ``prompts`` (a LIST of
strategies) and ``segmenter``, each component given as ``{"name": ..., "params": {...}}``::

    {
      "classifier": {"checkpoint": "runs/clf/best.pt"},
      "cam": {"name": "gradcam", "params": {"target_layer": "layer4"}},
      "masker": {"name": "threshold", "params": {"value": 0.8}},
      "prompts": [{"name": "box", "params": {"margin": 5}}, {"name": "center_point"}],
      "segmenter": {"name": "classical"}
    }

Unknown keys are errors that name their location (``prompts.0.params.margni``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from samprompt.component import format_validation_error
from samprompt.errors import ConfigError
from samprompt.preprocess import Preprocessing

__all__ = [
    "ClassifierSpec",
    "ComponentSpec",
    "PipelineConfig",
    "dump_config_file",
    "load_config_file",
    "validate_model",
]


class ComponentSpec(BaseModel):
    """One component: its registered ``name``, its ``params``, and for strategies an optional ``label``.

    ``label`` names the strategy's results (defaults to ``name``); it lets one strategy appear twice with
    different parameters, e.g. ``box`` with and without a margin.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None


class ClassifierSpec(BaseModel):
    """Where the classifier comes from: a samprompt checkpoint, or a registered builder by name.

    Attributes:
        checkpoint: Path of a classifier checkpoint written by samprompt (carries its class names and
            preprocessing). Takes precedence over ``name``.
        name: Registered classifier builder (e.g. ``resnet18``), used with ``params``.
        params: Keyword arguments of the builder (e.g. ``num_classes``, ``weights``).
        class_names: Output class names, needed with ``name`` (a checkpoint carries its own).
    """

    model_config = ConfigDict(extra="forbid")

    checkpoint: Path | None = None
    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    class_names: list[str] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ClassifierSpec:
        if self.checkpoint is None and self.name is None:
            raise ValueError("give either 'checkpoint' or 'name'")
        return self


def _default_prompts() -> list[ComponentSpec]:
    return [
        ComponentSpec(name="box"),
        ComponentSpec(name="center_point"),
        ComponentSpec(name="max_point"),
        ComponentSpec(name="box_center_point"),
        ComponentSpec(name="box_max_point"),
    ]


class PipelineConfig(BaseModel):
    """A whole :class:`~samprompt.pipeline.PromptPipeline`, as data.

    Attributes:
        classifier: Classifier source, or ``None`` when CAMs are passed in by the caller.
        preprocessing: Classifier preprocessing, used when the classifier is not a checkpoint.
        cam: CAM extractor.
        masker: Pseudo masker.
        prompts: Prompt strategies, all applied to the same CAM and decoded on the same embedding.
        segmenter: Promptable segmenter.
        device: Device of the classifier (``"auto"`` = CUDA when available).
        skip_classes: Class names; an image whose predicted class (arg-max of the classifier) is one of
            them gets no CAM-derived prompt (empty masks), e.g. ``["normal"]``. The ground-truth-prompt
            baseline is unaffected. Needs a classifier whose class names are known.
        overlap: Make each batch's pseudo masks and prompts in a helper thread while the segmenter embeds
            the batch (identical results; off = one thread, simpler to profile).
        prompt_workers: Worker processes making the pseudo masks and prompts of a batch's images in
            parallel (0 = in-process; see :class:`~samprompt.PromptPipeline`). Identical results.
    """

    model_config = ConfigDict(extra="forbid")

    classifier: ClassifierSpec | None = None
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    cam: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="gradcam"))
    masker: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="threshold", params={"value": 0.5}))
    prompts: list[ComponentSpec] = Field(default_factory=_default_prompts, min_length=1)
    segmenter: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="classical"))
    device: str = "auto"
    skip_classes: list[str] = Field(default_factory=list)
    overlap: bool = True
    prompt_workers: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _unique_labels(self) -> PipelineConfig:
        labels = [p.label or p.name for p in self.prompts]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"prompt strategy labels must be unique; repeated: {dupes} (set 'label')")
        return self


def validate_model(model: type[BaseModel], data: Any, where: str) -> Any:
    """Validate ``data`` against ``model``; raise :class:`ConfigError` naming each bad location.

    Args:
        model: The pydantic model class.
        data: A mapping (or model instance).
        where: Name of the source (a file path or ``"config"``), used as the message's prefix.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid {where}: {format_validation_error(exc, '')}") from exc


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON (``.json``) or YAML (``.yaml``/``.yml``, needs PyYAML) file into a dict.

    Raises:
        ConfigError: If the file is missing, unreadable, not a mapping, or YAML without PyYAML.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc}") from exc
    suffix = p.suffix.lower()
    try:
        if suffix in {".yaml", ".yml"}:
            try:
                import yaml
            except ImportError as exc:
                raise ConfigError(f"{p}: reading YAML needs PyYAML (pip install 'samprompt[yaml]')") from exc
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except ConfigError:
        raise
    except Exception as exc:  # json/yaml parse errors
        raise ConfigError(f"cannot parse config file {p}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {p} must hold a mapping at the top level, got {type(data).__name__}")
    return dict(data)


def dump_config_file(data: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``data`` as JSON or YAML (by the suffix of ``path``); returns the path."""
    p = Path(path)
    if p.suffix.lower() in {".yaml", ".yml"}:
        try:
            import yaml
        except ImportError as exc:
            raise ConfigError(f"{p}: writing YAML needs PyYAML (pip install 'samprompt[yaml]')") from exc
        text = yaml.safe_dump(dict(data), sort_keys=False)
    else:
        text = json.dumps(data, indent=2) + "\n"
    p.write_text(text, encoding="utf-8")
    return p
