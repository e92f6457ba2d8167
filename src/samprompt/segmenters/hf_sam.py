"""The ``hf_sam`` segmenter: a LOCAL Hugging Face SAM / SAM 2 model folder (``samprompt[hf]``).

Example:
    >>> seg = SEGMENTERS.create("hf_sam", {"model": "models/sam-vit-base"})  # doctest: +SKIP
    >>> out = seg.segment(image, [Prompt(box=[10, 20, 200, 180])])  # doctest: +SKIP

The folder is what ``save_pretrained`` writes (``config.json``, ``model.safetensors``, the processor's
``preprocessor_config.json`` / ``processor_config.json``): SAM, SlimSAM and MedSAM checkpoints are
``SamModel`` folders (``model_type: "sam"``), SAM 2 / 2.1 ones ``Sam2Model`` folders (``"sam2"``, where the
installed ``transformers`` has them). Loading is local only (``local_files_only=True``, no hub id is
ever resolved) and reads safetensors only (``use_safetensors=True``): no pickle is unpickled.

:meth:`HfSamSegmenter.embed_batch` runs the folder's processor (``preprocessing="processor"``) or
MedSAM's recipe (``"medsam"``, see :mod:`samprompt.segmenters.medsam`) and the vision encoder once per
``batch_size`` images. :meth:`HfSamSegmenter.decode` encodes all prompts of one image with equal
structure (box or not, number of points) in one model call on the stored embedding, keeps the mask with
the highest predicted IoU when ``multimask`` is on, and lets the processor's ``post_process_masks`` bring
the logits back to the original size (thresholded at 0). Mask prompts are not supported (``ValueError``).

Coordinates: samprompt's ``(x, y)`` point centres and pixel-edge boxes are converted to SAM's pixel-index
convention (:func:`~samprompt.segmenters.sam_prompts.to_sam_points`, ``to_sam_box``) and scaled per axis
to the resized input, as the processor does with ``input_points`` / ``input_boxes``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from pydantic import Field

from samprompt._arrays import as_image
from samprompt._extras import require
from samprompt.component import ComponentParams
from samprompt.errors import CheckpointError, ConfigError
from samprompt.prompts.base import Prompt
from samprompt.segmenters import SEGMENTERS
from samprompt.segmenters.base import ImageEmbedding, Segmentation, Segmenter
from samprompt.segmenters.medsam import medsam_input
from samprompt.segmenters.sam import resolve_device
from samprompt.segmenters.sam_prompts import to_sam_box, to_sam_points

__all__ = ["HF_MODEL_TYPES", "HfSamFeatures", "HfSamSegmenter"]

log = logging.getLogger(__name__)

#: ``config.json`` model_type → (model class, processor class) in ``transformers``.
HF_MODEL_TYPES: dict[str, tuple[str, str]] = {"sam": ("SamModel", "SamProcessor"), "sam2": ("Sam2Model", "Sam2Processor")}


@dataclass(frozen=True, eq=False)
class HfSamFeatures:
    """The payload of an ``hf_sam`` :class:`ImageEmbedding`.

    Attributes:
        embeddings: SAM: one (1, C, g, g) tensor; SAM 2: its feature maps, highest resolution first.
        input_size: ``(h, w)`` of the resized image inside the encoder input (SAM 2 and MedSAM: the square).
    """

    embeddings: tuple[torch.Tensor, ...]
    input_size: tuple[int, int]


@SEGMENTERS.register("hf_sam")
class HfSamSegmenter(Segmenter):
    """A local Hugging Face ``SamModel`` / ``Sam2Model`` folder as a samprompt segmenter.

    Raises:
        samprompt._extras.MissingExtraError: ``transformers`` is not installed (``pip install 'samprompt[hf]'``).
        ConfigError: Unsupported model type (the message lists the supported ones), bad device.
        CheckpointError: The folder is missing, has no safetensors weights or cannot be loaded (named).
    """

    class Params(ComponentParams):
        """Parameters of :class:`HfSamSegmenter`.

        Attributes:
            model: Local folder written by ``save_pretrained`` (model + processor); never a hub id.
            device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
            multimask: Predict 3 masks per prompt and keep the one with the highest predicted IoU;
                ``False`` uses the model's single-mask output.
            preprocessing: ``"processor"`` (the folder's own image processor) or ``"medsam"`` (MedSAM's
                square resize and min-max normalisation to [0, 1]; for MedSAM weights).
            batch_size: Images per encoder call in :meth:`embed_batch`.
        """

        model: Path
        device: str = "auto"
        multimask: bool = True
        preprocessing: Literal["processor", "medsam"] = "processor"
        batch_size: int = Field(default=2, ge=1)

    params: Params

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        tf = require("transformers", component="segmenter 'hf_sam'", package="transformers", extra="hf")
        folder = p.model
        if not folder.is_dir():
            raise CheckpointError(f"hf_sam model folder {str(folder)!r} does not exist or is not a folder")
        try:
            config = tf.AutoConfig.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"hf_sam model folder {str(folder)!r}: unreadable config.json: {exc}") from exc
        self.kind: str = str(config.model_type)
        names = HF_MODEL_TYPES.get(self.kind)
        if names is None or not all(hasattr(tf, n) for n in names):
            have = sorted(k for k, v in HF_MODEL_TYPES.items() if all(hasattr(tf, n) for n in v))
            raise ConfigError(
                f"{self.name}.params.model: {str(folder)!r} holds a {self.kind!r} model; this transformers "
                f"{tf.__version__} supports {have}"
            )
        try:
            model = getattr(tf, names[0]).from_pretrained(folder, local_files_only=True, use_safetensors=True)
            self.processor = getattr(tf, names[1]).from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"hf_sam model folder {str(folder)!r} cannot be loaded (safetensors weights and processor "
                f"files expected): {exc}"
            ) from exc
        self.device = resolve_device(p.device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.image_size = int(config.prompt_encoder_config.image_size)
        log.info("hf_sam: loaded %s model from %s on %s", self.kind, folder, self.device)

    # ------------------------------------------------------------------ embedding
    def embed(self, image: NDArray[np.uint8]) -> ImageEmbedding:
        """Embed one image; see :meth:`embed_batch`."""
        return self.embed_batch([image])[0]

    def _pixels(self, chunk: list[NDArray[np.uint8]]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Images → ((B, 3, S, S) encoder input on the device, resized (h, w) of each)."""
        S = self.image_size
        if self.params.preprocessing == "medsam":
            return torch.stack([medsam_input(a, S, self.device) for a in chunk]), [(S, S)] * len(chunk)
        enc = self.processor(images=list(chunk), return_tensors="pt")
        sizes = [(S, S)] * len(chunk)
        if "reshaped_input_sizes" in enc:  # SAM keeps the aspect ratio and pads; SAM 2 resizes to the square
            sizes = [(int(h), int(w)) for h, w in enc["reshaped_input_sizes"].tolist()]
        return enc["pixel_values"].to(self.device), sizes

    def embed_batch(self, images: Sequence[NDArray[np.uint8]]) -> list[ImageEmbedding]:
        """Embed images of any sizes, ``batch_size`` per encoder call.

        Args:
            images: (H, W) or (H, W, 3) uint8 RGB images at their original sizes.

        Returns:
            One :class:`ImageEmbedding` per image (``data`` is a :class:`HfSamFeatures`), in order.
        """
        arrays = [as_image(im) for im in images]
        out: list[ImageEmbedding] = []
        for start in range(0, len(arrays), self.params.batch_size):
            chunk = arrays[start : start + self.params.batch_size]
            with torch.inference_mode():
                pixels, sizes = self._pixels(chunk)
                emb = self.model.get_image_embeddings(pixels)
            maps = list(emb) if isinstance(emb, (list, tuple)) else [emb]
            for i, a in enumerate(chunk):
                per = tuple(m[i : i + 1].clone() for m in maps)
                out.append(ImageEmbedding(a.shape[:2], HfSamFeatures(per, sizes[i])))
        return out

    # ------------------------------------------------------------------ decoding
    def decode(self, embedding: ImageEmbedding, prompts: Sequence[Prompt]) -> Segmentation:
        """Decode all ``prompts`` of one image, one model call per prompt structure.

        Args:
            embedding: From :meth:`embed` / :meth:`embed_batch` of THIS segmenter.
            prompts: K prompts in original-image pixels: boxes (pixel edges) and/or points (``(x, y)``
                centres, label 1 foreground / 0 background).

        Returns:
            (K, H, W) bool masks at the original size and (K,) float32 predicted IoU.

        Raises:
            TypeError: If the embedding was not made by an ``hf_sam`` segmenter or a prompt is no Prompt.
            ValueError: If a prompt has a mask or neither a box nor points.
        """
        data = embedding.data
        if not isinstance(data, HfSamFeatures):
            raise TypeError(f"embedding was not made by an hf_sam segmenter (data is {type(data).__name__})")
        if not prompts:
            return self.empty(embedding)
        groups: dict[tuple[bool, int], list[int]] = defaultdict(list)
        for i, p in enumerate(prompts):
            if not isinstance(p, Prompt):
                raise TypeError(f"prompts[{i}] must be a Prompt, got {type(p).__name__}")
            if p.mask_logits is not None or (p.box is None and not len(p.points)):
                raise ValueError(f"prompts[{i}]: hf_sam takes boxes and points only (no mask prompts)")
            groups[(p.box is not None, len(p.points))].append(i)
        H, W = embedding.original_size
        masks = np.zeros((len(prompts), H, W), bool)
        scores = np.zeros(len(prompts), np.float32)
        with torch.inference_mode():
            for idx in groups.values():
                low, iou = self._low_res([prompts[i] for i in idx], data, (H, W))
                up = self._postprocess(low, (H, W), data.input_size)
                masks[idx] = (up > 0).cpu().numpy()
                scores[idx] = iou.cpu().numpy()
        return Segmentation(masks, scores)

    def _low_res(
        self, prompts: list[Prompt], data: HfSamFeatures, size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """G prompts of one structure → (G, 1, L, L) logits of the chosen mask and (G,) predicted IoU."""
        (H, W), (h, w) = size, data.input_size
        scale = np.array([w / W, h / H], np.float32)
        kwargs: dict[str, Any] = {}
        if len(prompts[0].points):
            xy = np.stack([to_sam_points(p.points) * scale for p in prompts])[None]
            kwargs["input_points"] = torch.from_numpy(xy).to(self.device)
            labels = np.stack([p.point_labels for p in prompts])[None]
            kwargs["input_labels"] = torch.from_numpy(labels).to(self.device)
        if prompts[0].box is not None:
            boxes = np.stack([to_sam_box(p.box).reshape(2, 2) * scale for p in prompts])  # type: ignore[arg-type]
            kwargs["input_boxes"] = torch.from_numpy(boxes.reshape(1, -1, 4)).to(self.device)
        emb: Any = data.embeddings[0] if self.kind == "sam" else list(data.embeddings)
        out = self.model(image_embeddings=emb, multimask_output=self.params.multimask, **kwargs)
        pred, iou = out.pred_masks[0], out.iou_scores[0]  # (G, M, L, L), (G, M)
        best = iou.argmax(dim=1) if self.params.multimask else torch.zeros(len(prompts), dtype=torch.long)
        rows = torch.arange(len(prompts), device=pred.device)
        best = best.to(pred.device)
        return pred[rows, best][:, None].float(), iou[rows, best].float()

    def _postprocess(self, low: torch.Tensor, size: tuple[int, int], input_size: tuple[int, int]) -> torch.Tensor:
        """(G, 1, L, L) logits → (G, H, W) logits at the original size (the processor's own resize)."""
        if self.kind == "sam":
            pad = {"height": self.image_size, "width": self.image_size}
            up = self.processor.post_process_masks([low], [size], [input_size], binarize=False, pad_size=pad)
        else:
            up = self.processor.post_process_masks([low], [size], binarize=False)
        out: torch.Tensor = up[0][:, 0]
        return out
