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
``batch_size`` images. :meth:`HfSamSegmenter.decode_batch` decodes all prompts of equal structure (box or
not, number of points) of all images in one model call on the stored embeddings, keeps the mask with
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
from samprompt._torch import resolve_device
from samprompt.component import ComponentParams
from samprompt.errors import CheckpointError, ConfigError
from samprompt.prompts.base import Prompt
from samprompt.segmenters import SEGMENTERS
from samprompt.segmenters.base import ImageEmbedding, Segmentation, Segmenter
from samprompt.segmenters.medsam import medsam_input
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
            decoder_batch: Most (padded) prompts per model call in :meth:`decode_batch`.
        """

        model: Path
        device: str = "auto"
        multimask: bool = True
        preprocessing: Literal["processor", "medsam"] = "processor"
        batch_size: int = Field(default=2, ge=1)
        decoder_batch: int = Field(default=64, ge=1)

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
        self.device = resolve_device(p.device, f"{self.name}.params.device")
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
        """Decode all ``prompts`` of one image; see :meth:`decode_batch`."""
        return self.decode_batch([embedding], [prompts])[0]

    def decode_batch(
        self, embeddings: Sequence[ImageEmbedding], prompts: Sequence[Sequence[Prompt]]
    ) -> list[Segmentation]:
        """Decode the prompts of several images, one model call per prompt structure (and chunk).

        Prompts with the same structure (box or not, number of points) go through ONE forward for all
        images: each image's list is padded to the longest by repeating its last prompt (the model
        decodes every prompt independently; the padded rows are dropped).

        Args:
            embeddings: From :meth:`embed` / :meth:`embed_batch` of THIS segmenter, one per image.
            prompts: One list per image (may be empty): boxes (pixel edges) and/or points (``(x, y)``
                centres, label 1 foreground / 0 background).

        Returns:
            One :class:`Segmentation` per image: (K_i, H_i, W_i) bool masks at the original size and
            (K_i,) float32 predicted IoU.

        Raises:
            TypeError: If an embedding was not made by an ``hf_sam`` segmenter or a prompt is no Prompt.
            ValueError: If the sequences differ in length, or a prompt has a mask or neither a box nor
                points.
        """
        if len(embeddings) != len(prompts):
            raise ValueError(f"decode_batch got {len(embeddings)} embeddings but {len(prompts)} prompt lists")
        groups: dict[tuple[bool, int], dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
        for k, (emb, ps) in enumerate(zip(embeddings, prompts)):
            if ps and not isinstance(emb.data, HfSamFeatures):
                raise TypeError(f"embedding was not made by an hf_sam segmenter (data is {type(emb.data).__name__})")
            for j, p in enumerate(ps):
                if not isinstance(p, Prompt):
                    raise TypeError(f"prompts[{k}][{j}] must be a Prompt, got {type(p).__name__}")
                if p.mask_logits is not None or (p.box is None and not len(p.points)):
                    raise ValueError(f"prompts[{k}][{j}]: hf_sam takes boxes and points only (no mask prompts)")
                groups[(p.box is not None, len(p.points))][k].append(j)
        masks = [np.zeros((len(ps), *emb.original_size), bool) for emb, ps in zip(embeddings, prompts)]
        scores = [np.zeros(len(ps), np.float32) for ps in prompts]
        with torch.inference_mode():
            for per_image in groups.values():
                chunk: dict[int, list[int]] = {}
                for k, js in per_image.items():  # at most decoder_batch padded rows per forward
                    width = max([len(js), *map(len, chunk.values())])
                    if chunk and width * (len(chunk) + 1) > self.params.decoder_batch:
                        self._decode_rows(embeddings, prompts, chunk, masks, scores)
                        chunk = {}
                    chunk[k] = js
                self._decode_rows(embeddings, prompts, chunk, masks, scores)
        return [Segmentation(m, sc) for m, sc in zip(masks, scores)]

    def _decode_rows(
        self,
        embeddings: Sequence[ImageEmbedding],
        prompts: Sequence[Sequence[Prompt]],
        chunk: dict[int, list[int]],
        masks: list[NDArray[np.bool_]],
        scores: list[NDArray[np.float32]],
    ) -> None:
        """One forward for prompts of one structure on B images (``chunk``: image → prompt indices)."""
        images = list(chunk)
        G = max(len(js) for js in chunk.values())
        feats = [embeddings[k].data for k in images]
        rows = []  # per image: its prompts padded to G by repeating the last one
        for k in images:
            js = chunk[k]
            rows.append([prompts[k][j] for j in js] + [prompts[k][js[-1]]] * (G - len(js)))
        scale = [
            np.array([f.input_size[1] / embeddings[k].original_size[1], f.input_size[0] / embeddings[k].original_size[0]],
                     np.float32)
            for k, f in zip(images, feats)
        ]
        kwargs: dict[str, Any] = {}
        first = rows[0][0]
        if len(first.points):
            xy = np.stack([np.stack([to_sam_points(p.points) * sc for p in ps]) for ps, sc in zip(rows, scale)])
            kwargs["input_points"] = torch.from_numpy(xy).to(self.device)  # (B, G, N, 2)
            labels = np.stack([np.stack([p.point_labels for p in ps]) for ps in rows])
            kwargs["input_labels"] = torch.from_numpy(labels).to(self.device)  # (B, G, N)
        if first.box is not None:
            boxes = np.stack([
                np.stack([to_sam_box(p.box).reshape(2, 2) * sc for p in ps]).reshape(-1, 4)  # type: ignore[arg-type]
                for ps, sc in zip(rows, scale)
            ])
            kwargs["input_boxes"] = torch.from_numpy(boxes).to(self.device)  # (B, G, 4)
        levels = [torch.cat(level) for level in zip(*(f.embeddings for f in feats))]
        emb: Any = levels[0] if self.kind == "sam" else levels
        out = self.model(image_embeddings=emb, multimask_output=self.params.multimask, **kwargs)
        for b, k in enumerate(images):
            n = len(chunk[k])
            pred, iou = out.pred_masks[b, :n], out.iou_scores[b, :n]  # (n, M, L, L), (n, M)
            best = iou.argmax(dim=1) if self.params.multimask else torch.zeros(n, dtype=torch.long)
            r = torch.arange(n, device=pred.device)
            best = best.to(pred.device)
            low = pred[r, best][:, None].float()
            up = self._postprocess(low, embeddings[k].original_size, feats[b].input_size)
            masks[k][chunk[k]] = (up > 0).cpu().numpy()
            scores[k][chunk[k]] = iou[r, best].float().cpu().numpy()

    def _postprocess(self, low: torch.Tensor, size: tuple[int, int], input_size: tuple[int, int]) -> torch.Tensor:
        """(G, 1, L, L) logits → (G, H, W) logits at the original size (the processor's own resize)."""
        if self.kind == "sam":
            pad = {"height": self.image_size, "width": self.image_size}
            up = self.processor.post_process_masks([low], [size], [input_size], binarize=False, pad_size=pad)
        else:
            up = self.processor.post_process_masks([low], [size], binarize=False)
        out: torch.Tensor = up[0][:, 0]
        return out
