""":class:`PromptPipeline`: classifier → CAM → pseudo mask → prompts → segmenter, for one image or many.

Every prompt strategy runs on the same CAM and the same pseudo mask, and all of an image's prompts are
decoded on ONE embedding of that image (one :meth:`~samprompt.segmenters.Segmenter.embed` per image).
When ground-truth masks are given, the same strategies also run on them (the ground-truth-prompt
baseline) and are decoded on that same embedding.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import weakref
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from numpy.typing import NDArray

from samprompt._arrays import as_bool_mask, as_image
from samprompt.cams import CAM_EXTRACTORS, CamExtractor, CamResult, Target
from samprompt.component import Component
from samprompt.config import (
    ClassifierSpec,
    ComponentSpec,
    PipelineConfig,
    dump_config_file,
    load_config_file,
    validate_model,
)
from samprompt.errors import ConfigError, SampromptError, StageError
from samprompt.maskers import MASKERS, PseudoMasker
from samprompt.preprocess import Preprocessing
from samprompt.prompts import PROMPT_STRATEGIES, Prompt, PromptStrategy
from samprompt.regions import shared_components
from samprompt.registry import Registry
from samprompt.segmenters import SEGMENTERS, Segmenter

__all__ = ["PipelineResult", "PromptPipeline", "StrategyResult", "resolve_device"]

log = logging.getLogger(__name__)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → CUDA when available else CPU; anything else as given (validated by torch)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"device: invalid device {device!r}: {exc}") from exc


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


@contextmanager
def _stage(stage: str, component: Component | str) -> Iterator[None]:
    name = component if isinstance(component, str) else component.name
    try:
        yield
    except StageError:
        raise
    except Exception as exc:  # re-raised with the stage named, cause chained
        raise StageError(stage, name, f"{type(exc).__name__}: {exc}") from exc


def _prompts_for(
    strategies: Mapping[str, PromptStrategy], mask: Any, cam: Any, image: Any = None
) -> dict[str, Prompt | None]:
    """:meth:`PromptPipeline.prompts_for` (module level, so that worker processes can run it too)."""
    out: dict[str, Prompt | None] = {}
    if not strategies:
        return out
    h, w = np.shape(mask)[:2]
    # Validate once for every strategy (the base class's __call__ would repeat it per strategy); the
    # arrays are handed on read-only, and the strategies share their connected-component selections.
    with _stage("prompt", next(iter(strategies.values()))):
        wants_image = image is not None and any(s.uses_image for s in strategies.values())
        checked = PromptStrategy.check_inputs(mask, cam, image if wants_image else None)
    mask_ro, cam_ro = _read_only(checked[0]), _read_only(checked[1])
    with shared_components():
        for label, strategy in strategies.items():
            with _stage("prompt", strategy):
                if type(strategy).__call__ is PromptStrategy.__call__:
                    prompt = strategy.make_checked(mask_ro, cam_ro, checked[2])
                else:  # a strategy with its own __call__ gets exactly what it was given
                    prompt = strategy(mask, cam, image=image)
                if prompt is not None:
                    prompt.check_within(h, w, name=f"prompt of strategy {label!r}")
                out[label] = prompt
    return out


_Prepared = tuple[NDArray[np.bool_], dict[str, Prompt | None], dict[str, Prompt | None]]


def _prepare_one(
    masker: PseudoMasker,
    strategies: Mapping[str, PromptStrategy],
    index: int,
    image: NDArray[np.uint8] | None,
    cam: NDArray[np.float32],
    skipped: bool,
    gt: Any,
) -> _Prepared:
    """Pseudo mask, CAM prompts and ground-truth prompts of one image (the pipeline's CPU work)."""
    with _stage("masker", masker):
        pseudo = masker(cam)
    cam_prompts = dict.fromkeys(strategies) if skipped else _prompts_for(strategies, pseudo, cam, image)
    gt_prompts: dict[str, Prompt | None] = {}
    if gt is not None:
        gt_arr = as_bool_mask(gt, f"gt_masks[{index}]")
        if gt_arr.shape != cam.shape:
            raise ValueError(f"gt_masks[{index}] shape {gt_arr.shape} differs from image shape {cam.shape}")
        # No image here: the ground-truth baseline prompts on the ground-truth mask itself.
        gt_prompts = _prompts_for(strategies, gt_arr, gt_arr)  # the mask as CAM (0 / 1 float32)
    return pseudo, cam_prompts, gt_prompts


# The masker and strategies of the pool a worker process belongs to (set once by _worker_init).
_WORKER_STATE: tuple[PseudoMasker, dict[str, PromptStrategy]] | None = None


def _worker_init(payload: bytes) -> None:
    global _WORKER_STATE
    torch.set_num_threads(1)  # one process per core: no nested thread pools
    _WORKER_STATE = pickle.loads(payload)


def _worker_prepare(
    index: int, image: NDArray[np.uint8] | None, cam: NDArray[np.float32], skipped: bool, gt: Any
) -> _Prepared:
    if _WORKER_STATE is None:  # pragma: no cover - only without the initializer
        raise RuntimeError("prompt worker process was not initialised")
    return _prepare_one(*_WORKER_STATE, index, image, cam, skipped, gt)


def _read_only(arr: NDArray[Any]) -> NDArray[Any]:
    view = arr.view()
    view.flags.writeable = False
    return view


def _build(registry: Registry[Any], spec: ComponentSpec, where: str) -> Any:
    try:
        return registry.create(spec.name, spec.params)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    except SampromptError:
        raise


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
        self._pool: ProcessPoolExecutor | None = None
        self._pool_key: Any = None
        self._pool_owner: Any = None
        self._pool_finalizer: weakref.finalize[Any, Any]
        self._classifier_spec = classifier_spec
        self.device = device

    # ------------------------------------------------------------------ config
    @classmethod
    def from_config(cls, config: Mapping[str, Any] | PipelineConfig | str | Path) -> PromptPipeline:
        """Build a pipeline from a mapping, a :class:`PipelineConfig`, or a JSON/YAML file path.

        Raises:
            ConfigError: Naming the location of an unknown key, bad value or unknown component.
        """
        where = "config"
        if isinstance(config, (str, Path)):
            where = str(config)
            config = load_config_file(config)
        cfg: PipelineConfig = (
            config if isinstance(config, PipelineConfig) else validate_model(PipelineConfig, config, where)
        )
        model, preprocessing, class_names = None, cfg.preprocessing, None
        if cfg.classifier is not None:
            model, preprocessing, class_names = _load_classifier(cfg.classifier, cfg.preprocessing, cfg.device)
        strategies = {
            (spec.label or spec.name): _build(PROMPT_STRATEGIES, spec, f"prompts[{i}]")
            for i, spec in enumerate(cfg.prompts)
        }
        return cls(
            cam=_build(CAM_EXTRACTORS, cfg.cam, "cam"),
            masker=_build(MASKERS, cfg.masker, "masker"),
            prompts=strategies,
            segmenter=_build(SEGMENTERS, cfg.segmenter, "segmenter"),
            classifier=model,
            preprocessing=preprocessing,
            class_names=class_names,
            classifier_spec=cfg.classifier,
            device=cfg.device,
            skip_classes=cfg.skip_classes,
            overlap=cfg.overlap,
            prompt_workers=cfg.prompt_workers,
        )

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
        with _stage("cam", self.cam):
            return self.cam(self.classifier, images, preprocessing=self.preprocessing, targets=targets)

    def prompts_for(
        self, mask: NDArray[np.bool_], cam: NDArray[np.float32], image: NDArray[np.uint8] | None = None
    ) -> dict[str, Prompt | None]:
        """Apply every strategy to one (H, W) mask and its (H, W) CAM; label → prompt or ``None``.

        ``image`` ((H, W, 3) uint8) is handed to strategies that look at the image (``uses_image``).
        """
        return _prompts_for(self.strategies, mask, cam, image)

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
        if self.overlap:
            # The masker and the strategies (CPU) run in a helper thread while the segmenter embeds the
            # batch (on a GPU, mostly waiting for kernels); an embedding failure is reported first.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="samprompt-prompts") as pool:
                future = pool.submit(self._prepare, imgs, cam_results, gt_masks)
                with _stage("embed", self.segmenter):
                    embeddings = self.segmenter.embed_batch(imgs)
                prepared = future.result()
        else:
            with _stage("embed", self.segmenter):
                embeddings = self.segmenter.embed_batch(imgs)
            prepared = self._prepare(imgs, cam_results, gt_masks)
        keyed_all, todo_all = [], []
        for _, _, cam_prompts, gt_prompts in prepared:
            keyed = [("cam", k, p) for k, p in cam_prompts.items()] + [("gt", k, p) for k, p in gt_prompts.items()]
            keyed_all.append(keyed)
            todo_all.append([(src, k, p) for src, k, p in keyed if p is not None])
        # every prompt of the batch in as few decoder calls as the segmenter allows
        with _stage("decode", self.segmenter):
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
    ) -> list[tuple[NDArray[np.bool_], bool, dict[str, Prompt | None], dict[str, Prompt | None]]]:
        """Pseudo mask, skip flag, CAM prompts and ground-truth prompts of every image (CPU work)."""
        skipped = [self.is_skipped(c) for c in cam_results]
        gts = list(gt_masks) if gt_masks is not None else [None] * len(imgs)
        wants_image = any(s.uses_image for s in self.strategies.values())
        args = [(i, img if wants_image else None, cam_results[i].cam, skipped[i], gts[i])
                for i, img in enumerate(imgs)]
        if self.prompt_workers and len(imgs) > 1:
            pool = self._prompt_pool()
            try:
                done = list(pool.map(_worker_prepare, *zip(*args)))
            except BrokenProcessPool:
                self.close()  # a worker died (killed, out of memory): the next batch starts new ones
                raise
        else:
            done = [_prepare_one(self.masker, self.strategies, *a) for a in args]
        return [(pseudo, skipped[i], cam_p, gt_p) for i, (pseudo, cam_p, gt_p) in enumerate(done)]

    def _prompt_pool(self) -> ProcessPoolExecutor:
        """The worker processes of :attr:`prompt_workers`, started on first use (and again when the masker
        or a strategy object was replaced since)."""
        key = (id(self.masker), tuple((k, id(s)) for k, s in self.strategies.items()))
        if self._pool is not None and self._pool_key == key:
            return self._pool
        self.close()
        try:
            payload = pickle.dumps((self.masker, dict(self.strategies)))
        except Exception as exc:  # any pickling failure means the same thing here
            raise ConfigError(
                f"prompt_workers={self.prompt_workers}: the masker and prompt strategies must be picklable "
                f"(importable classes) to run in worker processes; {type(exc).__name__}: {exc}. "
                "Use prompt_workers=0 for them."
            ) from exc
        ctx = multiprocessing.get_context("spawn")  # never fork a process holding torch / CUDA threads
        pool = ProcessPoolExecutor(self.prompt_workers, mp_context=ctx, initializer=_worker_init,
                                   initargs=(payload,))
        self._pool, self._pool_key = pool, key
        self._pool_owner = (self.masker, dict(self.strategies))  # keeps the keyed ids alive
        self._pool_finalizer = weakref.finalize(self, pool.shutdown, wait=False, cancel_futures=True)
        return pool

    def close(self) -> None:
        """Stop the :attr:`prompt_workers` processes, if any were started (idempotent; a later batch
        starts them again). Also done when the pipeline is garbage-collected or used as a context
        manager (``with PromptPipeline.from_config(...) as pipe:``)."""
        if self._pool is not None:
            self._pool_finalizer.detach()
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._pool_key = self._pool_owner = None

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
) -> tuple[torch.nn.Module, Preprocessing, list[str] | None]:
    from samprompt.classifiers import CLASSIFIERS, load_classifier

    dev = resolve_device(device)
    if spec.checkpoint is not None:
        model, info = load_classifier(spec.checkpoint, device=str(dev))
        return model, info.preprocessing, list(info.class_names)
    if spec.name is None:
        raise ConfigError("classifier: give either 'checkpoint' or 'name'")
    params = dict(spec.params)
    if spec.class_names is not None:
        params.setdefault("num_classes", len(spec.class_names))
    try:
        model = CLASSIFIERS.get(spec.name)(**params)
    except TypeError as exc:
        raise ConfigError(f"classifier.params: {exc}") from exc
    return model.to(dev).eval(), preprocessing, spec.class_names
