"""The ``sam`` segmenter: Segment Anything with batched encoding, fast attention and one-call decoding.

Example:
    >>> from samprompt.segmenters import SEGMENTERS
    >>> params = {"model_type": "vit_b", "checkpoint": "sam_vit_b_01ec64.pth"}
    >>> seg = SEGMENTERS.create("sam", params)  # doctest: +SKIP
    >>> emb = seg.embed(image)  # (H, W, 3) uint8, any size  # doctest: +SKIP
    >>> out = seg.decode(emb, [Prompt(box=[10, 20, 200, 180])])  # doctest: +SKIP
    >>> out.masks.shape, out.scores  # (1, H, W) bool, predicted IoU  # doctest: +SKIP

Pipeline per image: ``embed`` (on the device, in torch) resizes the longest side to the encoder size
with separable antialiased bilinear passes rounded to the uint8 grid (matching SAM's PIL path up to
±1 grey level on ~0.1 % of pixels), normalises and pads to a square, and runs the ViT once;
``decode`` encodes all prompts of the image and runs the mask decoder once per batch of equal token
count (see :func:`~samprompt.segmenters.sam_prompts.batch_prompts`), picks the mask with the highest
predicted IoU (``multimask=True``), upsamples the low-res logits to the original size
(``Sam.postprocess_masks``) and thresholds at ``mask_threshold`` (0). ``decode_batch`` does the same for
the prompts of MANY images at once: all prompts with the same token count, whatever their image, go
through one decoder call (up to ``decoder_batch`` prompts), each on its own image's embedding.

Precision: the decoder always runs in fp32. ``precision="bf16"`` runs the image encoder under bf16
autocast (embeddings are stored in fp32); it is allowed on CPU too (slow without AMX; a warning is
logged) so the bf16 numerics can be checked without a GPU.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from pydantic import Field, field_validator

from samprompt._arrays import as_image
from samprompt._torch import resolve_device
from samprompt.component import Component, ComponentParams
from samprompt.errors import ConfigError
from samprompt.prompts.base import Prompt
from samprompt.segmenters import SEGMENTERS
from samprompt.segmenters._sam_fast import enable_fast_attention
from samprompt.segmenters.base import ImageEmbedding, Segmentation, Segmenter
from samprompt.segmenters.medsam import medsam_input
from samprompt.segmenters.sam_models import SAM_ARCHITECTURES, checkpoint_free_builder, load_sam_checkpoint
from samprompt.segmenters.sam_prompts import batch_prompts

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

__all__ = ["SamFeatures", "SamParams", "SamSegmenter"]

log = logging.getLogger(__name__)

#: Upper bound of the automatic encoder batch size, and its value on CPU.
_AUTO_MAX_BATCH, _AUTO_CPU_BATCH = 32, 2
#: Masks are upsampled to the original size this many prompts at a time (bounds GPU memory).
_POSTPROCESS_CHUNK = 16


def _to_host(x: torch.Tensor) -> torch.Tensor:
    """Copy a device tensor to the host (through pinned memory on CUDA: one DMA, then one sync)."""
    if x.device.type != "cuda":
        return x.cpu()
    out = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
    out.copy_(x, non_blocking=True)
    torch.cuda.current_stream(x.device).synchronize()
    return out


@dataclass(frozen=True, eq=False)
class SamFeatures:
    """The payload of a SAM :class:`ImageEmbedding`.

    Attributes:
        features: (1, C, g, g) float32 image embedding on the segmenter's device (C=256, g=64 for ViTs).
        input_size: ``(h, w)`` of the resized image inside the square encoder input (before padding).
    """

    features: torch.Tensor
    input_size: tuple[int, int]


class SamParams(ComponentParams):
    """Parameters of :class:`SamSegmenter`.

    Attributes:
        model_type: Architecture: ``vit_b``, ``vit_l``, ``vit_h`` or a type added with
            :func:`~samprompt.segmenters.sam_models.register_sam_architecture`.
        checkpoint: State-dict file (required, except for test model types registered with seeded
            random weights, such as :mod:`samprompt.testing`'s ``tiny``).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        multimask: Predict 3 masks per prompt and keep the one with the highest predicted IoU;
            ``False`` uses SAM's single-mask output.
        precision: ``"bf16"`` runs the encoder under bf16 autocast; the decoder stays fp32.
        batch_size: Images per encoder call in :meth:`embed_batch`; ``"auto"`` probes free GPU
            memory once (CUDA) or uses 2 (CPU).
        fast_attention: Use fused SDPA attention in the encoder (same weights; see ``_sam_fast``).
        attention_bias: How fast attention applies the relative-position bias: ``"mask"``
            (materialised ``attn_mask``) or ``"fold"`` (folded into q/k; flash-eligible).
        compile: ``torch.compile`` the encoder (default mode; batches are padded to ``batch_size``
            so shapes stay static).
        prompt_batching: ``"exact"`` (one decoder call per distinct token count; equal to
            per-prompt SAM) or ``"pad"`` (always one call; pads with SAM's not-a-point token).
        decoder_batch: Most prompts per mask-decoder call in :meth:`decode_batch` (bounds the
            decoder's memory: about 50 MB per prompt in fp32 at the official sizes).
        preprocessing: ``"sam"`` (resize the longest side, ImageNet mean/std, pad) or ``"medsam"``
            (MedSAM weights: square resize, min-max to [0, 1]; see :mod:`samprompt.segmenters.medsam`).
    """

    model_type: str = "vit_b"
    checkpoint: Path | None = None
    device: str = "auto"
    multimask: bool = True
    precision: Literal["fp32", "bf16"] = "fp32"
    batch_size: int | Literal["auto"] = Field(default="auto")
    fast_attention: bool = True
    attention_bias: Literal["mask", "fold"] = "mask"
    compile: bool = False
    prompt_batching: Literal["exact", "pad"] = "exact"
    decoder_batch: int = Field(default=64, ge=1)
    preprocessing: Literal["sam", "medsam"] = "sam"

    @field_validator("model_type")
    @classmethod
    def _known_model_type(cls, value: str) -> str:
        if value not in SAM_ARCHITECTURES:
            known = ", ".join(repr(k) for k in SAM_ARCHITECTURES)
            raise ValueError(f"unknown SAM model type {value!r}; known: {known}")
        return value


@SEGMENTERS.register("sam")
class SamSegmenter(Segmenter[SamParams]):
    """Segment Anything (ViT-B/L/H) as a samprompt segmenter; parameters in :class:`SamParams`.

    Raises:
        ConfigError: Invalid parameters (e.g. no checkpoint for a ``vit_*`` type, bad device).
        CheckpointError: Checkpoint missing, unreadable with ``weights_only=True``, or not fitting
            ``model_type`` (the message names the file and model type).
    """

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        if isinstance(p.batch_size, int) and p.batch_size < 1:
            raise ConfigError(f"{self.name}.params.batch_size: must be >= 1 or 'auto', got {p.batch_size}")
        if p.checkpoint is None:
            build = checkpoint_free_builder(p.model_type)
            if build is None:
                raise ConfigError(f"{self.name}.params.checkpoint: required for model_type={p.model_type!r}")
            log.info("sam: model_type=%r without checkpoint: seeded random weights", p.model_type)
            model = build()
        else:
            model = load_sam_checkpoint(p.checkpoint, p.model_type)
        self._setup(model)

    @classmethod
    def from_model(cls, model: Sam, **params: Any) -> SamSegmenter:
        """Wrap an already built ``segment_anything`` SAM (e.g. random weights for benchmarks).

        The model is deep-copied when fast attention is requested, so ``model`` itself keeps the stock
        attention. ``params.checkpoint`` is only recorded (nothing is loaded); ``params.model_type``
        should describe ``model``.
        """
        self = cls.__new__(cls)
        Component.__init__(self, **params)
        self._setup(copy.deepcopy(model) if self.params.fast_attention else model)
        return self

    # ------------------------------------------------------------------ setup
    def _setup(self, model: Sam) -> None:
        p = self.params
        self.device = resolve_device(p.device, "sam.params.device")
        self.model: Sam = model.to(self.device).eval().requires_grad_(False)
        if p.fast_attention:
            enable_fast_attention(self.model.image_encoder, p.attention_bias)
        if p.precision == "bf16" and self.device.type == "cpu":
            log.warning(
                "sam: precision='bf16' on CPU runs the encoder under CPU bf16 autocast (often slower)"
            )
        self.image_size: int = int(self.model.image_encoder.img_size)
        self._encoder: Callable[[torch.Tensor], torch.Tensor] = self.model.image_encoder
        if p.compile:
            self._encoder = torch.compile(self.model.image_encoder, dynamic=False)
        self._batch: int | None = p.batch_size if isinstance(p.batch_size, int) else None
        with torch.inference_mode():
            self._dense_pe = self.model.prompt_encoder.get_dense_pe()

    @property
    def encoder_batch_size(self) -> int | None:
        """Images per encoder call (``None`` until ``batch_size="auto"`` has been resolved)."""
        return self._batch

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.params.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    # ------------------------------------------------------------------ embedding
    def _preprocess(self, image: NDArray[np.uint8]) -> tuple[torch.Tensor, tuple[int, int]]:
        """(H, W, 3) uint8 → ((3, S, S) normalised, padded float32 on the device, resized (h, w))."""
        if self.params.preprocessing == "medsam":  # the whole square, no padding: input size (S, S)
            return medsam_input(image, self.image_size, self.device), (self.image_size, self.image_size)
        H, W = image.shape[:2]
        scale = self.image_size / max(H, W)
        h, w = int(H * scale + 0.5), int(W * scale + 0.5)  # ResizeLongestSide.get_preprocess_shape
        # A read-only array (np.asarray of a PIL image) is copied: torch.from_numpy needs a writable one.
        host = torch.from_numpy(image if image.flags.writeable else image.copy())
        x = host.to(self.device).permute(2, 0, 1)[None].float()
        # Like SAM's reference path (PIL bilinear on uint8): horizontal pass, round, vertical pass, round.
        for size in ((H, w), (h, w)):
            if tuple(x.shape[-2:]) != size:
                x = F.interpolate(x, size, mode="bilinear", align_corners=False, antialias=True)
                x = x.round_().clamp_(0, 255)
        x = (x - self.model.pixel_mean) / self.model.pixel_std
        x = F.pad(x, (0, self.image_size - w, 0, self.image_size - h))
        return x[0], (h, w)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) → (B, C, g, g) float32 embeddings (padding the batch when compiled)."""
        n = x.shape[0]
        if self.params.compile and self._batch is not None and n < self._batch:
            x = torch.cat([x, x.new_zeros((self._batch - n, *x.shape[1:]))])
        with torch.inference_mode(), self._autocast():
            return self._encoder(x)[:n].float()

    def _auto_batch_size(self, sample: torch.Tensor) -> int:
        """Pick the encoder batch size from the memory one image takes (CUDA) or a constant (CPU)."""
        if self.device.type != "cuda":
            return _AUTO_CPU_BATCH
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        base = torch.cuda.memory_allocated(self.device)
        with torch.inference_mode(), self._autocast():
            self.model.image_encoder(sample[None])  # eager probe (never the compiled graph)
        per_image = max(torch.cuda.max_memory_allocated(self.device) - base, 1)
        free, _ = torch.cuda.mem_get_info(self.device)
        size = int(max(1, min(_AUTO_MAX_BATCH, 0.7 * free // per_image)))
        log.info(
            "sam: auto batch size %d (%.2f GiB per image, %.1f GiB free)",
            size,
            per_image / 2**30,
            free / 2**30,
        )
        return size

    def embed(self, image: NDArray[np.uint8]) -> ImageEmbedding:
        """Embed one image; see :meth:`embed_batch`."""
        return self.embed_batch([image])[0]

    def embed_batch(self, images: Sequence[NDArray[np.uint8]]) -> list[ImageEmbedding]:
        """Embed images of any sizes, ``batch_size`` per encoder call.

        Args:
            images: (H, W) or (H, W, 3) uint8 RGB images at their original sizes.

        Returns:
            One :class:`ImageEmbedding` per image (``data`` is a :class:`SamFeatures`), in order.
        """
        arrays = [as_image(im) for im in images]
        out: list[ImageEmbedding] = []
        start = 0
        while start < len(arrays):
            if self._batch is None:
                self._batch = self._auto_batch_size(self._preprocess(arrays[start])[0])
            chunk = arrays[start : start + self._batch]
            prepared = [self._preprocess(a) for a in chunk]
            try:
                feats = self._encode(torch.stack([x for x, _ in prepared]))
            except torch.cuda.OutOfMemoryError:
                if self._batch <= 1:
                    raise
                self._batch = max(1, self._batch // 2)
                log.warning("sam: CUDA out of memory; encoder batch size lowered to %d", self._batch)
                torch.cuda.empty_cache()
                continue
            for i, (a, (_, size)) in enumerate(zip(chunk, prepared)):
                out.append(ImageEmbedding(a.shape[:2], SamFeatures(feats[i : i + 1].clone(), size)))
            start += len(chunk)
        return out

    # ------------------------------------------------------------------ decoding
    def _features(self, embedding: ImageEmbedding) -> SamFeatures:
        data = embedding.data
        if not isinstance(data, SamFeatures):
            raise TypeError(f"embedding was not made by a SAM segmenter (data is {type(data).__name__})")
        return data

    def decode_low_res(
        self, embedding: ImageEmbedding, prompts: Sequence[Prompt]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode prompts to SAM's low-resolution logits.

        Args:
            embedding: From :meth:`embed` / :meth:`embed_batch`.
            prompts: K prompts in original-image pixels.

        Returns:
            ``(logits, scores)``: (K, L, L) float32 logits of the chosen mask per prompt on the padded
            square grid (L = 256 for official models; the image occupies the top-left
            ``input_size * L / image_size``), and (K,) float32 predicted IoU, both on the device.
        """
        return self._low_res_many([embedding], [prompts])[0]

    def _low_res_many(
        self, embeddings: Sequence[ImageEmbedding], prompt_lists: Sequence[Sequence[Prompt]]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`decode_low_res` of several images, with one decoder call per token count (and chunk)."""
        L = 4 * self.model.prompt_encoder.image_embedding_size[0]
        out = [
            (torch.empty((len(ps), L, L), device=self.device), torch.empty((len(ps),), device=self.device))
            for ps in prompt_lists
        ]
        # token count -> [(image index, batch of that image's prompts)]
        groups: dict[int, list[tuple[int, Any]]] = {}
        with torch.inference_mode():
            for i, (emb, ps) in enumerate(zip(embeddings, prompt_lists)):
                if not ps:
                    continue
                data = self._features(emb)
                for b in batch_prompts(
                    self.model.prompt_encoder, ps, emb.original_size, data.input_size, self.image_size,
                    self.params.prompt_batching,
                ):
                    groups.setdefault(int(b.sparse.shape[1]), []).append((i, b))
            for items in groups.values():
                images = sorted({i for i, _ in items})
                feats = torch.cat([self._features(embeddings[i]).features for i in images])  # (n, C, h, w)
                slot = {i: k for k, i in enumerate(images)}
                row_image = torch.tensor([slot[i] for i, b in items for _ in b.indices], device=self.device)
                sparse = torch.cat([b.sparse for _, b in items])
                # dense embeddings stay per batch (SAM's "no mask" one is an expanded view): each decoder
                # call materialises only its own rows
                low, iou = self._decode_rows(feats, row_image, sparse, [b.dense for _, b in items])
                start = 0
                for i, b in items:
                    n = len(b.indices)
                    idx = torch.as_tensor(b.indices, device=self.device)
                    out[i][0][idx] = low[start : start + n]
                    out[i][1][idx] = iou[start : start + n]
                    start += n
        return out

    def _decode_rows(
        self, feats: torch.Tensor, row_image: torch.Tensor, sparse: torch.Tensor, dense: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask-decoder calls for G prompts, each on its OWN image, ``decoder_batch`` prompts per call.

        SAM's decoder repeats ONE image embedding for all prompts of a call and adds the dense prompt
        embedding to it. Handing it a zero (1, C, 1, 1) "image" and ``feats[row_image] + dense`` as the
        dense embedding gives exactly the same sum (adding zero is exact) with a different image per row.

        Args:
            feats: (n, C, h, w) embeddings of the images involved.
            row_image: (G,) which of them each prompt belongs to.
            sparse: (G, T, C) sparse prompt embeddings.
            dense: Dense prompt embeddings, (G_j, C, h, w) parts that stack to G rows.

        Returns:
            (G, L, L) float32 logits of the chosen mask and (G,) predicted IoU.
        """
        zero = feats.new_zeros((1, feats.shape[1], 1, 1))
        ends = np.cumsum([d.shape[0] for d in dense])
        lows, ious = [], []
        G, step = sparse.shape[0], self.params.decoder_batch
        for s in range(0, G, step):
            rows = slice(s, min(G, s + step))
            parts = [d[max(0, rows.start - (e - d.shape[0])) : rows.stop - (e - d.shape[0])]
                     for d, e in zip(dense, ends) if e > rows.start and e - d.shape[0] < rows.stop]
            low, iou = self.model.mask_decoder(
                image_embeddings=zero,
                image_pe=self._dense_pe,
                sparse_prompt_embeddings=sparse[rows],
                dense_prompt_embeddings=feats[row_image[rows]] + torch.cat(parts),
                multimask_output=self.params.multimask,
            )
            best = iou.argmax(dim=1) if self.params.multimask else torch.zeros_like(iou[:, 0], dtype=torch.long)
            r = torch.arange(low.shape[0], device=low.device)
            lows.append(low[r, best].float())
            ious.append(iou[r, best].float())
        return torch.cat(lows), torch.cat(ious)

    @staticmethod
    def _check_prompts(embedding: ImageEmbedding, prompts: Sequence[Prompt], where: str = "prompts") -> None:
        for i, p in enumerate(prompts):
            if not isinstance(p, Prompt):
                raise TypeError(f"{where}[{i}] must be a Prompt, got {type(p).__name__}")
            if p.mask_logits is not None and p.mask_logits.shape != tuple(embedding.original_size):
                raise ValueError(
                    f"{where}[{i}].mask_logits has shape {p.mask_logits.shape}, "
                    f"expected the image size {tuple(embedding.original_size)}"
                )

    def decode(self, embedding: ImageEmbedding, prompts: Sequence[Prompt]) -> Segmentation:
        """Decode all ``prompts`` of one image (one decoder call per token-count batch).

        Args:
            embedding: From :meth:`embed` / :meth:`embed_batch` of THIS segmenter.
            prompts: K prompts in original-image pixels (box edges, point centres, optional
                ``mask_logits`` at the original size).

        Returns:
            (K, H, W) bool masks at the original size and (K,) float32 predicted IoU of each mask.

        Raises:
            TypeError: If ``embedding`` was not made by a SAM segmenter.
        """
        return self.decode_batch([embedding], [prompts])[0]

    def decode_batch(
        self, embeddings: Sequence[ImageEmbedding], prompts: Sequence[Sequence[Prompt]]
    ) -> list[Segmentation]:
        """Decode the prompts of several images, all prompts of equal token count in one decoder call.

        Each mask is the one :meth:`decode` gives for its image alone (to float rounding: the decoder
        runs on a larger batch; ``tests/segmenters`` checks logits and masks).

        Args:
            embeddings: From :meth:`embed` / :meth:`embed_batch` of THIS segmenter, one per image.
            prompts: One list per image (may be empty), original-image pixels.

        Returns:
            One :class:`Segmentation` per image: (K_i, H_i, W_i) bool masks at the original size and
            (K_i,) float32 predicted IoU.

        Raises:
            ValueError: If the sequences differ in length or a mask prompt has the wrong size.
            TypeError: If an embedding was not made by a SAM segmenter or a prompt is not a Prompt.
        """
        if len(embeddings) != len(prompts):
            raise ValueError(f"decode_batch got {len(embeddings)} embeddings but {len(prompts)} prompt lists")
        for k, (emb, ps) in enumerate(zip(embeddings, prompts)):
            self._check_prompts(emb, ps, "prompts" if len(prompts) == 1 else f"prompts[{k}]")
            if ps:
                self._features(emb)
        low_res = self._low_res_many(embeddings, prompts)
        # Masks are thresholded on the device and copied to the host in ONE transfer for the whole batch
        # (one synchronisation instead of one per image and chunk).
        flat: list[torch.Tensor] = []
        with torch.inference_mode():
            for emb, ps, (logits, scores) in zip(embeddings, prompts, low_res):
                if not ps:
                    continue
                data = self._features(emb)
                for s in range(0, len(ps), _POSTPROCESS_CHUNK):
                    up = self.model.postprocess_masks(
                        logits[s : s + _POSTPROCESS_CHUNK, None], data.input_size, emb.original_size
                    )
                    flat.append((up[:, 0] > self.model.mask_threshold).reshape(-1).view(torch.uint8))
                flat.append(scores.float().view(torch.uint8))  # the scores travel in the same buffer
            host = _to_host(torch.cat(flat)).numpy() if flat else np.zeros(0, np.uint8)
        results, at = [], 0
        for emb, ps in zip(embeddings, prompts):
            if not ps:
                results.append(self.empty(emb))
                continue
            H, W = emb.original_size
            n = len(ps) * H * W
            masks = host[at : at + n].view(bool).reshape(len(ps), H, W)
            image_scores = host[at + n : at + n + 4 * len(ps)].view(np.float32).copy()
            results.append(Segmentation(masks, image_scores))
            at += n + 4 * len(ps)
        return results
