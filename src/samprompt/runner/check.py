"""The door of a run: everything about a :class:`~samprompt.runner.config.RunConfig` that needs the file
system, checked before any image is decoded, any model trained or anything written into the run folder.

:func:`~samprompt.runner.config.load_run_config` has already checked the structure, every key, every
number's range and every component's name and ``params``. :func:`check_run` adds what needs the disk:
the data path (listed, not decoded: every reader check, labels included), the class names asked for
against the data, a given split file against the data, a given classifier checkpoint (read, not built)
and the data's labels against its classes (:func:`~samprompt.data.check_labels_against_classes`), the
target and skip classes against the classifier's classes, and the device (files named in component
parameters are checked with the components, by :func:`samprompt.config.component_problems`). Every
problem is collected and reported at once, each with its config path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path

from samprompt._torch import resolve_device
from samprompt.classifiers import TaskSpec
from samprompt.classifiers.checkpoint import ClassifierInfo, read_info
from samprompt.classifiers.lesion_head import lesion_head_of
from samprompt.config import Problem, raise_problems
from samprompt.data import Dataset, Split, check_labels_against_classes, open_dataset
from samprompt.errors import ConfigError, SampromptError
from samprompt.runner.config import FitSpec, RunConfig, takes_agreement

__all__ = ["check_run", "ensure_runnable", "guides_impossible"]

log = logging.getLogger(__name__)


def _unknown(names: Iterable[str], known: Collection[str]) -> list[str]:
    return [n for n in names if n not in known]


def _device_problem(device: str, where: str) -> str | None:
    try:
        resolve_device(device, where)
    except SampromptError as exc:
        return str(exc).removeprefix(f"{where}: ")
    return None


_Found = list[tuple[Problem, SampromptError | None]]


def _door(config: RunConfig, pending: Collection[Path]) -> tuple[_Found, Dataset | None]:
    """Every problem with the typed error it came from (or ``None``), and the opened data set."""
    found: _Found = []

    def add(path: str, message: str, error: SampromptError | None = None) -> None:
        found.append(((path, message), error))

    ds: Dataset | None = None
    data_classes: list[str] | None = None
    try:
        everything = open_dataset(config.data.path)
        data_classes = everything.classes
        ds = everything if config.data.classes is None else None
    except SampromptError as exc:
        add("data.path", str(exc), exc)
    used = list(config.data.classes) if config.data.classes is not None else data_classes
    if data_classes is not None and config.data.classes is not None:
        bad = _unknown(config.data.classes, data_classes)
        if bad:
            add("data.classes", f"class(es) {bad} are not in the data, which has {data_classes}")
            used = [c for c in config.data.classes if c in data_classes]
        else:
            try:
                ds = open_dataset(config.data.path, classes=config.data.classes)
            except SampromptError as exc:
                add("data.classes", str(exc), exc)
    if config.split.file is not None:
        if not config.split.file.is_file():
            add("split.file", f"file not found: {str(config.split.file)!r}")
        elif ds is not None:
            try:
                Split.load(config.split.file, ds)
            except SampromptError as exc:
                add("split.file", str(exc), exc)

    class_names: list[str] | None = None
    info: ClassifierInfo | None = None
    src = config.classifier
    if src.checkpoint is not None:
        if Path(src.checkpoint) in {Path(p) for p in pending}:
            pass  # written by an earlier run of the preset; checked when that run has made it
        elif not src.checkpoint.is_file():
            add("classifier.checkpoint", f"file not found: {str(src.checkpoint)!r}")
        else:
            try:
                info, _ = read_info(src.checkpoint)
                class_names = list(info.class_names)
                if ds is not None:
                    task = info.task
                    check_labels_against_classes(((s.label, s.image_path) for s in ds),
                                                 task.mapping or task.class_names,
                                                 f"classifier checkpoint {str(src.checkpoint)!r}")
            except SampromptError as exc:
                add("classifier.checkpoint", str(exc), exc)
    elif used is not None:
        try:
            class_names = list(TaskSpec.preset(src.task, used, negative=src.negative, positive=src.positive)
                               .class_names)
        except SampromptError as exc:
            key = "classifier.negative" if src.task == "binary" else "classifier.task"
            add(key, f"{exc} (the classes used: {used})")

    lesion_head: bool | None = None  # whether the run's classifier will carry a lesion head (None: unknown)
    if src.checkpoint is None:
        lesion_head = src.train.knobs().lesion_head > 0
        if class_names is not None:
            try:
                src.train.lesion_classes(class_names, "classifier.train")
            except ConfigError as exc:
                add("classifier.train.negative_classes",
                    str(exc).removeprefix("classifier.train.negative_classes: "), exc)
    elif info is not None:
        lesion_head = lesion_head_of(info.train_config)
    cam = config.pipeline.cam
    if cam.params.get("head") == "lesion" and lesion_head is False:
        add("pipeline.cam.params.head", "lesion: the run's classifier has no lesion head (set "
            "classifier.train.lesion_head > 0, or give a checkpoint trained with one)")

    if class_names is not None:
        if isinstance(config.target, list):
            bad = _unknown(config.target, class_names)
            if bad:
                add("target", f"class(es) {bad} are not outputs of the classifier {class_names}")
        elif config.target == "lesion":
            try:
                config.target_classes(class_names)
            except ConfigError as exc:
                add("target", str(exc).removeprefix("target: "), exc)
        bad = _unknown(config.pipeline.skip_classes, class_names)
        if bad:
            add("pipeline.skip_classes", f"unknown class name(s) {bad}; the classifier's classes are {class_names}")
    if config.selftrain is not None and data_classes is not None:
        bad = _unknown(config.selftrain.empty_classes, data_classes)
        if bad:
            add("selftrain.empty_classes", f"unknown class name(s) {bad}; the data has {data_classes}")
    _scorer_problems(config, add)
    guided = src.checkpoint is None and src.train.knobs().guide_weight > 0
    if (config.fits_scorer or guided) and used is not None:
        _learner_problems(config, used, add, guided)

    for key, device in (("device", config.device), ("classifier.train.device", config.classifier.train.device)):
        msg = _device_problem(device, key)
        if msg and not (key != "device" and device == config.device):
            add(key, msg)
    return found, ds


def _learner_problems(config: RunConfig, used: Sequence[str], add: Callable[[str, str], None],
                      guided: bool = False) -> None:
    """The fit's learner against the data's classes (the images per class are counted by the fit); with
    a guided training (fitted before the classifier), a learner that would need the classifier."""
    spec = config.fit if config.fit is not None else FitSpec()
    negatives = sorted(set(spec.negative_classes) & set(used))
    why = guides_impossible(config, used) if guided else None
    if why is not None:
        add("classifier.train.guide_weight", why)
    if spec.learner == "mil" and not negatives:
        add("fit.learner", f"mil needs a negative class, and fit.negative_classes {spec.negative_classes} names none "
                           f"of the data's classes {list(used)}")
    elif spec.learner == "evidence" and negatives:
        add("fit.learner", f"evidence is for data without a negative class, and the data has {negatives} "
                           "(use mil or contrast)")
    elif spec.learner == "contrast" and len(used) < 2:
        add("fit.learner", f"contrast needs at least two classes, and the data has {list(used)}")


def guides_impossible(config: RunConfig, classes: Sequence[str]) -> str | None:
    """Why a guided training (``classifier.train.guide_weight`` > 0) cannot get its guides on data with
    these ``classes``, or ``None`` when it can.

    The guides come from the label-only fit, made before the classifier exists; with ``fit.learner: auto``
    that fit needs a negative class (``fit.negative_classes``) or, without ``fit.prior``, two classes (class
    contrast). Otherwise it would learn from the classifier's evidence, which it does not have yet.
    """
    spec = config.fit if config.fit is not None else FitSpec()
    negatives = set(spec.negative_classes) & set(classes)
    if spec.learner != "auto" or negatives or (spec.prior is None and len(classes) >= 2):
        return None
    why = "fit.prior is set" if spec.prior is not None else f"the data has one class {list(classes)}"
    return (f"the guides are fitted before the classifier exists, without a negative class the fit would learn "
            f"from the classifier's evidence ({why}); give a negative class, two classes or drop fit.prior")


def _scorer_problems(config: RunConfig, add: Callable[[str, str], None]) -> None:
    """The scorer files that ``candidates`` strategies (and subclasses) name, in a ``scorer`` param other
    than ``fit``: each must load (a missing, unreadable or foreign file is reported now, not after the
    training). With self-training and no ``selftrain.weight``, a strategy that gets the net without its own
    ``agreement_weight`` needs a scorer file that carries one (``scorer: fit`` is checked with the
    config's structure)."""
    from samprompt.prompts import PROMPT_STRATEGIES
    from samprompt.prompts.candidates import CandidatePromptStrategy
    from samprompt.proposals.scorer import load_scorer

    weightless = config.selftrain is not None and config.selftrain.weight is None
    for k, spec in enumerate(config.pipeline.prompts):
        try:
            cls = PROMPT_STRATEGIES.get(spec.name)
        except ConfigError:
            continue  # an unknown strategy is reported with the config's structure
        if not (isinstance(cls, type) and issubclass(cls, CandidatePromptStrategy)):
            continue  # a plugin's own "scorer" param may mean something else
        fields = cls.Params.model_fields
        name = spec.params.get("scorer", fields["scorer"].default)
        if name == "fit" or not isinstance(name, str):
            continue
        try:
            sf = load_scorer(name)
        except ConfigError as exc:
            add(f"pipeline.prompts.{k}.params.scorer", str(exc))
            continue
        if (weightless and takes_agreement(spec.name) and "agreement_weight" not in spec.params
                and sf.agreement_weight is None):
            add(f"pipeline.prompts.{k}.params.agreement_weight",
                f"the scorer file {name!r} carries no agreement weight; set this or selftrain.weight")


def check_run(config: RunConfig, *, pending: Collection[Path] = ()) -> list[Problem]:
    """Every problem of ``config`` that needs the file system (see the module docstring).

    Args:
        config: A validated, resolved run config (:func:`~samprompt.runner.config.load_run_config`).
        pending: Classifier checkpoints that an earlier run of the same preset will write; they are not
            expected to exist yet, and the class checks that need them are left to that run.

    Returns:
        ``(config path, message)`` pairs; empty when the run can start.
    """
    return [problem for problem, _ in _door(config, pending)[0]]


def ensure_runnable(config: RunConfig, *, pending: Collection[Path] = (), where: str = "run config") -> Dataset | None:
    """The door of a run: raise when :func:`check_run` finds anything, else return the opened data set.

    Args:
        config: The run config.
        pending: See :func:`check_run`.
        where: What is checked, for the message (a config file, or ``preset/run``).

    Returns:
        The data set, opened as the run will use it (``None`` only when its classes are pending).

    Raises:
        DataError, CheckpointError: When the one problem found is a data or checkpoint error: the error
            itself, naming the file, CSV line or label at fault.
        ConfigError: Otherwise, listing every problem with its config path (``.problems``).
    """
    found, ds = _door(config, pending)
    if len(found) == 1 and found[0][1] is not None and not isinstance(found[0][1], ConfigError):
        raise found[0][1]
    raise_problems([problem for problem, _ in found], where)
    return ds
