"""The ``sam2`` segmenter: SAM 2 / 2.1 image prediction from the ``sam2`` package (``samprompt[sam2]``).

Example:
    >>> params = {"config": "configs/sam2.1/sam2.1_hiera_t.yaml", "checkpoint": "sam2.1_hiera_tiny.pt"}
    >>> seg = SEGMENTERS.create("sam2", params)  # doctest: +SKIP
    >>> out = seg.segment(image, [Prompt(box=[10, 20, 200, 180])])  # doctest: +SKIP

The model is built from one of the package's Hydra configs (``config``, plus optional Hydra
``overrides``) exactly as ``sam2.build_sam.build_sam2`` builds it, and its weights are read from a LOCAL
checkpoint with ``torch.load(..., weights_only=True)`` (SAM 2's ``{"model": state_dict}`` layout or a bare
state dict). Nothing is downloaded.

Per image, :meth:`Sam2Segmenter.embed_batch` runs the package's own ``SAM2Transforms`` (resize to the
square ``image_size`` without keeping the aspect ratio, ImageNet normalisation) and the Hiera encoder
once, ``batch_size`` images per call, and keeps the lowest-resolution embedding plus the high-resolution
features SAM 2's mask decoder uses. :meth:`Sam2Segmenter.decode_batch` encodes all prompts of equal
structure (box or not, number of points, mask or not) in one prompt-encoder call and decodes them in one
mask-decoder call (``decoder_batch`` prompts at most), each prompt on its own image's features, picks the
mask with the highest predicted IoU when ``multimask`` is on, and upsamples the logits to the original
size as ``SAM2ImagePredictor`` does (bilinear) before thresholding at ``mask_threshold``.

Coordinates: samprompt's ``(x, y)`` point centres and pixel-edge boxes are converted to SAM's pixel-index
convention (:func:`~samprompt.segmenters.sam_prompts.to_sam_points`, ``to_sam_box``), then normalised by
the original width / height and scaled to ``image_size``, as ``SAM2ImagePredictor.predict`` does.
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
import torch.nn.functional as F
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
from samprompt.segmenters.sam_prompts import to_sam_box, to_sam_points

__all__ = ["Sam2Features", "Sam2Segmenter", "load_sam2_state_dict"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Sam2Features:
    """The payload of a SAM 2 :class:`ImageEmbedding`.

    Attributes:
        image_embed: (1, C, g, g) float32 lowest-resolution features (C=256, g=64 for the official models).
        high_res: Higher-resolution features for the decoder: (1, C/8, 4g, 4g) and (1, C/4, 2g, 2g).
    """

    image_embed: torch.Tensor
    high_res: tuple[torch.Tensor, ...]


def load_sam2_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a SAM 2 checkpoint (``{"model": state_dict}`` or a bare state dict) with ``weights_only=True``.

    Raises:
        CheckpointError: Naming the file when it is missing, unreadable safely or not a state dict.
    """
    from samprompt.classifiers._io import safe_load  # the one reading of .pt files

    obj = safe_load(path, "SAM 2 checkpoint")
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise CheckpointError(f"SAM 2 checkpoint {str(path)!r} does not hold a state dict (names to tensors)")
    return obj


@SEGMENTERS.register("sam2")
class Sam2Segmenter(Segmenter):
    """SAM 2 / 2.1 (``sam2`` package) as a samprompt segmenter.

    Raises:
        samprompt._extras.MissingExtraError: The ``sam2`` package is not installed (``pip install 'samprompt[sam2]'``).
        ConfigError: Unknown config name, bad overrides or device.
        CheckpointError: Checkpoint missing, unreadable with ``weights_only=True``, or not fitting the
            config (the message names the file and the config).
    """

    class Params(ComponentParams):
        """Parameters of :class:`Sam2Segmenter`.

        Attributes:
            config: Hydra config name inside the ``sam2`` package, e.g.
                ``"configs/sam2.1/sam2.1_hiera_l.yaml"`` (must match the checkpoint).
            checkpoint: Local checkpoint file (``sam2.1_hiera_large.pt``); never downloaded.
            overrides: Extra Hydra overrides (``"++model.image_size=512"``), applied after the ones
                ``build_sam2`` adds.
            device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
            multimask: Predict 3 masks per prompt and keep the one with the highest predicted IoU;
                ``False`` uses SAM 2's single-mask output (with its stability fallback).
            mask_threshold: Logit threshold of the masks (SAM 2's default 0).
            batch_size: Images per encoder call in :meth:`embed_batch`.
            decoder_batch: Most prompts per mask-decoder call.
            precision: ``"bf16"`` runs the image encoder under bf16 autocast (SAM 2's recommended CUDA
                setting; features are kept in fp32 and the decoder runs in fp32).
        """

        config: str = "configs/sam2.1/sam2.1_hiera_l.yaml"
        checkpoint: Path
        overrides: tuple[str, ...] = ()
        device: str = "auto"
        multimask: bool = True
        mask_threshold: float = 0.0
        batch_size: int = Field(default=2, ge=1)
        decoder_batch: int = Field(default=64, ge=1)
        precision: Literal["fp32", "bf16"] = "fp32"

    params: Params

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        build = require("sam2.build_sam", component="segmenter 'sam2'", package="sam2", extra="sam2")
        transforms = require("sam2.utils.transforms", component="segmenter 'sam2'", package="sam2", extra="sam2")
        state = load_sam2_state_dict(p.checkpoint)
        self.device = resolve_device(p.device, f"{self.name}.params.device")
        try:
            model = build.build_sam2(p.config, None, device="cpu", hydra_overrides_extra=list(p.overrides))
        except Exception as exc:  # Hydra raises several types for a missing config / bad override
            raise ConfigError(f"{self.name}.params.config: cannot build {p.config!r}: {exc}") from exc
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            detail = " ".join(line.strip() for line in str(exc).strip().splitlines()[:4])
            raise CheckpointError(
                f"SAM 2 checkpoint {str(p.checkpoint)!r} does not fit config {p.config!r}: {detail}"
            ) from exc
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.image_size = int(self.model.image_size)
        self._transforms = transforms.SAM2Transforms(resolution=self.image_size, mask_threshold=p.mask_threshold)
        log.info("sam2: loaded %s from %s on %s", p.config, p.checkpoint, self.device)

    # ------------------------------------------------------------------ embedding
    def embed(self, image: NDArray[np.uint8]) -> ImageEmbedding:
        """Embed one image; see :meth:`embed_batch`."""
        return self.embed_batch([image])[0]

    def embed_batch(self, images: Sequence[NDArray[np.uint8]]) -> list[ImageEmbedding]:
        """Embed images of any sizes, ``batch_size`` per encoder call.

        Args:
            images: (H, W) or (H, W, 3) uint8 RGB images at their original sizes.

        Returns:
            One :class:`ImageEmbedding` per image (``data`` is a :class:`Sam2Features`), in order.
        """
        arrays = [as_image(im) for im in images]
        out: list[ImageEmbedding] = []
        for start in range(0, len(arrays), self.params.batch_size):
            chunk = arrays[start : start + self.params.batch_size]
            autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.params.precision == "bf16")
            with torch.inference_mode(), autocast:
                batch = self._transforms.forward_batch(chunk).to(self.device)
                backbone = self.model.forward_image(batch)
                _, feats, _, sizes = self.model._prepare_backbone_features(backbone)
                if self.model.directly_add_no_mem_embed:
                    feats[-1] = feats[-1] + self.model.no_mem_embed
                # (HW, B, C) sequences → (B, C, H, W) maps, highest resolution first
                maps = [f.permute(1, 2, 0).reshape(len(chunk), -1, *s).float() for f, s in zip(feats, sizes)]
            for i, a in enumerate(chunk):
                per = tuple(m[i : i + 1].clone() for m in maps)
                out.append(ImageEmbedding(a.shape[:2], Sam2Features(per[-1], per[:-1])))
        return out

    # ------------------------------------------------------------------ decoding
    @staticmethod
    def _features(embedding: ImageEmbedding) -> Sam2Features:
        if not isinstance(embedding.data, Sam2Features):
            raise TypeError(f"embedding was not made by a SAM 2 segmenter (data is {type(embedding.data).__name__})")
        return embedding.data

    def _prompt_tensors(
        self, prompts: Sequence[Prompt], size: tuple[int, int]
    ) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor | None]:
        """Prompts of equal structure → (points (G, T, 2), labels (G, T)) in the model frame, masks."""
        H, W = size
        scale = np.array([self.image_size / W, self.image_size / H], dtype=np.float32)
        coords, labels = [], []
        for p in prompts:
            xy = [to_sam_points(p.points)]
            lab = [p.point_labels.astype(np.int32)]
            if p.box is not None:  # the box goes first, as corners labelled 2 and 3 (SAM2ImagePredictor)
                xy.insert(0, to_sam_box(p.box).reshape(2, 2))
                lab.insert(0, np.array([2, 3], np.int32))
            coords.append(np.concatenate(xy) * scale)
            labels.append(np.concatenate(lab))
        points = None
        if coords[0].shape[0]:
            points = (
                torch.from_numpy(np.stack(coords)).to(self.device),
                torch.from_numpy(np.stack(labels)).to(self.device),
            )
        masks = None
        if prompts[0].mask_logits is not None:
            L = 4 * self.model.sam_prompt_encoder.image_embedding_size[0]
            m = torch.from_numpy(np.stack([np.asarray(p.mask_logits) for p in prompts]).astype(np.float32))[:, None]
            masks = F.interpolate(m.to(self.device), (L, L), mode="bilinear", align_corners=False,
                                  antialias=L < max(H, W))
        return points, masks

    def decode(self, embedding: ImageEmbedding, prompts: Sequence[Prompt]) -> Segmentation:
        """Decode all ``prompts`` of one image; see :meth:`decode_batch`."""
        return self.decode_batch([embedding], [prompts])[0]

    def decode_batch(
        self, embeddings: Sequence[ImageEmbedding], prompts: Sequence[Sequence[Prompt]]
    ) -> list[Segmentation]:
        """Decode the prompts of several images, prompts of equal structure in one decoder call.

        Args:
            embeddings: From :meth:`embed` / :meth:`embed_batch` of THIS segmenter, one per image.
            prompts: One list per image (may be empty): boxes (pixel edges), points (``(x, y)`` centres,
                label 1 foreground / 0 background), optional ``mask_logits`` at the original size.

        Returns:
            One :class:`Segmentation` per image: (K_i, H_i, W_i) bool masks at the original size and
            (K_i,) float32 predicted IoU.

        Raises:
            ValueError: If the sequences differ in length or a mask prompt has the wrong size.
            TypeError: If an embedding was not made by a SAM 2 segmenter or a prompt is not a Prompt.
        """
        if len(embeddings) != len(prompts):
            raise ValueError(f"decode_batch got {len(embeddings)} embeddings but {len(prompts)} prompt lists")
        groups: dict[tuple[bool, int, bool], list[tuple[int, int]]] = defaultdict(list)
        for k, (emb, ps) in enumerate(zip(embeddings, prompts)):
            for j, p in enumerate(ps):
                if not isinstance(p, Prompt):
                    raise TypeError(f"prompts[{k}][{j}] must be a Prompt, got {type(p).__name__}")
                if p.mask_logits is not None and p.mask_logits.shape != tuple(emb.original_size):
                    raise ValueError(
                        f"prompts[{k}][{j}].mask_logits has shape {p.mask_logits.shape}, "
                        f"expected the image size {tuple(emb.original_size)}"
                    )
                groups[(p.box is not None, len(p.points), p.mask_logits is not None)].append((k, j))
            if ps:
                self._features(emb)
        masks = [np.zeros((len(ps), *emb.original_size), bool) for emb, ps in zip(embeddings, prompts)]
        scores = [np.zeros(len(ps), np.float32) for ps in prompts]
        step = self.params.decoder_batch
        with torch.inference_mode():
            for members in groups.values():
                for s in range(0, len(members), step):
                    self._decode_group(embeddings, prompts, members[s : s + step], masks, scores)
        return [Segmentation(m, sc) for m, sc in zip(masks, scores)]

    def _decode_group(
        self,
        embeddings: Sequence[ImageEmbedding],
        prompts: Sequence[Sequence[Prompt]],
        members: list[tuple[int, int]],
        masks: list[NDArray[np.bool_]],
        scores: list[NDArray[np.float32]],
    ) -> None:
        """One prompt-encoder + mask-decoder call for prompts of one structure (any images)."""
        enc = self.model.sam_prompt_encoder
        sparse_parts, dense_parts = [], []
        for k in sorted({k for k, _ in members}):  # prompts are encoded in their image's frame
            mine = [prompts[k][j] for kk, j in members if kk == k]
            points, mask_in = self._prompt_tensors(mine, embeddings[k].original_size)
            sp, de = enc(points=points, boxes=None, masks=mask_in)
            sparse_parts.append(sp.expand(len(mine), -1, -1) if sp.shape[0] != len(mine) else sp)
            dense_parts.append(de.expand(len(mine), -1, -1, -1) if de.shape[0] != len(mine) else de)
        order = sorted(members)
        feats = [self._features(embeddings[k]) for k, _ in order]
        low, iou, _, _ = self.model.sam_mask_decoder(
            image_embeddings=torch.cat([f.image_embed for f in feats]),
            image_pe=enc.get_dense_pe(),
            sparse_prompt_embeddings=torch.cat(sparse_parts),
            dense_prompt_embeddings=torch.cat(dense_parts),
            multimask_output=self.params.multimask,
            repeat_image=False,
            high_res_features=[torch.cat(level) for level in zip(*(f.high_res for f in feats))],
        )
        best = iou.argmax(dim=1) if self.params.multimask else torch.zeros(len(order), dtype=torch.long)
        rows = torch.arange(len(order), device=low.device)
        low, iou = low[rows, best.to(low.device)].float(), iou[rows, best.to(low.device)].float()
        iou_host = iou.cpu().numpy()
        for k in sorted({k for k, _ in order}):  # one upsampling and one host copy per image
            at = [r for r, (kk, _) in enumerate(order) if kk == k]
            js = [order[r][1] for r in at]
            up = self._transforms.postprocess_masks(low[at][:, None], embeddings[k].original_size)
            masks[k][js] = (up[:, 0] > self.params.mask_threshold).cpu().numpy()
            scores[k][js] = iou_host[at]
