"""Turning :class:`~samprompt.prompts.base.Prompt` objects into SAM decoder inputs.

Coordinate conventions (the only place where samprompt's geometry meets SAM's):

* samprompt points are continuous ``(x, y)`` with pixel ``(col, row)`` centred at ``(col + .5, row + .5)``;
  SAM's predictor takes pixel *indices* (it adds 0.5 itself). :func:`to_sam_points` subtracts 0.5.
* samprompt boxes are pixel EDGES ``(x0, y0, x1, y1)`` (one pixel at x=3 → ``x0=3, x1=4``); SAM's own
  ``batched_mask_to_box`` gives INCLUSIVE pixel indices (``x0=3, x1=3``). :func:`to_sam_box` converts.
* Both are then scaled exactly as ``ResizeLongestSide.apply_coords`` does (per-axis factor
  ``input_size / original_size``), so a prompt decodes exactly like ``SamPredictor.predict`` given the
  converted values — the equivalence tests rely on it.
* ``mask_logits`` (H, W) at the original size go through the image's own geometry: bilinear resize to the
  resized-image size, padding to the square encoder input (with a background logit, see
  :func:`mask_logits_to_low_res`), then area-downsampling to the decoder's low-res grid (256 x 256 for
  the official models). This is the inverse of ``Sam.postprocess_masks``.

Prompts of one image are decoded in batches of equal sparse-token count (see :func:`batch_prompts`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn

from samprompt.prompts.base import Prompt

__all__ = [
    "PromptBatch",
    "batch_prompts",
    "mask_logits_to_low_res",
    "scale_coords",
    "to_sam_box",
    "to_sam_points",
]

#: Padding logit for the area outside the image is ``min(min(logits), MASK_PAD_LOGIT)``: background.
MASK_PAD_LOGIT = -1.0


def to_sam_points(points: NDArray[np.float32]) -> NDArray[np.float32]:
    """(N, 2) continuous ``x, y`` → (N, 2) SAM pixel-index coordinates (``- 0.5``), original frame."""
    return (np.asarray(points, dtype=np.float32) - 0.5).reshape(-1, 2)


def to_sam_box(box: NDArray[np.float32]) -> NDArray[np.float32]:
    """(4,) pixel-edge box → (4,) SAM inclusive pixel-index box ``x0, y0, x1 - 1, y1 - 1`` (not inverted)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return np.array([x0, y0, max(x1 - 1.0, x0), max(y1 - 1.0, y0)], dtype=np.float32)


def scale_coords(
    xy: NDArray[np.float32], original_size: tuple[int, int], input_size: tuple[int, int]
) -> NDArray[np.float32]:
    """Scale (..., 2) ``x, y`` from the original image to the resized encoder input (as SAM does).

    Args:
        xy: Coordinates in original-image pixels, last axis ``x, y``.
        original_size: ``(H, W)`` of the original image.
        input_size: ``(h, w)`` of the resized image (before padding).
    """
    out = np.array(xy, dtype=np.float32, copy=True)
    out[..., 0] *= input_size[1] / original_size[1]
    out[..., 1] *= input_size[0] / original_size[0]
    return out


def mask_logits_to_low_res(
    logits: Sequence[NDArray[np.float32]],
    input_size: tuple[int, int],
    image_size: int,
    low_res_size: int,
    device: torch.device,
) -> torch.Tensor:
    """Resize dense prompts from the original image grid to SAM's low-res mask input.

    Args:
        logits: M maps, each (H, W) float32 at the ORIGINAL image size (positive = foreground).
        input_size: ``(h, w)`` of the resized image inside the ``image_size`` square.
        image_size: Side of the padded encoder input (1024 for the official models).
        low_res_size: Side of the decoder's mask input (256 for the official models).
        device: Where to compute.

    Returns:
        (M, 1, low_res_size, low_res_size) float32: the content occupies the top-left
        ``input_size * low_res_size / image_size`` and the rest is background padding
        (``min(min(logits), MASK_PAD_LOGIT)`` per map).
    """
    h, w = input_size
    stack = torch.from_numpy(np.stack([np.asarray(m, dtype=np.float32) for m in logits]))[:, None].to(device)
    stack = torch.nan_to_num(stack, nan=0.0, posinf=1e4, neginf=-1e4)
    down = stack.shape[-2] > h or stack.shape[-1] > w
    x = F.interpolate(stack, (h, w), mode="bilinear", align_corners=False, antialias=down)
    pad = torch.clamp(x.amin(dim=(1, 2, 3)), max=MASK_PAD_LOGIT)
    square = pad[:, None, None, None].expand(-1, 1, image_size, image_size).clone()
    square[:, :, :h, :w] = x
    return F.interpolate(square, (low_res_size, low_res_size), mode="area")


@dataclass
class PromptBatch:
    """Prompts of one image that go through ONE mask-decoder call.

    Attributes:
        indices: Positions of these prompts in the caller's prompt list.
        sparse: (G, T, C) sparse prompt embeddings (points, box corners, padding tokens).
        dense: (G, C, h, w) dense embeddings (mask prompt or SAM's "no mask" embedding).
    """

    indices: list[int]
    sparse: torch.Tensor
    dense: torch.Tensor


def batch_prompts(
    prompt_encoder: nn.Module,
    prompts: Sequence[Prompt],
    original_size: tuple[int, int],
    input_size: tuple[int, int],
    image_size: int,
    mode: Literal["exact", "pad"] = "exact",
) -> list[PromptBatch]:
    """Encode all prompts of one image and group them into mask-decoder batches.

    SAM's sparse tokens per prompt are: its points, one "not a point" padding token when there are
    points but no box (SAM's own convention), and two box-corner tokens. The decoder needs the same
    token count T across a batch, so:

    * ``"exact"``: one batch per distinct T (prompts from one strategy share T: ONE call). Each mask is
      exactly what ``SamPredictor.predict`` gives for that prompt alone.
    * ``"pad"``: always ONE batch; shorter prompts get extra "not a point" tokens (label -1 at (0, 0),
      the token SAM itself pads with). Cheaper for mixed sets, but padded prompts' masks may differ
      slightly from the unpadded ones.

    Args:
        prompt_encoder: The model's ``PromptEncoder``.
        prompts: K prompts in original-image pixels.
        original_size: ``(H, W)`` of the image.
        input_size: ``(h, w)`` of the resized image inside the square encoder input.
        image_size: Side of the square encoder input.
        mode: ``"exact"`` or ``"pad"``.

    Returns:
        Batches covering every prompt index exactly once.
    """
    encoder: Any = prompt_encoder  # segment_anything's PromptEncoder (untyped)
    weight: torch.Tensor = encoder.no_mask_embed.weight
    device, dim = weight.device, weight.shape[1]
    gh, gw = encoder.image_embedding_size
    sparse: list[torch.Tensor] = [weight.new_zeros((0, dim))] * len(prompts)
    by_structure: dict[tuple[bool, int], list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        by_structure[(p.box is not None, int(p.points.shape[0]))].append(i)
    for (has_box, n), idx in by_structure.items():
        if not has_box and n == 0:
            continue  # mask-only prompts: no sparse tokens
        points = boxes = None
        if n:
            xy = np.stack(
                [scale_coords(to_sam_points(prompts[i].points), original_size, input_size) for i in idx]
            )
            labels = np.stack([prompts[i].point_labels for i in idx])
            points = (torch.from_numpy(xy).to(device), torch.from_numpy(labels).to(device, torch.int))
        if has_box:
            bx = np.stack(
                [
                    scale_coords(to_sam_box(box).reshape(2, 2), original_size, input_size)
                    for i in idx
                    if (box := prompts[i].box) is not None  # all of them: this group has boxes
                ]
            ).reshape(-1, 4)
            boxes = torch.from_numpy(bx).to(device)
        emb, _ = encoder(points=points, boxes=boxes, masks=None)
        for j, i in enumerate(idx):
            sparse[i] = emb[j]

    no_mask = weight.reshape(1, -1, 1, 1).expand(1, -1, gh, gw)
    masked = [i for i, p in enumerate(prompts) if p.mask_logits is not None]
    dense_of: dict[int, torch.Tensor] = {}
    if masked:
        low = mask_logits_to_low_res(
            [logits for i in masked if (logits := prompts[i].mask_logits) is not None],
            input_size,
            image_size,
            4 * gh,
            device,
        )
        emb = encoder.mask_downscaling(low)
        dense_of = {i: emb[j : j + 1] for j, i in enumerate(masked)}

    if mode == "pad":
        t_max = max(s.shape[0] for s in sparse)
        pad_token = encoder.not_a_point_embed.weight  # (1, C)
        sparse = [torch.cat([s, pad_token.expand(t_max - s.shape[0], -1)]) for s in sparse]
    by_tokens: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(sparse):
        by_tokens[s.shape[0]].append(i)
    batches = []
    for _, idx in sorted(by_tokens.items()):
        if any(i in dense_of for i in idx):
            dense = torch.cat([dense_of.get(i, no_mask) for i in idx])
        else:
            dense = no_mask.expand(len(idx), -1, -1, -1)
        batches.append(PromptBatch(idx, torch.stack([sparse[i] for i in idx]), dense))
    return batches
