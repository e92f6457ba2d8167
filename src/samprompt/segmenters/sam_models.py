"""SAM model types: builders that differ only in a few numbers, and safe checkpoint loading.

Every model type (``vit_b``, ``vit_l``, ``vit_h``) is a
:class:`SamArchitecture`: a frozen set of numbers fed to ONE builder, :func:`build_sam_model`, which
assembles the real ``segment_anything`` modules (``ImageEncoderViT``, ``PromptEncoder``, ``MaskDecoder``,
``TwoWayTransformer``). The ViT numbers mirror ``segment_anything/build_sam.py``, so official checkpoints
load with identical state-dict keys and shapes. :func:`load_sam_checkpoint` reads a state dict with
:func:`samprompt._torch.safe_load` (``torch.load(..., weights_only=True)``) and turns every failure into a
:class:`~samprompt.errors.CheckpointError` naming the file and model type.

Plugin authors may add a type with :func:`register_sam_architecture` and build it with
:func:`build_sam_model`; the ``sam`` segmenter's ``model_type`` parameter accepts every registered name.
The test-sized ``tiny`` type is not built in: :mod:`samprompt.testing` registers it (with a builder of
seeded random weights, used when no checkpoint is given) when it is imported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from samprompt._torch import safe_load
from samprompt.errors import CheckpointError, RegistryError

if TYPE_CHECKING:  # segment_anything is imported lazily: building a model is the only use
    from segment_anything.modeling import Sam

__all__ = [
    "SAM_ARCHITECTURES",
    "SamArchitecture",
    "build_sam_model",
    "checkpoint_free_builder",
    "guess_model_type",
    "load_sam_checkpoint",
    "register_sam_architecture",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamArchitecture:
    """The numbers that distinguish one SAM model type from another.

    Attributes:
        encoder_embed_dim: ViT width.
        encoder_depth: Number of ViT blocks.
        encoder_num_heads: Attention heads per block (head dim = width / heads).
        encoder_global_attn_indexes: Blocks with global attention; the others use windows.
        image_size: Side of the square encoder input (longest image side is resized to it).
        patch_size: ViT patch size; the embedding is ``image_size / patch_size`` on a side.
        window_size: Side of the attention windows, in patches.
        prompt_embed_dim: Channels of the image embedding and of the prompt/mask decoder.
        mask_in_chans: Hidden channels of the dense (mask) prompt encoder; divisible by 4.
        decoder_depth: Two-way transformer depth of the mask decoder.
        decoder_mlp_dim: MLP width inside the two-way transformer.
        decoder_num_heads: Decoder attention heads (``prompt_embed_dim / 2`` must divide by it).
        iou_head_hidden_dim: Width of the IoU prediction head.
        pixel_mean: Per-channel mean on the 0..255 scale.
        pixel_std: Per-channel standard deviation on the 0..255 scale.
    """

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    pixel_mean: tuple[float, float, float] = field(default=(123.675, 116.28, 103.53))
    pixel_std: tuple[float, float, float] = field(default=(58.395, 57.12, 57.375))

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}"
            )
        if self.encoder_embed_dim % self.encoder_num_heads:
            raise ValueError("encoder_embed_dim must be divisible by encoder_num_heads")
        if self.prompt_embed_dim % 8 or (self.prompt_embed_dim // 2) % self.decoder_num_heads:
            raise ValueError(
                "prompt_embed_dim must be a multiple of 8 and prompt_embed_dim/2 of decoder_num_heads"
            )
        if self.mask_in_chans % 4:
            raise ValueError("mask_in_chans must be divisible by 4")

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding grid (64 for the official models)."""
        return self.image_size // self.patch_size

    @property
    def low_res_size(self) -> int:
        """Side of the decoder's low-resolution mask logits and mask input (256 for official models)."""
        return 4 * self.embedding_size


#: Model type name → architecture. The ``vit_*`` numbers mirror ``segment_anything.build_sam``.
SAM_ARCHITECTURES: dict[str, SamArchitecture] = {
    "vit_b": SamArchitecture(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamArchitecture(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamArchitecture(1280, 32, 16, (7, 15, 23, 31)),
}

#: Model types that may be built without a checkpoint (test models): name → builder of a model with
#: seeded random weights. Filled by :func:`register_sam_architecture`'s ``random_weights``.
_RANDOM_WEIGHTS: dict[str, Callable[[], Sam]] = {}


def register_sam_architecture(
    name: str,
    arch: SamArchitecture,
    *,
    override: bool = False,
    random_weights: Callable[[], Sam] | None = None,
) -> None:
    """Add a model type usable by :func:`build_sam_model`, :func:`load_sam_checkpoint` and the ``sam``
    segmenter's ``model_type``.

    Args:
        name: The model type's name.
        arch: Its numbers.
        override: Replace an existing, different architecture of that name.
        random_weights: For test models only: builds the model with seeded random weights; the ``sam``
            segmenter then accepts the type without a checkpoint (:func:`checkpoint_free_builder`).

    Raises:
        RegistryError: If ``name`` is taken and ``override`` is false.
    """
    if name in SAM_ARCHITECTURES and SAM_ARCHITECTURES[name] != arch and not override:
        raise RegistryError(
            f"SAM model type {name!r} is already registered; pass override=True to replace it"
        )
    SAM_ARCHITECTURES[name] = arch
    if random_weights is not None:
        _RANDOM_WEIGHTS[name] = random_weights


def checkpoint_free_builder(model_type: str) -> Callable[[], Sam] | None:
    """The seeded random-weight builder registered for ``model_type`` (test models), else ``None``."""
    return _RANDOM_WEIGHTS.get(model_type)


def _architecture(model_type: str | SamArchitecture) -> SamArchitecture:
    if isinstance(model_type, SamArchitecture):
        return model_type
    try:
        return SAM_ARCHITECTURES[model_type]
    except KeyError:
        known = ", ".join(repr(k) for k in SAM_ARCHITECTURES)
        raise RegistryError(f"unknown SAM model type {model_type!r}; known: {known}") from None


def build_sam_model(model_type: str | SamArchitecture) -> Sam:
    """Build a SAM with freshly initialised weights (the modules' own init) in eval mode, on CPU.

    Builds on the current default device, so ``with torch.device("meta"): build_sam_model("vit_h")``
    gives shapes without allocating memory.

    Args:
        model_type: A name in :data:`SAM_ARCHITECTURES` or an architecture.

    Raises:
        RegistryError: If the name is unknown.
    """
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    a = _architecture(model_type)
    grid = a.embedding_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=a.encoder_depth,
            embed_dim=a.encoder_embed_dim,
            img_size=a.image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=a.encoder_num_heads,
            patch_size=a.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=a.encoder_global_attn_indexes,
            window_size=a.window_size,
            out_chans=a.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=a.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(a.image_size, a.image_size),
            mask_in_chans=a.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=a.decoder_depth,
                embedding_dim=a.prompt_embed_dim,
                mlp_dim=a.decoder_mlp_dim,
                num_heads=a.decoder_num_heads,
            ),
            transformer_dim=a.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=a.iou_head_hidden_dim,
        ),
        pixel_mean=list(a.pixel_mean),
        pixel_std=list(a.pixel_std),
    )
    return sam.eval()


def guess_model_type(state_dict: dict[str, Any]) -> str | None:
    """Return the registered model type whose encoder width and depth match ``state_dict``, or ``None``."""
    w = state_dict.get("image_encoder.patch_embed.proj.weight")
    if not isinstance(w, torch.Tensor) or w.ndim != 4:
        return None
    depth = 1 + max(
        (int(k.split(".")[2]) for k in state_dict if k.startswith("image_encoder.blocks.")), default=-1
    )
    for name, arch in SAM_ARCHITECTURES.items():
        if arch.encoder_embed_dim == w.shape[0] and arch.encoder_depth == depth:
            return name
    return None


def _read_state_dict(path: Path, model_type: str) -> dict[str, torch.Tensor]:
    where = f"SAM checkpoint {str(path)!r} (model_type={model_type!r})"
    if not path.is_file():
        raise CheckpointError(f"{where} does not exist or is not a file")
    obj = safe_load(path, f"SAM checkpoint (model_type={model_type!r})",
                    "as the segment_anything checkpoints are")
    if isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in ("model", "state_dict"):
        obj = next(iter(obj.values()))
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise CheckpointError(f"{where} is not a state dict (a non-empty mapping of names to tensors)")
    return obj


def load_sam_checkpoint(path: str | Path, model_type: str) -> Sam:
    """Build ``model_type`` and load the state dict at ``path`` into it (strictly, on CPU, eval mode).

    The model is built on the meta device and the checkpoint's tensors are assigned to it, so no time
    is spent initialising weights that are overwritten anyway.

    Args:
        path: A ``.pth`` file holding a SAM state dict (as published by Meta, or written by
            :func:`samprompt.testing.save_tiny_sam_checkpoint`, whose ``tiny`` type that module registers).
        model_type: A name in :data:`SAM_ARCHITECTURES`.

    Raises:
        CheckpointError: Naming the file and model type, when the file is missing, unreadable with
            ``weights_only=True``, not a state dict, or does not fit the architecture (missing or
            unexpected keys, shape mismatch; the message then guesses the right model type).
        RegistryError: If ``model_type`` is unknown.
    """
    path = Path(path)
    state = _read_state_dict(path, model_type)
    arch = _architecture(model_type)
    with torch.device("meta"):  # no random init of 90-630 M parameters: the checkpoint replaces them
        model = build_sam_model(arch)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        guess = guess_model_type(state)
        hint = f" It looks like a {guess!r} checkpoint." if guess and guess != model_type else ""
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:4])
        raise CheckpointError(
            f"SAM checkpoint {str(path)!r} does not fit model_type={model_type!r}.{hint} {detail}"
        ) from exc
    for name, value in (("pixel_mean", arch.pixel_mean), ("pixel_std", arch.pixel_std)):
        if getattr(model, name).is_meta:  # non-persistent buffers are not in the state dict
            model.register_buffer(name, torch.tensor(value, dtype=torch.float32).view(-1, 1, 1), False)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise CheckpointError(f"SAM checkpoint {str(path)!r} (model_type={model_type!r}) leaves {left} unset")
    log.info("loaded SAM %s weights from %s", model_type, path)
    return model.eval()
