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

import difflib
import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from samprompt._bounds import Workers
from samprompt.errors import ConfigError, SampromptError
from samprompt.preprocess import Preprocessing
from samprompt.registry import Registry

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_DEPTH",
    "ClassifierSpec",
    "ComponentSpec",
    "PipelineConfig",
    "Problem",
    "component_problems",
    "dump_config_file",
    "load_config_file",
    "model_problems",
    "raise_problems",
    "validate_model",
]

#: A config file larger than this is refused before it is parsed (configs are a few kB).
MAX_CONFIG_BYTES = 1 << 20
#: Deepest nesting of mappings and lists accepted in a config (a run config is about 6 deep).
MAX_CONFIG_DEPTH = 32

#: One problem of a config: ``(dotted config path, message)``, e.g.
#: ``("pipeline.prompts.0.params.margni", "unknown key; did you mean 'margin'?")``.
Problem = tuple[str, str]


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

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    classifier: ClassifierSpec | None = None
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    cam: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="gradcam"))
    masker: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="threshold", params={"value": 0.5}))
    prompts: list[ComponentSpec] = Field(default_factory=_default_prompts, min_length=1)
    segmenter: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="classical"))
    device: str = "auto"
    skip_classes: list[str] = Field(default_factory=list)
    overlap: bool = True
    prompt_workers: Workers = 0

    @model_validator(mode="after")
    def _unique_labels(self) -> PipelineConfig:
        labels = [p.label or p.name for p in self.prompts]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"prompt strategy labels must be unique; repeated: {dupes} (set 'label')")
        return self


def _join(prefix: str, loc: Sequence[Any]) -> str:
    return ".".join(str(x) for x in (*([prefix] if prefix else []), *loc)) or "(root)"


def _models_in(tp: Any) -> list[type[BaseModel]]:
    """The pydantic model classes an annotation admits (through ``X | None`` and unions)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    if typing.get_origin(tp) in (Union, types.UnionType):
        return [m for a in typing.get_args(tp) for m in _models_in(a)]
    return []


def _model_at(model: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model class found at ``loc`` inside ``model`` (through fields, optionals, lists, dicts)."""
    current: Any = model
    parts = list(loc)
    while parts:
        part = parts[0]
        candidates = _models_in(current)
        origin, args = typing.get_origin(current), typing.get_args(current)
        if candidates and isinstance(part, str):
            field = next((m.model_fields[part] for m in candidates if part in m.model_fields), None)
            if field is None:
                return None
            current = field.annotation
        elif origin in (Union, types.UnionType):
            inner = [a for a in args if a is not type(None)]
            if len(inner) != 1:
                return None
            current = inner[0]
            continue  # the same part, inside the optional
        elif origin in (list, tuple) and args and isinstance(part, int):
            current = args[0]
        elif origin is dict and len(args) == 2:
            current = args[1]
        else:
            return None
        parts.pop(0)
    found = _models_in(current)
    return found[0] if len(found) == 1 else None


def _suggest(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(choices))}"


def model_problems(exc: ValidationError, prefix: str, model: type[BaseModel] | None = None) -> list[Problem]:
    """Every problem of a pydantic validation error, with full config paths and name suggestions.

    Args:
        exc: The error raised by ``model.model_validate``.
        prefix: Config path of the validated object (``"pipeline.prompts.0.params"``; may be empty).
        model: The validated model class; with it, an unknown key is reported with the nearest known key
            of the model it was found in (``unknown key; did you mean 'margin'?``).

    Returns:
        ``(path, message)`` pairs, one per problem, in pydantic's order.
    """
    out: list[Problem] = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
        path = _join(prefix, loc)
        msg = str(err["msg"])
        if err["type"] == "extra_forbidden":
            parent = _model_at(model, loc[:-1]) if model is not None else None
            msg = "unknown key" + (_suggest(str(loc[-1]), list(parent.model_fields)) if parent else "")
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "int_parsing_size":
            msg = "number too large"
        out.append((path, msg))
    return out


def raise_problems(problems: Sequence[Problem], where: str) -> None:
    """Raise one :class:`ConfigError` listing every problem (duplicates dropped); do nothing without any.

    Args:
        problems: ``(path, message)`` pairs.
        where: What was validated, e.g. a file path or ``"run config"``; starts the message.

    Raises:
        ConfigError: With :attr:`~samprompt.errors.ConfigError.problems` set, when ``problems`` is not empty.
    """
    unique = list(dict.fromkeys((str(p), str(m)) for p, m in problems))
    if not unique:
        return
    if len(unique) == 1:
        raise ConfigError(f"invalid {where}: {unique[0][0]}: {unique[0][1]}", unique)
    lines = "\n".join(f"  {p}: {m}" for p, m in unique)
    raise ConfigError(f"invalid {where}: {len(unique)} problems\n{lines}", unique)


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
        problems = model_problems(exc, "", model)
        try:
            raise_problems(problems, where)
        except ConfigError as err:
            raise err from exc
    raise AssertionError("unreachable")  # pragma: no cover


def component_problems(registry: Registry[Any], spec: Any, path: str) -> list[Problem]:
    """Check one component entry (``{"name": ..., "params": {...}}``) without building the component.

    The name is resolved through ``registry`` (plugins included: a plugin's module is imported, nothing is
    run), the params are validated by the component's ``Params`` model, and every parameter typed as a
    path (``Path``, e.g. a checkpoint) must name an existing file or folder.

    Args:
        registry: The registry of the component's kind.
        spec: The entry as found in the config (any type: a wrong one is a problem).
        path: Its config path, e.g. ``"pipeline.prompts.0"``.

    Returns:
        Problems with full paths (``pipeline.prompts.0.params.margni``); empty when the entry is valid.
    """
    if isinstance(spec, ComponentSpec):
        spec = spec.model_dump()
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        return []  # the structural validation reports it
    try:
        cls = registry.get(spec["name"])
    except SampromptError as exc:  # an unknown name (with the nearest one), or a plugin that fails to import
        return [(f"{path}.name", str(exc))]
    params = spec.get("params") or {}
    model = getattr(cls, "Params", None)
    if not isinstance(params, Mapping) or not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    try:
        parsed = model.model_validate(dict(params))
    except ValidationError as exc:
        return model_problems(exc, f"{path}.params", model)
    # files the component will read: a parameter typed as a path must name an existing file or folder
    return [(f"{path}.params.{key}", f"file not found: {str(value)!r}")
            for key, field in model.model_fields.items()
            if key in params and _is_path(field.annotation)
            and (value := getattr(parsed, key)) is not None and not Path(value).exists()]


def _is_path(annotation: Any) -> bool:
    return annotation is Path or any(a is Path for a in typing.get_args(annotation))


def _depth(data: Any, limit: int) -> int:
    """Nesting depth of mappings/lists, counting iteratively and stopping past ``limit``."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, Mapping | list | tuple):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((v, d + 1) for v in (node.values() if isinstance(node, Mapping) else node))
    return deepest


def _load_yaml(text: str, p: Path) -> Any:
    try:
        import yaml
    except ImportError as exc:
        raise ConfigError(f"{p}: reading YAML needs PyYAML (pip install 'samprompt[yaml]')") from exc
    # Anchors and aliases are refused before anything is built: a few lines of nested aliases expand to
    # gigabytes ("billion laughs"), and a config never needs them.
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            kind = "alias" if isinstance(event, yaml.AliasEvent) else "anchor"
            line = event.start_mark.line + 1 if event.start_mark is not None else "?"
            raise ConfigError(
                f"{p}, line {line}: YAML {kind} {'*' if kind == 'alias' else '&'}{anchor} is not allowed in "
                "samprompt configs (anchors and aliases can expand without bound); write the values out"
            )
    return yaml.safe_load(text)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON (``.json``) or YAML (``.yaml``/``.yml``, needs PyYAML) file into a dict.

    Files over :data:`MAX_CONFIG_BYTES`, YAML anchors/aliases and nesting deeper than
    :data:`MAX_CONFIG_DEPTH` are refused before anything else happens.

    Raises:
        ConfigError: If the file is missing, unreadable, too large, not a mapping, uses YAML anchors or
            aliases (naming the line), nests too deep, or is YAML without PyYAML.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {p} is {size} bytes; the limit is {MAX_CONFIG_BYTES} bytes")
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config file {p}: not UTF-8 text ({exc})") from exc
    suffix = p.suffix.lower()
    try:
        data = _load_yaml(text, p) if suffix in {".yaml", ".yml"} else json.loads(text)
    except ConfigError:
        raise
    except Exception as exc:  # json/yaml parse errors (incl. RecursionError of absurd nesting)
        raise ConfigError(f"cannot parse config file {p}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {p} must hold a mapping at the top level, got {type(data).__name__}")
    if _depth(data, MAX_CONFIG_DEPTH) > MAX_CONFIG_DEPTH:
        raise ConfigError(f"config file {p} nests deeper than {MAX_CONFIG_DEPTH} levels")
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
