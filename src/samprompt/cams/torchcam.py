"""CAM extractors backed by TorchCAM, one registered name per TorchCAM method.

Names: ``gradcam``, ``gradcampp``, ``smoothgradcampp``, ``xgradcam``, ``layercam`` (gradient based)
and ``scorecam``, ``sscam``, ``iscam`` (score based). Each accepts one target layer or several (the
per-layer maps are fused on the original grid by ``fusion``). Hooks are registered for one call and
always removed, even when the model raises.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torchcam.methods as tcm
from numpy.typing import NDArray
from pydantic import Field

from samprompt._torch import has_lesion_head, lesion_logits
from samprompt.cams.base import CamExtractor, CamResult, Target, normalize_targets
from samprompt.component import ComponentParams
from samprompt.errors import ConfigError
from samprompt.preprocess import Preprocessing

__all__ = ["TorchCamExtractor", "TorchCamParams"]

log = logging.getLogger(__name__)


def _minmax(t: torch.Tensor) -> torch.Tensor:
    t = torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = t.amin(), t.amax()
    return (t - lo) / (hi - lo) if float(hi - lo) > 1e-12 else torch.zeros_like(t)


class TorchCamParams(ComponentParams):
    """Parameters of every TorchCAM-backed extractor (see :class:`TorchCamExtractor`)."""

    target_layer: str | list[str] | None = None
    batch_size: int = Field(default=16, ge=1)
    fusion: Literal["max", "mean"] = "max"
    target: Literal["predicted"] | int | list[int] = "predicted"
    head: Literal["classes", "lesion"] = "classes"


class TorchCamExtractor(CamExtractor[TorchCamParams]):
    """Base of the TorchCAM-backed extractors; subclasses set :attr:`method` (a TorchCAM class name).

    Params:
        target_layer: Module name(s) to hook (see ``model.named_modules()``); ``None`` lets TorchCAM
            pick the last convolutional block automatically.
        batch_size: Images per forward/backward pass.
        fusion: How several layers' maps are combined on the original grid (``max`` or ``mean``),
            each normalised to [0, 1] first.
        target: Default target policy when the call gives none: ``"predicted"``, a class index, or a
            list of class indices to sum.
        head: ``"classes"`` (the CAM of the target classes' logits) or ``"lesion"``: the CAM of the
            classifier's lesion-head logit (:mod:`samprompt.classifiers.lesion_head`) for every image,
            whatever the target (gradient-based methods only; the result's ``target`` and
            ``probabilities`` still come from the class logits).
    """

    #: Name of the TorchCAM class in :mod:`torchcam.methods` that computes the maps.
    method: ClassVar[str] = "GradCAM"

    def _make(self, model: torch.nn.Module, input_shape: tuple[int, int, int]) -> Any:
        cls = getattr(tcm, self.method)
        kwargs: dict[str, Any] = {"input_shape": input_shape}
        if self.method in {"ScoreCAM", "SSCAM", "ISCAM"}:
            kwargs["batch_size"] = self.params.batch_size
        return cls(model, target_layer=self.params.target_layer, **kwargs)

    def extract(
        self,
        model: torch.nn.Module,
        images: list[NDArray[np.uint8]],
        preprocessing: Preprocessing,
        targets: Target | Sequence[Target],
    ) -> list[CamResult]:
        per_image = normalize_targets(targets, len(images))
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
        h, w = preprocessing.input_size
        was_training = model.training
        model.eval()
        results: list[CamResult] = []
        lesion = self.params.head == "lesion"
        if lesion:
            if self.method in {"ScoreCAM", "SSCAM", "ISCAM"}:
                raise ConfigError(f"head: lesion needs a gradient-based CAM method, not {self.method}")
            if not has_lesion_head(model):
                raise ConfigError("head: lesion: the classifier has no lesion head (train it with "
                                  "classifier.train.lesion_head > 0 and a negative class)")
        extractor = self._make(model, (3, h, w))
        try:
            bs = self.params.batch_size
            for start in range(0, len(images), bs):
                chunk = images[start : start + bs]
                x, geos = preprocessing.batch(chunk, device=device)  # resized on the classifier's device
                x = x.requires_grad_(True)
                with torch.enable_grad():
                    reading: AbstractContextManager[list[torch.Tensor]] = (
                        lesion_logits(model) if lesion else nullcontext([]))
                    with reading as seen:
                        scores = model(x)
                    if scores.ndim != 2:
                        raise ValueError(f"classifier must return (B, C) logits, got shape {tuple(scores.shape)}")
                    n_classes = scores.shape[1]
                    chosen = normalize_targets(per_image[start : start + bs], len(chunk), n_classes)
                    pred = scores.detach().argmax(1).tolist()
                    resolved: list[tuple[int, ...]] = [
                        (pred[i],) if t == "predicted" else ((t,) if isinstance(t, int) else tuple(t))
                        for i, t in enumerate(chosen)
                    ]
                    if lesion:  # the lesion logit of every image, as a (B, 1) score
                        layer_cams = extractor(class_idx=[0] * len(chunk), scores=seen[-1][:, None])
                    elif all(len(r) == 1 for r in resolved):
                        layer_cams = extractor(class_idx=[r[0] for r in resolved], scores=scores)
                    else:
                        layer_cams = extractor(
                            targets=[lambda out, idx=list(r): out[idx].sum() for r in resolved], scores=scores
                        )
                probs = torch.softmax(scores.detach().float(), dim=1).cpu().numpy()
                for i, geo in enumerate(geos):
                    maps = [_minmax(Preprocessing.to_original(_minmax(lc[i].float()), geo)) for lc in layer_cams]
                    stack = torch.stack(maps)
                    fused = stack.amax(0) if self.params.fusion == "max" else _minmax(stack.mean(0))
                    results.append(
                        CamResult(
                            cam=fused.detach().cpu().numpy().astype(np.float32),
                            target=resolved[i],
                            probabilities=probs[i].astype(np.float32),
                        )
                    )
                extractor.reset_hooks()
        finally:
            extractor.remove_hooks()
            extractor.reset_hooks()
            model.train(was_training)
        return results


def _register(name: str, method: str) -> None:
    from samprompt.cams import CAM_EXTRACTORS

    cls = type(
        f"{method}Extractor",
        (TorchCamExtractor,),
        {"method": method, "__doc__": f"TorchCAM ``{method}`` as a samprompt CAM extractor (name ``{name}``).",
         "__module__": __name__},
    )
    globals()[cls.__name__] = cls
    __all__.append(cls.__name__)
    CAM_EXTRACTORS.add(name, cls)


for _name, _method in {
    "gradcam": "GradCAM",
    "gradcampp": "GradCAMpp",
    "smoothgradcampp": "SmoothGradCAMpp",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "scorecam": "ScoreCAM",
    "sscam": "SSCAM",
    "iscam": "ISCAM",
}.items():
    _register(_name, _method)
