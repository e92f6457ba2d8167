"""The door of a run: everything about a :class:`~samprompt.runner.config.RunConfig` that needs the file
system, checked before any image is decoded, any model trained or anything written into the run folder.

:func:`~samprompt.runner.config.load_run_config` has already checked the structure, every key, every
number's range and every component's name and ``params``. :func:`check_run` adds what needs the disk:
the data path (listed, not decoded), the class names asked for against the data, a given classifier
checkpoint (read, not built) and the data's labels against its classes, the target and skip classes
against the classifier's classes, files named in component parameters, and the device. Every problem is
collected and reported at once, each with its config path.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from samprompt._torch import resolve_device
from samprompt.cams import CAM_EXTRACTORS
from samprompt.classifiers import TaskSpec
from samprompt.classifiers.checkpoint import read_info
from samprompt.config import ComponentSpec, Problem, raise_problems
from samprompt.data import open_dataset
from samprompt.errors import SampromptError
from samprompt.maskers import MASKERS
from samprompt.prompts import PROMPT_STRATEGIES
from samprompt.registry import Registry
from samprompt.runner.config import RunConfig
from samprompt.segmenters import SEGMENTERS

__all__ = ["check_run", "ensure_runnable"]

log = logging.getLogger(__name__)


def _unknown(names: Iterable[str], known: Collection[str]) -> list[str]:
    return [n for n in names if n not in known]


def _device_problem(device: str, where: str) -> str | None:
    try:
        resolve_device(device, where)
    except SampromptError as exc:
        return str(exc).removeprefix(f"{where}: ")
    return None


def _is_path_field(annotation: Any) -> bool:
    return annotation is Path or any(a is Path for a in typing.get_args(annotation))


def _file_params(registry: Registry[Any], spec: ComponentSpec, path: str) -> list[Problem]:
    """Problems of the file paths a component's params name (fields typed ``Path``) that do not exist."""
    try:
        model = registry.get(spec.name).Params
    except (SampromptError, AttributeError):  # reported by the structural check
        return []
    out: list[Problem] = []
    for key, field in model.model_fields.items():
        value = spec.params.get(key)
        if value is not None and _is_path_field(field.annotation) and not Path(str(value)).exists():
            out.append((f"{path}.params.{key}", f"file not found: {str(value)!r}"))
    return out


def check_run(config: RunConfig, *, pending: Collection[Path] = ()) -> list[Problem]:
    """Every problem of ``config`` that needs the file system (see the module docstring).

    Args:
        config: A validated, resolved run config (:func:`~samprompt.runner.config.load_run_config`).
        pending: Classifier checkpoints that an earlier run of the same preset will write; they are not
            expected to exist yet, and the class checks that need them are left to that run.

    Returns:
        ``(config path, message)`` pairs; empty when the run can start.
    """
    problems: list[Problem] = []
    data_classes: list[str] | None = None
    try:
        ds = open_dataset(config.data.path)
        data_classes = ds.classes
    except SampromptError as exc:
        problems.append(("data.path", str(exc)))
    used = list(config.data.classes) if config.data.classes is not None else data_classes
    if data_classes is not None and config.data.classes is not None:
        bad = _unknown(config.data.classes, data_classes)
        if bad:
            problems.append(("data.classes", f"class(es) {bad} are not in the data, which has {data_classes}"))
            used = [c for c in config.data.classes if c in data_classes]
    if config.split.file is not None and not config.split.file.is_file():
        problems.append(("split.file", f"file not found: {str(config.split.file)!r}"))

    class_names: list[str] | None = None
    src = config.classifier
    if src.checkpoint is not None:
        if Path(src.checkpoint) in {Path(p) for p in pending}:
            pass  # written by an earlier run of the preset; checked when that run has made it
        elif not src.checkpoint.is_file():
            problems.append(("classifier.checkpoint", f"file not found: {str(src.checkpoint)!r}"))
        else:
            try:
                info, _ = read_info(src.checkpoint)
            except SampromptError as exc:
                problems.append(("classifier.checkpoint", str(exc)))
            else:
                class_names = list(info.class_names)
                for label in used or []:
                    try:
                        info.task.class_of(label)
                    except SampromptError:
                        mapping = dict(info.task.mapping) or "none"
                        problems.append(("classifier.checkpoint", (
                            f"the data's class {label!r} is not a class of checkpoint {str(src.checkpoint)!r}, "
                            f"whose classes are {class_names} (label mapping {mapping})")))
    elif used is not None:
        try:
            task = TaskSpec.preset(src.task, used, negative=src.negative, positive=src.positive)
            class_names = list(task.class_names)
        except SampromptError as exc:
            key = "classifier.negative" if src.task == "binary" else "classifier.task"
            problems.append((key, f"{exc} (the classes used: {used})"))

    if class_names is not None:
        if isinstance(config.target, list):
            bad = _unknown(config.target, class_names)
            if bad:
                problems.append(("target", f"class(es) {bad} are not outputs of the classifier {class_names}"))
        bad = _unknown(config.pipeline.skip_classes, class_names)
        if bad:
            problems.append(("pipeline.skip_classes",
                             f"unknown class name(s) {bad}; the classifier's classes are {class_names}"))
    if config.selftrain is not None and data_classes is not None:
        bad = _unknown(config.selftrain.empty_classes, data_classes)
        if bad:
            problems.append(("selftrain.empty_classes",
                             f"unknown class name(s) {bad}; the data has {data_classes}"))

    p = config.pipeline
    for key, registry, spec in (("cam", CAM_EXTRACTORS, p.cam), ("masker", MASKERS, p.masker),
                                ("segmenter", SEGMENTERS, p.segmenter)):
        problems += _file_params(registry, spec, f"pipeline.{key}")
    for i, spec in enumerate(p.prompts):
        problems += _file_params(PROMPT_STRATEGIES, spec, f"pipeline.prompts.{i}")
    for key, device in (("device", config.device), ("classifier.train.device", config.classifier.train.device)):
        msg = _device_problem(device, key)
        if msg and not (key != "device" and device == config.device):
            problems.append((key, msg))
    return problems


def ensure_runnable(config: RunConfig, *, pending: Collection[Path] = (), where: str = "run config") -> None:
    """Raise one :class:`~samprompt.errors.ConfigError` listing every problem :func:`check_run` finds.

    Args:
        config: The run config.
        pending: See :func:`check_run`.
        where: What is checked, for the message (a config file, or ``preset/run``).

    Raises:
        ConfigError: With every problem and its config path (``.problems``).
    """
    raise_problems(check_run(config, pending=pending), where)
