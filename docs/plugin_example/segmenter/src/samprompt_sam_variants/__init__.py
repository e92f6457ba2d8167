"""samprompt segmenters for SAM variants that come with a ``SamPredictor`` of their own.

MobileSAM (``mobile_sam``) and SAM-HQ (``segment_anything_hq``) copy segment-anything's predictor API:
``set_image(image)`` runs the image encoder once and keeps the features on the predictor, and
``predict(point_coords, point_labels, box, mask_input, multimask_output)`` decodes one prompt on them.
:class:`PredictorSegmenter` maps that onto samprompt's two steps: :meth:`~PredictorSegmenter.embed` =
``set_image`` (the features are taken OFF the predictor into the :class:`~samprompt.ImageEmbedding`, so
one segmenter can hold many images), :meth:`~PredictorSegmenter.decode` = put them back, then ``predict``
once per prompt.

Coordinates: samprompt gives boxes as pixel edges and points at pixel centres (``col + 0.5``);
the predictors want pixel indices. :func:`~samprompt.segmenters.sam_prompts.to_sam_box` and
:func:`~samprompt.segmenters.sam_prompts.to_sam_points` convert.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import numpy as np
import torch
from numpy.typing import NDArray

from samprompt import ImageEmbedding, Prompt, Segmentation, Segmenter
from samprompt.component import ComponentParams
from samprompt.errors import ConfigError
from samprompt.segmenters.sam_prompts import mask_logits_to_low_res, to_sam_box, to_sam_points

__all__ = ["MobileSamSegmenter", "PredictorParams", "PredictorSegmenter", "SamHqParams", "SamHqSegmenter"]

#: Predictor attributes that ``set_image`` fills (SAM-HQ adds ``interm_features``).
_STATE = ("features", "interm_features", "original_size", "input_size")


def _device(name: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def _load_state_dict(model: torch.nn.Module, checkpoint: Path) -> torch.nn.Module:
    """Load a state dict without running pickled code (``weights_only=True``); it must fill the model."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        missing, _ = model.load_state_dict(state, strict=False)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"segmenter.params.checkpoint: cannot load {str(checkpoint)!r}: {exc}") from exc
    if missing:
        raise ConfigError(
            f"segmenter.params.checkpoint: {str(checkpoint)!r} does not fit the model: "
            f"{len(missing)} weights missing, e.g. {missing[:3]}"
        )
    return model


class PredictorParams(ComponentParams):
    """Parameters of every :class:`PredictorSegmenter`.

    Attributes:
        checkpoint: The model's weights (a state dict, read with ``weights_only=True``).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
        multimask: Keep the best of the three masks SAM predicts (by predicted IoU) instead of its
            single-mask output.
    """

    checkpoint: Path | None = None
    device: str = "auto"
    multimask: bool = True


class SamHqParams(PredictorParams):
    """Parameters of :class:`SamHqSegmenter`: those of :class:`PredictorParams`, plus

    Attributes:
        model_type: Architecture matching the checkpoint.
        hq_token_only: Use only the HQ token's mask (SAM-HQ's recommendation for single objects).
    """

    model_type: Literal["vit_b", "vit_l", "vit_h"] = "vit_l"
    hq_token_only: bool = False


#: The parameter model of a concrete predictor segmenter (each subclass names its own).
ParamsT = TypeVar("ParamsT", bound=PredictorParams)


class PredictorSegmenter(Segmenter[ParamsT], Generic[ParamsT], abc.ABC):
    """A samprompt :class:`~samprompt.Segmenter` around any segment-anything-style ``SamPredictor``.

    Subclasses name their parameter model (:class:`PredictorParams` or a subclass) as the generic
    argument, implement :meth:`build_predictor`, and may add variant-specific arguments to ``predict``
    with :meth:`predict_kwargs`.
    """

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.predictor = self.build_predictor()

    @abc.abstractmethod
    def build_predictor(self) -> Any:
        """Return a predictor with ``set_image``, ``predict`` and a ``model`` attribute."""

    def predict_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments for ``predictor.predict`` (none by default)."""
        return {}

    def embed(self, image: NDArray[np.uint8]) -> ImageEmbedding:
        """Run the image encoder once; image (H, W) or (H, W, 3) uint8 RGB."""
        rgb = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image
        self.predictor.set_image(np.ascontiguousarray(rgb))
        state = {k: getattr(self.predictor, k) for k in _STATE if hasattr(self.predictor, k)}
        return ImageEmbedding(original_size=(int(rgb.shape[0]), int(rgb.shape[1])), data=state)

    def decode(self, embedding: ImageEmbedding, prompts: Sequence[Prompt]) -> Segmentation:
        """Decode each prompt on the image's features: (K, H, W) masks and (K,) predicted IoU."""
        if not prompts:
            return self.empty(embedding)
        for key, value in embedding.data.items():  # this image's features back onto the predictor
            setattr(self.predictor, key, value)
        self.predictor.is_image_set = True
        masks, scores = [], []
        for prompt in prompts:
            kwargs: dict[str, Any] = {"multimask_output": self.params.multimask, **self.predict_kwargs()}
            if prompt.points.shape[0]:
                kwargs["point_coords"] = to_sam_points(prompt.points)
                kwargs["point_labels"] = np.array(prompt.point_labels)  # a writable copy for torch
            if prompt.box is not None:
                kwargs["box"] = to_sam_box(prompt.box)
            if prompt.mask_logits is not None:
                kwargs["mask_input"] = self._low_res(prompt.mask_logits, embedding)
            out, iou, _ = self.predictor.predict(**kwargs)
            best = int(np.argmax(iou))
            masks.append(out[best].astype(bool))
            scores.append(float(iou[best]))
        return Segmentation(np.stack(masks), np.asarray(scores, dtype=np.float32))

    def _low_res(self, logits: NDArray[np.float32], embedding: ImageEmbedding) -> NDArray[np.float32]:
        model = self.predictor.model
        side = 4 * model.prompt_encoder.image_embedding_size[0]
        low = mask_logits_to_low_res(
            [logits], embedding.data["input_size"], model.image_encoder.img_size, side, torch.device("cpu")
        )
        return low[0].numpy()  # (1, 256, 256), what predict(mask_input=...) takes


class MobileSamSegmenter(PredictorSegmenter[PredictorParams]):
    """MobileSAM: a TinyViT image encoder with SAM's decoder.

    Needs ``pip install git+https://github.com/ChaoningZhang/MobileSAM.git``.

    Params:
        checkpoint: ``mobile_sam.pt``.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
        multimask: Keep the best of SAM's three masks (by predicted IoU) instead of its single mask.
    """

    def build_predictor(self) -> Any:
        """MobileSAM's ``vit_t`` model with the checkpoint's weights, in its own ``SamPredictor``."""
        try:
            from mobile_sam import SamPredictor, sam_model_registry
        except ImportError as exc:
            raise ConfigError(
                "segmenter 'mobile_sam' needs the MobileSAM package: "
                "pip install git+https://github.com/ChaoningZhang/MobileSAM.git"
            ) from exc
        if self.params.checkpoint is None:
            raise ConfigError("segmenter.params.checkpoint: required (mobile_sam.pt)")
        model = _load_state_dict(sam_model_registry["vit_t"](), self.params.checkpoint)
        return SamPredictor(model.to(_device(self.params.device)).eval())


class SamHqSegmenter(PredictorSegmenter[SamHqParams]):
    """SAM-HQ (SAM plus a high-quality output token). Needs ``pip install segment-anything-hq``.

    Params:
        checkpoint: ``sam_hq_vit_b.pth``, ``sam_hq_vit_l.pth`` or ``sam_hq_vit_h.pth``.
        model_type: Architecture matching the checkpoint.
        hq_token_only: Use only the HQ token's mask (SAM-HQ's recommendation for single objects).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
        multimask: Keep the best of three masks (by predicted IoU) instead of the single mask.
    """

    def build_predictor(self) -> Any:
        """SAM-HQ's model of ``model_type`` with the checkpoint's weights, in its own ``SamPredictor``."""
        try:
            from segment_anything_hq import SamPredictor, sam_model_registry
        except ImportError as exc:
            raise ConfigError("segmenter 'sam_hq' needs SAM-HQ: pip install segment-anything-hq") from exc
        if self.params.checkpoint is None:
            raise ConfigError("segmenter.params.checkpoint: required (sam_hq_vit_*.pth)")
        model = _load_state_dict(sam_model_registry[self.params.model_type](), self.params.checkpoint)
        return SamPredictor(model.to(_device(self.params.device)).eval())

    def predict_kwargs(self) -> dict[str, Any]:
        """SAM-HQ's ``predict`` takes ``hq_token_only``."""
        return {"hq_token_only": self.params.hq_token_only}
