""":class:`PromptPipeline`: classifier → CAM → pseudo mask → prompts → segmenter, for one image or many.

Every prompt strategy runs on the same CAM and the same pseudo mask, and all of an image's prompts are
decoded on ONE embedding of that image (one :meth:`~samprompt.segmenters.Segmenter.embed` per image).
When ground-truth masks are given, the same strategies also run on them (the ground-truth-prompt
baseline) and are decoded on that same embedding.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from numpy.typing import NDArray
from pydantic import ValidationError

from samprompt._arrays import as_image
from samprompt._torch import resolve_device
from samprompt.cams import CAM_EXTRACTORS, CamExtractor, CamResult, Target
from samprompt.config import (
    ClassifierSpec,
    ComponentSpec,
    PipelineConfig,
    Problem,
    component_problems,
    dump_config_file,
    load_config_file,
    model_problems,
    raise_problems,
)
from samprompt.errors import ConfigError, StageError, stage_errors
from samprompt.maskers import MASKERS, PseudoMasker
from samprompt.parallel import WorkerPool, overlapped
from samprompt.preprocess import Preprocessing
from samprompt.prompts import PROMPT_STRATEGIES, Prompt, PromptStrategy
from samprompt.prompts.apply import apply_strategies, prepare_image
from samprompt.registry import Registry
from samprompt.segmenters import SEGMENTERS, ImageEmbedding, Segmenter

__all__ = ["PipelineResult", "PromptPipeline", "StrategyResult", "pipeline_problems", "resolve_device"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class StrategyResult:
    """One strategy's outcome on one image.

    Attributes:
        prompt: The prompt in original-image pixels, or ``None`` when none could be made.
        mask: (H, W) bool segmentation, all False when there was no prompt.
        score: The segmenter's predicted quality (0.0 without a prompt).
    """

    prompt: Prompt | None
    mask: NDArray[np.bool_]
    score: float


@dataclass(frozen=True, eq=False)
class PipelineResult:
    """Everything the pipeline produced for one image.

    Attributes:
        cam: The CAM (``cam.cam`` is (H, W) float32 in [0, 1]) with its target and class probabilities.
        pseudo_mask: (H, W) bool pseudo mask.
        strategies: Strategy label → result of the CAM-derived prompt.
        gt: Strategy label → result of the same strategy run on the ground-truth mask (empty when no
            ground truth was given).
        skipped: True when the image's predicted class is one of the pipeline's ``skip_classes``: every
            CAM-derived strategy then has no prompt and an all-False mask.
    """

    cam: CamResult
    pseudo_mask: NDArray[np.bool_]
    strategies: dict[str, StrategyResult]
    gt: dict[str, StrategyResult] = field(default_factory=dict)
    skipped: bool = False


def pipeline_problems(config: Mapping[str, Any] | PipelineConfig, prefix: str = "") -> list[Problem]:
    """Check the components of a pipeline config without building them.

    Each of ``cam``, ``masker``, ``segmenter`` and every entry of ``prompts`` is resolved through its
    registry (plugins included) and its ``params`` validated by the component's ``Params`` model. Missing
    entries (defaults) are valid; entries of the wrong shape are left to the structural validation.

    Args:
        config: The pipeline section as a mapping (or a validated :class:`PipelineConfig`).
        prefix: Config path of the section, e.g. ``"pipeline"`` in a run config.

    Returns:
        Every problem with its full path (``pipeline.prompts.0.params.margni``).
    """
    raw = config.model_dump() if isinstance(config, PipelineConfig) else config
    at = (prefix + ".") if prefix else ""
    out: list[Problem] = []
    for key, registry in (("cam", CAM_EXTRACTORS), ("masker", MASKERS), ("segmenter", SEGMENTERS)):
        if raw.get(key) is not None:
            out += component_problems(registry, raw[key], at + key)
    prompts = raw.get("prompts")
    if isinstance(prompts, list):
        for i, spec in enumerate(prompts):
            out += component_problems(PROMPT_STRATEGIES, spec, f"{at}prompts.{i}")
    return out


_Prepared4 = tuple[NDArray[np.bool_], bool, dict[str, Prompt | None], dict[str, Prompt | None]]


class PromptPipeline:
    """Compose a classifier, a CAM extractor, a masker, prompt strategies and a segmenter.

    Args:
        cam: CAM extractor.
        masker: Pseudo masker.
        prompts: Strategies, as a list (labelled by their names) or a label → strategy mapping.
        segmenter: Promptable segmenter.
        classifier: Classifier returning (B, C) logits, or ``None`` if CAMs are always passed in.
        preprocessing: The classifier's preprocessing (inputs and CAM geometry).
        class_names: Output class names of the classifier, if known.
        skip_classes: Images whose predicted class (arg-max) is one of these names get no CAM-derived
            prompt (see :attr:`PipelineResult.skipped`); needs ``class_names``. Ignored for images whose
            CAM is passed in (``cams=``), which carry no class probabilities.
        overlap: Make the pseudo masks and prompts of a batch (CPU) in a helper thread while the segmenter
            embeds it (:meth:`run_batch`); results are identical either way.
        prompt_workers: Make them in this many worker processes instead, the batch's images in parallel
            (0: in-process). Worth it for CPU-heavy strategies (``candidates``: about 140 ms per BUSI
            image); the paper's strategies cost about 2.5 ms per image, about what sending an image to a
            process and its prompts back costs. The masker and strategies must be picklable; the processes are spawned on the first
            batch of two or more images and live until :meth:`close`. Results are identical. Scripts
            using it need the usual ``if __name__ == "__main__":`` guard (spawned processes import the
            main module).

    Example:
        >>> import numpy as np
        >>> from samprompt import PromptPipeline
        >>> pipe = PromptPipeline.from_config({"prompts": [{"name": "box"}], "segmenter": {"name": "classical"}})
        >>> cam = np.zeros((40, 60), np.float32); cam[10:20, 30:50] = 1.0
        >>> res = pipe(np.zeros((40, 60), np.uint8), cam=cam)
        >>> res.strategies["box"].prompt.box.tolist()
        [30.0, 10.0, 50.0, 20.0]
    """

    def __init__(
        self,
        *,
        cam: CamExtractor,
        masker: PseudoMasker,
        prompts: Sequence[PromptStrategy] | Mapping[str, PromptStrategy],
        segmenter: Segmenter,
        classifier: torch.nn.Module | None = None,
        preprocessing: Preprocessing | None = None,
        class_names: Sequence[str] | None = None,
        classifier_spec: ClassifierSpec | None = None,
        device: str = "auto",
        skip_classes: Sequence[str] = (),
        overlap: bool = True,
        prompt_workers: int = 0,
    ) -> None:
        checks = ((cam, CamExtractor, "cam"), (masker, PseudoMasker, "masker"), (segmenter, Segmenter, "segmenter"))
        for obj, base, what in checks:
            if not isinstance(obj, base):
                raise TypeError(f"{what} must be a {base.__name__}, got {type(obj).__name__}")
        if isinstance(prompts, Mapping):
            strategies = dict(prompts)
        else:
            strategies = {}
            for s in prompts:
                if s.name in strategies:
                    raise ValueError(f"two prompt strategies are both labelled {s.name!r}; pass a mapping")
                strategies[s.name] = s
        if not strategies:
            raise ValueError("prompts must contain at least one strategy")
        for label, s in strategies.items():
            if not isinstance(s, PromptStrategy):
                raise TypeError(f"prompts[{label!r}] must be a PromptStrategy, got {type(s).__name__}")
        self.cam = cam
        self.masker = masker
        self.strategies = strategies
        self.segmenter = segmenter
        self.classifier = classifier
        self.preprocessing = preprocessing or Preprocessing()
        self.class_names = list(class_names) if class_names is not None else None
        self.skip_classes = _check_skip_classes(skip_classes, self.class_names)
        self.overlap = bool(overlap)
        if isinstance(prompt_workers, bool) or not isinstance(prompt_workers, int) or prompt_workers < 0:
            raise ConfigError(f"prompt_workers: must be an integer >= 0, got {prompt_workers!r}")
        self.prompt_workers = prompt_workers
        self._workers = WorkerPool(prompt_workers, "prompt_workers", "the masker and prompt strategies") if prompt_workers else None
        self._classifier_spec = classifier_spec
        self.device = device

    # ------------------------------------------------------------------ config
    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any] | PipelineConfig | str | Path,
        *,
        classifier: torch.nn.Module | None = None,
        class_names: Sequence[str] | None = None,
        preprocessing: Preprocessing | None = None,
        target_layer: str | None = None,
        device: str | None = None,
        where: str = "",
    ) -> PromptPipeline:
        """Build a pipeline from a mapping, a :class:`PipelineConfig`, or a JSON/YAML file path.

        This is the one builder: the runner uses it too. Every component is checked (name and params)
        before any is built, and every problem is reported at once.

        Component defaults filled in where a component's ``Params`` has the field and the config leaves it
        unset: ``device`` (every component: ``device`` or the config's), and the CAM extractor's
        ``target_layer`` (the layer recorded in the classifier checkpoint, or ``target_layer``).

        Args:
            config: The pipeline config.
            classifier: An already loaded classifier returning (B, C) logits; replaces the config's
                ``classifier`` section (which must then be unset).
            class_names: Its output classes (with ``classifier``).
            preprocessing: Its preprocessing (with ``classifier``; default: the config's).
            target_layer: Its CAM target layer, e.g. from :class:`~samprompt.classifiers.ClassifierInfo`.
            device: Overrides the config's ``device`` for the classifier and every component.
            where: Config path of the pipeline section in a larger config (``"pipeline"`` in a run
                config), prefixed to every error location.

        Raises:
            ConfigError: Naming the location of every unknown key, bad value or unknown component.
            CheckpointError: The configured classifier checkpoint cannot be loaded.
        """
        source = "config"
        if isinstance(config, (str, Path)):
            source = str(config)
            config = load_config_file(config)
        at = (where + ".") if where else ""
        if isinstance(config, PipelineConfig):
            cfg = config
            raise_problems(pipeline_problems(cfg, where), source)
        else:
            problems = pipeline_problems(config, where)
            try:
                cfg = PipelineConfig.model_validate(config)
            except ValidationError as exc:
                problems = model_problems(exc, where, PipelineConfig) + problems
            raise_problems(problems, source)
        dev = cfg.device if device is None else device
        prep = preprocessing or cfg.preprocessing
        names = list(class_names) if class_names is not None else None
        if classifier is not None:
            if cfg.classifier is not None:
                raise ConfigError(f"{at}classifier: must be unset when a classifier module is passed in")
        elif cfg.classifier is not None:
            classifier, prep, names, recorded = _load_classifier(cfg.classifier, cfg.preprocessing, dev)
            target_layer = target_layer or recorded
        defaults: dict[str, Any] = {"device": dev}

        def build(registry: Registry[Any], spec: ComponentSpec, path: str, extra: Mapping[str, Any]) -> Any:
            params = dict(spec.params)
            try:
                fields = registry.get(spec.name).Params.model_fields
                params.update({k: v for k, v in {**defaults, **extra}.items()
                               if k in fields and k not in params and v is not None})
                return registry.create(spec.name, params)
            except ConfigError as exc:
                raise ConfigError(f"{at}{path}: {exc}") from exc

        strategies = {
            (spec.label or spec.name): build(PROMPT_STRATEGIES, spec, f"prompts.{i}", {})
            for i, spec in enumerate(cfg.prompts)
        }
        try:
            return cls(
                cam=build(CAM_EXTRACTORS, cfg.cam, "cam", {"target_layer": target_layer}),
                masker=build(MASKERS, cfg.masker, "masker", {}),
                prompts=strategies,
                segmenter=build(SEGMENTERS, cfg.segmenter, "segmenter", {}),
                classifier=classifier,
                preprocessing=prep,
                class_names=names,
                classifier_spec=cfg.classifier,
                device=dev,
                skip_classes=cfg.skip_classes,
                overlap=cfg.overlap,
                prompt_workers=cfg.prompt_workers,
            )
        except ConfigError as exc:
            raise ConfigError(f"{at}{exc}") from exc

    def to_config(self) -> dict[str, Any]:
        """The pipeline as a JSON-ready mapping that :meth:`from_config` rebuilds.

        A classifier passed in as a module (not from a config) cannot be written down; it is left out
        (``classifier: None``) and must be passed again.
        """
        prompts = []
        for label, s in self.strategies.items():
            entry = s.to_config()
            if label != s.name:
                entry["label"] = label
            prompts.append(entry)
        spec = self._classifier_spec
        return {
            "classifier": None if spec is None else spec.model_dump(mode="json", exclude_defaults=True),
            "preprocessing": self.preprocessing.model_dump(mode="json"),
            "cam": self.cam.to_config(),
            "masker": self.masker.to_config(),
            "prompts": prompts,
            "segmenter": self.segmenter.to_config(),
            "device": self.device,
            "skip_classes": list(self.skip_classes),
            "overlap": self.overlap,
            "prompt_workers": self.prompt_workers,
        }

    def save_config(self, path: str | Path) -> Path:
        """Write :meth:`to_config` to a ``.json`` or ``.yaml`` file."""
        return dump_config_file(self.to_config(), path)

    # ------------------------------------------------------------------ running
    def __call__(
        self,
        image: NDArray[np.uint8],
        *,
        cam: NDArray[np.float32] | None = None,
        target: Target | None = None,
        gt_mask: NDArray[np.bool_] | None = None,
    ) -> PipelineResult:
        """Run the pipeline on one image ((H, W) or (H, W, 3) uint8); see :meth:`run_batch`."""
        return self.run_batch(
            [image],
            cams=None if cam is None else [cam],
            targets=None if target is None else [target],
            gt_masks=None if gt_mask is None else [gt_mask],
        )[0]

    def compute_cams(
        self, images: Sequence[NDArray[np.uint8]], targets: Sequence[Target] | None = None
    ) -> list[CamResult]:
        """CAMs of ``images`` from the pipeline's classifier (one per image, original sizes)."""
        if self.classifier is None:
            raise StageError("cam", self.cam.name, "the pipeline has no classifier; pass cams= instead")
        with stage_errors("cam", self.cam.name):
            return self.cam(self.classifier, images, preprocessing=self.preprocessing, targets=targets)

    def prompts_for(
        self, mask: NDArray[np.bool_], cam: NDArray[np.float32], image: NDArray[np.uint8] | None = None
    ) -> dict[str, Prompt | None]:
        """Apply every strategy to one (H, W) mask and its (H, W) CAM; label → prompt or ``None``.

        ``image`` ((H, W, 3) uint8) is handed to strategies that look at the image (``needs_image``).
        """
        return apply_strategies(self.strategies, mask, cam, image)

    def run_batch(
        self,
        images: Sequence[NDArray[np.uint8]],
        *,
        cams: Sequence[NDArray[np.float32]] | None = None,
        targets: Sequence[Target] | None = None,
        gt_masks: Sequence[NDArray[np.bool_] | None] | None = None,
    ) -> list[PipelineResult]:
        """Run the pipeline on several images.

        Args:
            images: Each (H, W) or (H, W, 3) uint8, any sizes.
            cams: Optional precomputed CAMs, (H, W) float32 in [0, 1] each; skips the classifier.
            targets: Optional CAM target per image (see :mod:`samprompt.cams.base`).
            gt_masks: Optional (H, W) bool ground truth per image (``None`` entries allowed); when given,
                the strategies also run on it and are decoded on the same embedding.

        Returns:
            One :class:`PipelineResult` per image.

        Raises:
            StageError: Naming the stage and component that failed.
        """
        imgs = [as_image(im, f"images[{i}]") for i, im in enumerate(images)]
        n = len(imgs)
        for name, seq in (("cams", cams), ("targets", targets), ("gt_masks", gt_masks)):
            if seq is not None and len(seq) != n:
                raise ValueError(f"{name} has {len(seq)} entries for {n} images")
        if cams is None:
            cam_results = self.compute_cams(imgs, targets)
        else:
            cam_results = []
            for i, c in enumerate(cams):
                arr = np.nan_to_num(np.asarray(c, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
                if arr.shape != imgs[i].shape[:2]:
                    raise ValueError(f"cams[{i}] shape {arr.shape} differs from image shape {imgs[i].shape[:2]}")
                cam_results.append(CamResult(np.clip(arr, 0, 1), (), np.zeros(0, np.float32)))
        def embed() -> list[ImageEmbedding]:
            with stage_errors("embed", self.segmenter.name):
                return self.segmenter.embed_batch(imgs)

        def prepare() -> list[_Prepared4]:
            return self._prepare(imgs, cam_results, gt_masks)

        if self.overlap:  # CPU prompts in a helper thread while the segmenter embeds (samprompt.parallel)
            prepared, embeddings = overlapped(prepare, embed)
        else:
            embeddings, prepared = embed(), prepare()
        keyed_all, todo_all = [], []
        for _, _, cam_prompts, gt_prompts in prepared:
            keyed = [("cam", k, p) for k, p in cam_prompts.items()] + [("gt", k, p) for k, p in gt_prompts.items()]
            keyed_all.append(keyed)
            todo_all.append([(src, k, p) for src, k, p in keyed if p is not None])
        # every prompt of the batch in as few decoder calls as the segmenter allows
        with stage_errors("decode", self.segmenter.name):
            segs = self.segmenter.decode_batch(embeddings, [[p for _, _, p in todo] for todo in todo_all])
            counts = [len(s.masks) for s in segs]
            if counts != [len(todo) for todo in todo_all]:
                raise ValueError(f"decode_batch returned {counts} masks per image for "
                                 f"{[len(todo) for todo in todo_all]} prompts")
        results = []
        for i, (pseudo, skipped, _, _) in enumerate(prepared):
            cam = cam_results[i].cam
            seg, keyed = segs[i], keyed_all[i]
            decoded = {(src, k): (seg.masks[j], float(seg.scores[j])) for j, (src, k, _) in enumerate(todo_all[i])}
            empty = np.zeros(cam.shape, dtype=bool)
            per: dict[str, dict[str, StrategyResult]] = {"cam": {}, "gt": {}}
            for src, k, p in keyed:
                m, s = decoded.get((src, k), (empty, 0.0))
                per[src][k] = StrategyResult(prompt=p, mask=m, score=s)
            results.append(PipelineResult(cam_results[i], pseudo, per["cam"], per["gt"], skipped))
        return results

    def _prepare(
        self,
        imgs: list[NDArray[np.uint8]],
        cam_results: list[CamResult],
        gt_masks: Sequence[NDArray[np.bool_] | None] | None,
    ) -> list[_Prepared4]:
        """Pseudo mask, skip flag, CAM prompts and ground-truth prompts of every image (CPU work)."""
        skipped = [self.is_skipped(c) for c in cam_results]
        gts = list(gt_masks) if gt_masks is not None else [None] * len(imgs)
        wants_image = any(s.needs_image for s in self.strategies.values())
        args = [(i, img if wants_image else None, cam_results[i].cam, skipped[i], gts[i])
                for i, img in enumerate(imgs)]
        if self._workers is not None and len(imgs) > 1:
            # the processes are kept while the masker and strategy objects stay the same
            key = (id(self.masker), tuple((k, id(s)) for k, s in self.strategies.items()))
            done = self._workers.map(prepare_image, (self.masker, dict(self.strategies)), args, key)
        else:
            done = [prepare_image(self.masker, self.strategies, *a) for a in args]
        return [(pseudo, skipped[i], cam_p, gt_p) for i, (pseudo, cam_p, gt_p) in enumerate(done)]

    def close(self) -> None:
        """Stop the :attr:`prompt_workers` processes, if any were started (idempotent; a later batch
        starts them again). Also done when the pipeline is garbage-collected or used as a context
        manager (``with PromptPipeline.from_config(...) as pipe:``)."""
        if self._workers is not None:
            self._workers.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def is_skipped(self, cam: CamResult) -> bool:
        """Whether an image with this CAM result gets no CAM-derived prompt (its predicted class is in
        :attr:`skip_classes`; never when the result has no class probabilities)."""
        if not self.skip_classes or cam.probabilities.size == 0 or self.class_names is None:
            return False
        return self.class_names[cam.predicted] in self.skip_classes


def _check_skip_classes(skip: Sequence[str], class_names: list[str] | None) -> tuple[str, ...]:
    if isinstance(skip, str):
        raise ConfigError(f"skip_classes must be a list of class names, got the string {skip!r}")
    out = tuple(skip)
    if not out:
        return out
    if class_names is None:
        raise ConfigError(f"skip_classes {list(out)} needs a classifier with known class names "
                          "(a samprompt checkpoint, or classifier.class_names)")
    unknown = [c for c in out if c not in class_names]
    if unknown:
        raise ConfigError(f"skip_classes: unknown class name(s) {unknown}; the classifier's classes are "
                          f"{class_names}")
    return out


def _load_classifier(
    spec: ClassifierSpec, preprocessing: Preprocessing, device: str
) -> tuple[torch.nn.Module, Preprocessing, list[str] | None, str | None]:
    """The configured classifier: ``(model in eval mode, preprocessing, class names, recorded target
    layer)``; a checkpoint brings its own preprocessing, class names and CAM target layer."""
    from samprompt.classifiers import CLASSIFIERS, load_classifier

    dev = resolve_device(device)
    if spec.checkpoint is not None:
        model, info = load_classifier(spec.checkpoint, device=str(dev))
        return model, info.preprocessing, list(info.class_names), info.target_layer
    if spec.name is None:
        raise ConfigError("classifier: give either 'checkpoint' or 'name'")
    params = dict(spec.params)
    if spec.class_names is not None:
        params.setdefault("num_classes", len(spec.class_names))
    try:
        model = CLASSIFIERS.get(spec.name)(**params)
    except TypeError as exc:
        raise ConfigError(f"classifier.params: {exc}") from exc
    return model.to(dev).eval(), preprocessing, spec.class_names, None
