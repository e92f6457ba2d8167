"""Test-time-augmented and multi-layer fused CAMs (registered ``tta``).

:class:`TTACamExtractor` runs a TorchCAM method (``method``, any registered TorchCAM name such as
``gradcampp`` or ``layercam``) on the original images and on augmented copies — horizontal / vertical flips
and extra network input scales — maps every CAM back onto the original grid (flips undone), and averages
them (``tta_fusion``: ``mean`` or ``max``), then min-max normalises. ``refine: guided`` then filters
the fused CAM with the image as the guide (:func:`~samprompt.cams.refine.guided_filter`), so its edges
follow the image's; ``flips: []`` with no ``scales`` refines a single view. Several ``target_layer`` names are
fused per pass exactly as in the TorchCAM adapters (``fusion``). The default target is ``predicted``; for
lesion localisation use the summed abnormal classes (e.g. ``target=[0, 1]`` = benign + malignant).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray
from pydantic import Field

from samprompt.cams import CAM_EXTRACTORS
from samprompt.cams.base import CamExtractor, CamResult, Target
from samprompt.cams.refine import guided_filter
from samprompt.component import ComponentParams
from samprompt.preprocess import Preprocessing

__all__ = ["TTACamExtractor", "TTAParams"]


def _minmax(a: NDArray[np.float32]) -> NDArray[np.float32]:
    a = np.nan_to_num(a.astype(np.float32), nan=0.0)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi - lo > 1e-12 else np.zeros_like(a)


def _left_right() -> list[Literal["h", "v"]]:
    return ["h"]


class TTAParams(ComponentParams):
    """Parameters of :class:`TTACamExtractor` (documented there)."""

    method: str = "gradcampp"
    target_layer: str | list[str] | None = None
    fusion: Literal["max", "mean"] = "mean"
    flips: list[Literal["h", "v"]] = Field(default_factory=_left_right)
    scales: list[float] = Field(default_factory=list)
    tta_fusion: Literal["mean", "max"] = "mean"
    target: Literal["predicted"] | int | list[int] = "predicted"
    batch_size: int = Field(default=16, ge=1)
    head: Literal["classes", "lesion"] = "classes"
    refine: Literal["none", "guided"] = "none"
    refine_radius: float = Field(default=0.08, gt=0.0, le=0.5)
    refine_eps: float = Field(default=1e-4, gt=0.0, le=1.0)


@CAM_EXTRACTORS.register("tta")
class TTACamExtractor(CamExtractor[TTAParams]):
    """CAM averaged over flips and input scales (see the module docstring).

    Params:
        method: Registered TorchCAM extractor name run on every view (``gradcam``, ``gradcampp``,
            ``layercam``, ...).
        target_layer: Layer name(s) for ``method``; several are fused per view with ``fusion``.
        fusion: Layer fusion of ``method`` (``max`` or ``mean``).
        flips: Extra views: ``"h"`` (left-right) and/or ``"v"`` (up-down).
        scales: Extra views at these multiples of the preprocessing's input size (e.g. ``[1.25]``).
        tta_fusion: How the views' CAMs are combined: ``mean`` or ``max``.
        target: Default target policy (``"predicted"``, a class index, or a list summed).
        batch_size: Images per forward/backward pass.
        head: ``"classes"`` or ``"lesion"`` (the lesion head's CAM), passed to ``method``.
        refine: ``"none"`` or ``"guided"``: the fused CAM filtered with the image's grey level as the guide
            (:func:`~samprompt.cams.refine.guided_filter`).
        refine_radius: The guided filter's window half-width, a fraction of the image's long side (default
            0.08 and ``refine_eps`` 1e-4: chosen on BUSI val, docs: quality, "Image-guided CAM refinement";
            screen other values on your val images with ``benchmarks/cam_refine_screen.py``).
        refine_eps: The guided filter's regularisation (grey levels in [0, 1]).
    """

    def extract(
        self,
        model: torch.nn.Module,
        images: list[NDArray[np.uint8]],
        preprocessing: Preprocessing,
        targets: Target | Sequence[Target],
    ) -> list[CamResult]:
        """Run ``method`` on every view and fuse; probabilities are those of the unaugmented view."""
        p = self.params
        if p.method == "tta" or p.method not in CAM_EXTRACTORS.names():
            raise ValueError(f"tta.method must be a registered CAM extractor other than 'tta', got {p.method!r}")
        params: dict[str, object] = {"target_layer": p.target_layer, "fusion": p.fusion, "batch_size": p.batch_size}
        if p.head != "classes":  # only methods that know lesion heads take the parameter
            params["head"] = p.head
        base = CAM_EXTRACTORS.create(p.method, params)
        views: list[tuple[str, float]] = [("", 1.0)] + [(f, 1.0) for f in p.flips] + [("", s) for s in p.scales]
        acc: list[list[NDArray[np.float32]]] = [[] for _ in images]
        first: list[CamResult] = []
        for flip, scale in views:
            imgs = [np.ascontiguousarray(im[:, ::-1] if flip == "h" else im[::-1] if flip == "v" else im) for im in images]
            pre = preprocessing
            if scale != 1.0:
                h, w = preprocessing.input_size
                pre = preprocessing.model_copy(update={"input_size": (max(8, round(h * scale)), max(8, round(w * scale)))})
            res = base.extract(model, imgs, pre, targets)
            if not first:
                first = res
            for i, r in enumerate(res):
                cam = r.cam[:, ::-1] if flip == "h" else r.cam[::-1] if flip == "v" else r.cam
                acc[i].append(np.ascontiguousarray(cam))
        out = []
        for i, maps in enumerate(acc):
            stack = np.stack(maps)
            fused = _minmax(stack.mean(0) if p.tta_fusion == "mean" else stack.max(0))
            if p.refine == "guided":
                fused = guided_filter(fused, images[i], p.refine_radius, p.refine_eps)
            out.append(CamResult(cam=fused, target=first[i].target, probabilities=first[i].probabilities))
        return out
