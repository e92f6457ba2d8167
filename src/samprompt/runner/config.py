"""The :class:`RunConfig`: one experiment, from a data folder to a report, as data.

A run config embeds a :class:`~samprompt.config.PipelineConfig` (``pipeline:``) and adds what the
pipeline does not know about: the data, the split, where the classifier comes from (a checkpoint, or
training with a :class:`~samprompt.classifiers.TrainConfig`), the CAM target policy, seeds and batch
size. Unknown keys are errors naming their location (``classifier.train.epochz``)::

    name: busi-resnet18
    data: {path: data/BUSI/Dataset_BUSI_with_GT}
    split: {seed: 0, use: test}
    classifier: {task: multiclass, train: {arch: resnet18, epochs: 30, preprocessing: {input_size: 224}}}
    target: predicted
    pipeline:
      cam: {name: gradcam, params: {target_layer: layer4}}
      masker: {name: threshold, params: {value: 0.8}}
      prompts: [{name: box, params: {margin: 5}}, {name: center_point}]
      segmenter: {name: classical}

Relative paths in a config FILE are relative to the file's folder (see :func:`load_run_config`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from samprompt._bounds import Batch, Count, Seed, Workers
from samprompt.classifiers import TrainConfig
from samprompt.config import PipelineConfig, Problem, load_config_file, model_problems, raise_problems
from samprompt.data.splits import _check_fractions
from samprompt.errors import ConfigError

__all__ = [
    "ClassifierSource",
    "DataSpec",
    "FitSpec",
    "ReportSpec",
    "RunConfig",
    "SelfTrainSpec",
    "SplitSpec",
    "apply_overrides",
    "load_run_config",
    "run_config_problems",
]

log = logging.getLogger(__name__)

SplitUse = Literal["train", "val", "test", "all"]


class DataSpec(BaseModel):
    """Where the images are.

    Attributes:
        path: A folder of class folders (BUSI layout) or a ``.csv`` manifest.
        classes: Read only these classes (default: all that the data hold).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    path: Path
    classes: list[str] | None = None


class SplitSpec(BaseModel):
    """Which images are processed.

    Attributes:
        file: A split file written by ``samprompt split`` / :meth:`Split.save`; when ``None`` a split is
            made (seeded, stratified, duplicate-aware) and saved in the run folder as ``split.json``.
        seed: Seed of a made split (default: the run's ``seed``).
        fractions: ``(train, val, test)`` fractions of a made split.
        conflicting: Duplicate groups with conflicting labels go to ``train`` or are ``drop``-ped.
        use: Which split's images the pipeline processes and scores (``all`` = every image).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    file: Path | None = None
    seed: Seed | None = None
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    conflicting: Literal["train", "drop"] = "train"
    use: SplitUse = "test"

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        try:
            return _check_fractions(v)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc


class ClassifierSource(BaseModel):
    """Where the classifier comes from.

    Attributes:
        checkpoint: A samprompt classifier checkpoint; when given, nothing is trained.
        task: ``multiclass`` (one output per data-set class) or ``binary`` (``negative`` vs every other
            label merged into ``positive``, e.g. normal vs abnormal).
        negative: The label that stays negative in the binary task.
        positive: Name of the merged class of the binary task.
        train: Training hyper-parameters (used without ``checkpoint``); ``train.seed`` and
            ``train.device`` default to the run's ``seed`` and ``device``, and (with a lesion head)
            ``train.negative_classes`` to ``[negative]`` (binary task) or ``fit.negative_classes``.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    checkpoint: Path | None = None
    task: Literal["multiclass", "binary"] = "multiclass"
    negative: str = "normal"
    positive: str = "abnormal"
    train: TrainConfig = Field(default_factory=TrainConfig)


class ReportSpec(BaseModel):
    """What ``report.html`` shows.

    Attributes:
        panels: Per-image panels (the first images of the processed split, in order).
        gallery: Images in each of the best and worst galleries.
        thumb: Long side, in pixels, of every picture in the report (keeps the file small).
        confidence: Level of the bootstrap intervals in ``summary.*``.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    panels: int = Field(default=12, ge=0, le=10_000)
    gallery: int = Field(default=6, ge=0, le=1_000)
    thumb: int = Field(default=112, ge=32, le=512)
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)


def takes_agreement(name: str) -> bool:
    """Whether the prompt strategy registered as ``name`` takes a self-training net (an ``agreement_net``
    param, as ``candidates`` does); ``False`` for an unknown name."""
    from samprompt.prompts import PROMPT_STRATEGIES

    try:
        return "agreement_net" in PROMPT_STRATEGIES.get(name).Params.model_fields
    except ConfigError:
        return False


class SelfTrainSpec(BaseModel):
    """Self-training for the run's ``candidates`` strategies (:mod:`samprompt.classifiers.selftrain`).

    After the classifier and the ``fit`` stage, the first strategy that takes an ``agreement_net`` (e.g.
    ``candidates``; with ``scorer: fit``, the run's fitted scorer) of the pipeline (without
    agreement, and without a CAM: its ``cam_gate`` does not apply) makes pseudo masks of the TRAIN
    split's lesion images (its region's box decoded by the weight-free ``classical`` segmenter, as
    measured in docs/quality.md, whatever the run's segmenter); the ``keep`` most confident of them
    and every train image of ``empty_classes`` (empty target) train a ResNet18 + FPN initialised from the
    run's classifier (a random ResNet18 when the classifier is not a ResNet), saved as ``selftrain.pt``
    in the run folder (reused on resume). Every such strategy then gets
    ``agreement_net`` = that file and ``agreement_weight`` = ``weight`` (unless its params set them).

    Attributes:
        empty_classes: Classes whose images have no lesion, e.g. ``[normal]``.
        keep: Fraction of the lesion images' pseudo masks trained on (the highest-scored).
        epochs: Training passes.
        size: Square input side of the net.
        batch_size: Images per training step.
        lr: Peak learning rate.
        weight: ``agreement_weight`` given to the strategies; ``None`` (default) = each strategy's scorer
            file's (``busi-v1``: 8, chosen on BUSI val with its masks, as its provenance says). A fitted
            scorer (``scorer: fit``) has none, so a run that self-trains with one must set it.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    empty_classes: list[str] = Field(default_factory=lambda: ["normal"])
    keep: float = Field(default=0.6, gt=0.0, le=1.0)
    epochs: Count = 20
    size: int = Field(default=128, ge=32, le=1024)
    batch_size: Batch = 16
    lr: float = Field(default=5e-4, gt=0.0, le=10.0)
    weight: float | None = Field(default=None, ge=0.0)


class FitSpec(BaseModel):
    """How the run fits its ``candidates`` scorer (the ``fit`` stage; :mod:`samprompt.runner.fitting`).

    The stage runs when a prompt strategy's ``scorer`` param is ``fit`` or the masker's ``value`` is
    ``fit``: after the classifier, on the TRAIN split, from image labels only (no mask is opened), it
    writes ``scorer.json`` into the run folder (reused on resume; its path is in the manifest) and every
    strategy whose ``scorer`` is ``fit`` uses it. With a guided training (``classifier.train.guide_weight``)
    it runs before the classifier instead. A masker ``value: fit`` is then chosen against its regions on
    the val images (``threshold.json``).

    Attributes:
        negative_classes: Classes whose images show no lesion (names the data lacks are ignored); see
            ``learner``.
        polarity: ``auto`` (chosen from the train images), ``dark``, ``bright``, ``colour`` or ``both``.
        l2: L2 penalty of the logistic models.
        min_images: The fewest images of a class the fit accepts.
        erase: Also weigh the class-score drop when a region is erased (the evidence learner).
        prior: Without a negative class: a shipped scorer name (``busi-v1``) or scorer file whose weights
            are kept, the fit choosing only the polarity from the classifier's evidence (``None``, default:
            the weights are learnt, see ``learner``). With ``learner: auto`` it turns class contrast off;
            other learners ignore it.
        cam_features: Also fit weights for the CAM features (mean, max, share and rank of the run's CAM on
            a region; weights >= 0), so the choice follows the CAM. Off (default) the scorer picks by
            appearance and the CAM only teaches a fit without a negative class: chosen on BUSI val, where
            no from-scratch classifier's CAM finds the lesion and the CAM features cost up to 0.04 Dice
            (and, unbounded, made one fit pick regions away from the lesion). Turn it on for a classifier
            whose CAM localises (docs: quality, "Fitting with or without CAM features").
        learner: How the weights are learnt from the labels: ``mil`` (multiple-instance learning, needs a
            negative class), ``contrast`` (class-contrast attention: the region whose appearance tells the
            classes apart, a negative class counting as one more class; needs two classes of
            ``min_images`` images), ``evidence`` (the classifier's CAM and erasure evidence; no negative
            class) or ``auto`` (default: with a negative class, ``contrast`` when every class has
            ``contrast_min_images`` train images, else ``mil``; without one, ``evidence`` when ``prior``
            is set, else ``contrast`` when the train split allows it, else ``evidence``).
        contrast_min_images: With a negative class and ``learner: auto``, the fewest train images of every
            class (the negative one included) for class contrast; below it ``mil``. ``None``: ``mil``
            whenever there is a negative class (the ``guided`` presets, whose guides were measured with
            it). Default 20: on draws of 10 to 93 BUSI train images per class, the smallest count at which
            class contrast found the lesion in every draw, where ``mil`` often did not (docs: quality,
            "Class contrast by default"); a default of the method, not fitted to your data.
        contrast_max_images: When the fit learns by class contrast and ``max_images`` is unset, it reads at
            most this many train images of each class, drawn with the run's ``seed`` (``None``: all): a bound
            on the fit's time and memory on large data sets. Default 500, above every BUSI class: on BUSI
            val, draws of 60 images per class gave a lower and far less steady Dice than all images (docs:
            quality, "More draws: the cap of 60 withdrawn"). At least ``min_images`` and
            ``contrast_min_images``.
        max_images: Fit on at most this many train images of each class, drawn with the run's ``seed``
            (``None``, default: all). The fit's time grows with its images, so this bounds it on large
            data sets or next to a short training; it must be at least ``min_images`` (docs: quality,
            "Fit time").
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    negative_classes: list[str] = Field(default_factory=lambda: ["normal"])
    polarity: Literal["auto", "dark", "bright", "colour", "both"] = "auto"
    l2: float = Field(default=1e-2, gt=0.0, le=100.0)
    min_images: int = Field(default=8, ge=2, le=100_000)
    erase: bool = True
    prior: str | None = None
    cam_features: bool = False
    learner: Literal["auto", "mil", "contrast", "evidence"] = "auto"
    contrast_min_images: int | None = Field(default=20, ge=2, le=10_000_000)  # proposals.fit.CONTRAST_MIN_IMAGES
    contrast_max_images: int | None = Field(default=500, ge=2, le=10_000_000)  # proposals.fit.CONTRAST_MAX_IMAGES
    max_images: int | None = Field(default=None, ge=2, le=10_000_000)

    @model_validator(mode="after")
    def _cap_above_minimum(self) -> FitSpec:
        if self.max_images is not None and self.max_images < self.min_images:
            raise ValueError(f"max_images ({self.max_images}) must be at least min_images ({self.min_images}): a "
                             "class capped below min_images could not be fitted")
        floor = max(self.min_images, self.contrast_min_images or 0)
        if self.contrast_max_images is not None and self.contrast_max_images < floor:
            raise ValueError(f"contrast_max_images ({self.contrast_max_images}) must be at least min_images and "
                             f"contrast_min_images ({floor}): class contrast on fewer images per class is what "
                             "the floor rules out")
        return self

    @field_validator("prior")
    @classmethod
    def _known_prior(cls, v: str | None) -> str | None:
        from samprompt.proposals.scorer import SHIPPED

        if v is not None and v not in SHIPPED and not Path(v).is_file():
            raise ValueError(f"{v!r} is neither a shipped scorer ({', '.join(SHIPPED)}) nor a scorer file")
        return v


class RunConfig(BaseModel):
    """One experiment: data → split → classifier → pipeline → metrics → report.

    Attributes:
        name: Name of the run (sub-folder name when a preset holds several runs).
        description: Free text, copied to the report.
        data: The data set.
        split: Split file or how to make one, and which split to process.
        classifier: Checkpoint, or task + training configuration.
        pipeline: CAM, masker, prompt strategies and segmenter (its ``classifier`` must stay unset:
            the run's ``classifier`` section provides it).
        target: CAM target policy: ``predicted`` (arg-max class), ``label`` (the image's own label,
            mapped through the task), ``lesion`` (the classifier's classes that are not negative ones
            (``fit.negative_classes``, default ``[normal]``) summed; ``predicted`` when every class is a
            lesion class, since the sum of every class's logit says nothing about where the lesion is) or a
            list of class names whose logits are summed (e.g. ``[benign, malignant]`` = "abnormal").
        seed: Seeds the split, the training and the bootstrap intervals.
        batch_size: Images per pipeline batch (CAM + embedding).
        workers: Threads that read and decode the next images (up to two batches ahead) while the
            pipeline works on the current batch, and (as many again) that score a finished batch and
            encode its PNGs before the main thread writes them in order; 0 = all in the main thread.
            Writing costs about 28 ms of CPU per 500 x 600 image (5 strategies x CAM / ground truth),
            so a GPU run at 100+ images/s needs 4-8. Not part of the run's identity (results do not
            depend on it).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        limit: Process at most this many images of the split (not part of the run's identity: a
            rerun without it completes the run).
        report: Report options.
        selftrain: Self-training for the ``candidates`` strategies (:class:`SelfTrainSpec`); ``None``
            (default) = off.
        fit: Settings of the ``fit`` stage (:class:`FitSpec`), used when a strategy's ``scorer`` is
            ``fit``, the training is guided or the masker's ``value`` is ``fit``; ``None`` = the defaults.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = "run"
    description: str = ""
    data: DataSpec
    split: SplitSpec = Field(default_factory=SplitSpec)
    classifier: ClassifierSource = Field(default_factory=ClassifierSource)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    target: Literal["predicted", "label", "lesion"] | list[str] = "predicted"
    seed: Seed = 0
    batch_size: Batch = 8
    workers: Workers = 2
    device: str = "auto"
    limit: Count | None = None
    report: ReportSpec = Field(default_factory=ReportSpec)
    selftrain: SelfTrainSpec | None = None
    fit: FitSpec | None = None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not v or "/" in v or "\\" in v or v in {".", ".."} or v.startswith("."):
            raise ValueError(f"name must be a plain folder name, got {v!r}")
        return v

    @field_validator("target")
    @classmethod
    def _nonempty_target(cls, v: Any) -> Any:
        if isinstance(v, list) and not v:
            raise ValueError("a list target needs at least one class name")
        return v

    @model_validator(mode="after")
    def _check_and_default(self) -> RunConfig:
        if self.pipeline.classifier is not None:
            raise ValueError(
                "pipeline.classifier must be unset in a run config; use the run's 'classifier' section "
                "(checkpoint, or task + train)"
            )
        if self.selftrain is not None:
            taking = [s for s in self.pipeline.prompts if takes_agreement(s.name)]
            if not taking:
                raise ValueError("selftrain needs a prompt strategy that takes a self-training net (an "
                                 "'agreement_net' param, e.g. 'candidates') in pipeline.prompts")
            unweighted = [s.label or s.name for s in taking if s.params.get("scorer") == "fit"
                          and "agreement_weight" not in s.params]
            if self.selftrain.weight is None and unweighted:
                raise ValueError(
                    f"selftrain.weight must be given: prompt strategy {unweighted[0]!r} uses the run's fitted "
                    "scorer, which carries no agreement weight (busi-v1's 8 was chosen on BUSI val WITH masks); "
                    "set selftrain.weight or that strategy's agreement_weight")
        train = self.classifier.train
        guided = train.knobs().guide_weight > 0
        if train.guide_keep < 1.0 and not guided:
            raise ValueError("classifier.train.guide_keep: only a guided training has guides to keep; set "
                             "classifier.train.guide_weight > 0 too")
        if train.knobs().guide_cover > 0 and not guided:
            raise ValueError("classifier.train.guide_cover: the coverage term adds to the guidance term; set "
                             "classifier.train.guide_weight > 0 too")
        if self.fit is not None and not self.fits_scorer and not guided:
            raise ValueError("fit needs a prompt strategy with scorer: fit in pipeline.prompts (or a guided "
                             "training, classifier.train.guide_weight > 0, or pipeline.masker.params.value: fit)")
        if self.fits_threshold and self.fit is not None and self.fit.cam_features:
            raise ValueError("pipeline.masker.params.value: fit compares the CAM's boxes with the fitted scorer's "
                             "regions, so that scorer must not read the CAM: set fit.cam_features to false")
        if guided:
            fit = self.fit or FitSpec()
            if self.classifier.checkpoint is not None:
                raise ValueError("classifier.train.guide_weight: guides steer a training, and with "
                                 "classifier.checkpoint nothing is trained; drop one of them")
            if fit.cam_features:
                raise ValueError("classifier.train.guide_weight: the guides are fitted before the classifier exists, "
                                 "so fit.cam_features (which reads its CAM) must be false")
            if fit.learner == "evidence":
                raise ValueError("classifier.train.guide_weight: the guides are fitted before the classifier exists, "
                                 "so fit.learner cannot be evidence (the classifier's evidence); use auto, mil or "
                                 "contrast")
        update: dict[str, Any] = {
            k: v for k, v in (("seed", self.seed), ("device", self.device)) if k not in train.model_fields_set}
        if train.knobs().lesion_head > 0 and train.negative_classes is None:  # the run's negatives
            update["negative_classes"] = ([self.classifier.negative] if self.classifier.task == "binary"
                                          else list((self.fit or FitSpec()).negative_classes))
        if update:
            self.classifier.train = train.model_copy(update=update)
        return self

    # ------------------------------------------------------------------ helpers
    @property
    def fits_scorer(self) -> bool:
        """Whether the run fits its label-only scorer (a prompt strategy asks for it with ``scorer: fit``,
        or the masker's threshold is fitted against its regions, :attr:`fits_threshold`)."""
        return any(s.params.get("scorer") == "fit" for s in self.pipeline.prompts) or self.fits_threshold

    @property
    def fits_threshold(self) -> bool:
        """Whether the masker's threshold is chosen by the run (a ``threshold`` masker with
        ``params: {value: fit}``; :func:`~samprompt.runner.fitting.get_fitted_threshold`)."""
        return self.pipeline.masker.name == "threshold" and self.pipeline.masker.params.get("value") == "fit"

    def target_classes(self, class_names: Sequence[str]) -> list[str] | None:
        """The classes whose logits the CAM target sums, for a classifier with ``class_names``:
        the list target, or (``lesion``) every class not in ``fit.negative_classes``; ``None`` for a
        per-image target (``predicted``, ``label``, or ``lesion`` when no class is a negative one).

        Raises:
            ConfigError: (``lesion``) every class of the classifier is a negative class.
        """
        if isinstance(self.target, list):
            return list(self.target)
        if self.target != "lesion":
            return None
        negative = set((self.fit or FitSpec()).negative_classes)
        lesion = [c for c in class_names if c not in negative]
        if not lesion:
            raise ConfigError(f"target: lesion: every class of the classifier {list(class_names)} is a negative "
                              f"class (fit.negative_classes {sorted(negative)})")
        return lesion if len(lesion) < len(class_names) else None

    @property
    def split_seed(self) -> int:
        """Seed of a made split."""
        return self.seed if self.split.seed is None else self.split.seed

    def identity(self) -> dict[str, Any]:
        """The JSON form that decides whether a run folder belongs to this config.

        Settings that do not change any result are left out: ``limit``, ``workers``,
        ``pipeline.overlap`` and ``pipeline.prompt_workers``.
        """
        return self.model_dump(mode="json", exclude={"limit": True, "workers": True,
                                                     "pipeline": {"overlap", "prompt_workers"}})

    def resolved(self, base: Path) -> RunConfig:
        """A copy with every relative path made absolute against ``base``."""
        def fix(p: Path | None) -> Path | None:
            return None if p is None else (p if p.is_absolute() else (base / p)).absolute()

        data = self.data.model_copy(update={"path": fix(self.data.path)})
        split = self.split.model_copy(update={"file": fix(self.split.file)})
        clf = self.classifier.model_copy(update={"checkpoint": fix(self.classifier.checkpoint)})
        return self.model_copy(update={"data": data, "split": split, "classifier": clf})


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a deep copy of ``data`` with ``key.sub=value`` overrides applied.

    Values are parsed as JSON when they can be (``3``, ``true``, ``[1, 2]``, ``{"a": 1}``), else kept as
    strings. A numeric path part indexes a list (``pipeline.prompts.0.params.margin=5``).

    Raises:
        ConfigError: If an override has no ``=`` or its path runs through a non-container.
    """
    out: dict[str, Any] = json.loads(json.dumps(dict(data), default=str))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. classifier.train.epochs=3")
        parts = key.strip().split(".")
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--set {item!r}: {where} is not an index of a {len(node)}-item list")
                if last:
                    node[int(part)] = _parse_value(raw)
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = _parse_value(raw)
                else:
                    if node.get(part) is None:
                        node[part] = {}
                    node = node[part]
            else:
                raise ConfigError(f"--set {item!r}: {where} is inside a value that is not a mapping or list")
    return out


def run_config_problems(data: Mapping[str, Any]) -> tuple[RunConfig | None, list[Problem]]:
    """Validate a run config mapping completely, without touching files: structure, every key and
    number range, and every component's name (plugins included) and ``params`` (its ``Params`` model).

    Args:
        data: The config as read from its file (overrides applied).

    Returns:
        ``(config, problems)``: the config (``None`` when the structure is invalid) and every problem found,
        with full config paths (``pipeline.prompts.0.params.margni``).
    """
    from samprompt.pipeline import pipeline_problems

    problems: list[Problem] = []
    cfg: RunConfig | None = None
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        problems += model_problems(exc, "", RunConfig)
    pipe = data.get("pipeline")
    if isinstance(pipe, Mapping):
        problems += pipeline_problems(pipe, "pipeline")
    elif pipe is None:
        problems += pipeline_problems({}, "pipeline")
    return (cfg if not problems else None), problems


def load_run_config(
    source: str | Path | Mapping[str, Any], *, overrides: Sequence[str] = (), base: Path | None = None
) -> RunConfig:
    """Read and validate a run config from a JSON/YAML file or a mapping.

    Everything that can be checked without the data is checked here, and every problem is reported at
    once (see :func:`run_config_problems`); :func:`samprompt.runner.check.check_run` then checks the data,
    the files and the class names, as ``samprompt run`` does before it writes anything.

    Args:
        source: A ``.json`` / ``.yaml`` file, or the config as a mapping.
        overrides: ``key.sub=value`` strings applied before validation (see :func:`apply_overrides`).
        base: Folder relative paths are resolved against (default: the file's folder, or the current
            directory for a mapping).

    Raises:
        ConfigError: Unreadable file, or every validation problem with its location (``.problems``).
    """
    if isinstance(source, Mapping):
        data, where, root = dict(source), "run config", base or Path.cwd()
    else:
        path = Path(source)
        data, where, root = load_config_file(path), str(path), base or path.absolute().parent
    if overrides:
        data = apply_overrides(data, overrides)
    cfg, problems = run_config_problems(data)
    raise_problems(problems, where)
    if cfg is None:  # pragma: no cover - problems were raised
        raise ConfigError(f"invalid {where}")
    return cfg.resolved(root)
