"""Fast attention for SAM's ViT image encoder: fused SDPA kernels instead of a materialised softmax.

The stock ``segment_anything`` attention computes ``softmax(q k^T * scale + B) v`` with explicit
(L, L) matrices, where ``B`` is the *decomposed* relative-position bias of MViTv2::

    B[(qy, qx), (ky, kx)] = <q[(qy, qx)], Rh[qy, ky]> + <q[(qy, qx)], Rw[qx, kx]>

(``q`` unscaled, ``Rh``/``Rw`` gathered from the learnt ``rel_pos_h``/``rel_pos_w`` tables). This module
offers :class:`SdpaAttention`, a drop-in replacement that SHARES the original module's parameters (the
state dict is unchanged) and calls :func:`torch.nn.functional.scaled_dot_product_attention` in one of
two ways:

``"mask"``
    ``B`` is materialised as the additive ``attn_mask`` (B x heads x L x L). Simple; the fused kernel
    that accepts a bias is memory-bandwidth bound on the bias.
``"fold"``
    ``B`` is folded INTO the dot product, so no (L, L) tensor exists and the flash kernel is eligible::

        q' = [q * scale, rel_h(q), rel_w(q)]      (head_dim + Hk + Wk, zero-padded to a multiple of 8)
        k' = [k, onehot(ky), onehot(kx)]
        q' . k' = scale * q . k + rel_h[q, ky] + rel_w[q, kx]

    and ``sdpa(q', k', v', scale=1)`` with ``v`` zero-padded to the same width (flash needs equal
    widths). It costs extra attention FLOPs (global blocks of ViT-L: head dim 64 → 192) but reads no bias.

Both are mathematically identical to the reference; in fp32 they agree to float rounding (tested on
CPU). FlexAttention (``score_mod``) would express the bias directly, but it needs ``torch.compile`` and
could not be validated on a GPU here, so it is not offered.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BiasMode", "SdpaAttention", "disable_fast_attention", "enable_fast_attention", "rel_pos_table"]

log = logging.getLogger(__name__)

BiasMode = Literal["mask", "fold"]


def rel_pos_table(size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Gather the relative-position embeddings for ``size`` query and key positions along one axis.

    Same values as ``segment_anything.modeling.image_encoder.get_rel_pos(size, size, rel_pos)`` (linear
    interpolation when the table has another length), built on ``rel_pos``'s device without a host sync.

    Args:
        size: Number of positions along the axis (query size = key size in SAM's encoder).
        rel_pos: (L, C) learnt table, ``L = 2 * size - 1`` normally.

    Returns:
        (size, size, C): entry ``[i, j]`` is the embedding of offset ``i - j``.
    """
    n = 2 * size - 1
    if rel_pos.shape[0] != n:
        rel_pos = F.interpolate(rel_pos.T[None], size=n, mode="linear")[0].T
    idx = torch.arange(size, device=rel_pos.device)
    return rel_pos[idx[:, None] - idx[None, :] + (size - 1)]


class SdpaAttention(nn.Module):
    """SDPA replacement for ``segment_anything``'s ``Attention``, sharing its parameters.

    Args:
        reference: The stock attention module (its ``qkv``, ``proj``, ``rel_pos_h``, ``rel_pos_w`` are
            reused, not copied, so state-dict keys and values stay identical).
        bias_mode: ``"mask"`` or ``"fold"`` (see the module docstring).

    Input/output: (B, H, W, C) tokens (a window or the full grid), like the stock module.
    """

    def __init__(self, reference: nn.Module, bias_mode: BiasMode = "mask") -> None:
        super().__init__()
        if bias_mode not in ("mask", "fold"):
            raise ValueError(f"bias_mode must be 'mask' or 'fold', got {bias_mode!r}")
        ref: Any = reference  # segment_anything's Attention (untyped)
        self.num_heads: int = ref.num_heads
        self.scale: float = ref.scale
        self.qkv: nn.Linear = ref.qkv
        self.proj: nn.Linear = ref.proj
        self.use_rel_pos: bool = ref.use_rel_pos
        if self.use_rel_pos:
            self.rel_pos_h: nn.Parameter = ref.rel_pos_h
            self.rel_pos_w: nn.Parameter = ref.rel_pos_w
        self.bias_mode: BiasMode = bias_mode
        self._reference = (reference,)  # a tuple, so it is not registered as a submodule
        self._onehot: dict[tuple[int, int, torch.device, torch.dtype], torch.Tensor] = {}

    @property
    def reference(self) -> nn.Module:
        """The stock module this one replaces (restored by :func:`disable_fast_attention`)."""
        return self._reference[0]

    def _keys_onehot(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """(h*w, h+w) constant: row ``ky*w + kx`` has ones at ``ky`` and ``h + kx``."""
        key = (h, w, like.device, like.dtype)
        if key not in self._onehot:
            ky = torch.arange(h, device=like.device).repeat_interleave(w)
            kx = torch.arange(w, device=like.device).repeat(h)
            m = torch.cat([F.one_hot(ky, h), F.one_hot(kx, w)], dim=1).to(like.dtype)
            self._onehot[key] = m
        return self._onehot[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over the (H, W) grid of ``x`` (B, H, W, C); returns (B, H, W, C)."""
        B, H, W, _ = x.shape
        L = H * W
        qkv = self.qkv(x).reshape(B, L, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, L, hd)
        hd = q.shape[-1]
        if not self.use_rel_pos:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            Rh = rel_pos_table(H, self.rel_pos_h).to(q.dtype)  # (H, H, hd)
            Rw = rel_pos_table(W, self.rel_pos_w).to(q.dtype)  # (W, W, hd)
            r_q = q.reshape(B, self.num_heads, H, W, hd)
            rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, Rh).reshape(B, self.num_heads, L, H)
            rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, Rw).reshape(B, self.num_heads, L, W)
            if self.bias_mode == "mask":
                bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(B, self.num_heads, L, L)
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
            else:
                width = hd + H + W
                pad = (-width) % 8
                q2 = torch.cat([q * self.scale, rel_h, rel_w], dim=-1)
                k2 = torch.cat([k, self._keys_onehot(H, W, k).expand(B, self.num_heads, L, H + W)], dim=-1)
                if pad:
                    q2 = F.pad(q2, (0, pad))
                    k2 = F.pad(k2, (0, pad))
                v2 = F.pad(v, (0, width + pad - hd))
                out = F.scaled_dot_product_attention(q2, k2, v2, scale=1.0)[..., :hd]
        out = out.transpose(1, 2).reshape(B, H, W, -1)
        result: torch.Tensor = self.proj(out)
        return result


def enable_fast_attention(encoder: nn.Module, bias_mode: BiasMode = "mask") -> int:
    """Swap every block's attention of a SAM ``ImageEncoderViT`` for :class:`SdpaAttention`, in place.

    Idempotent; a second call with another ``bias_mode`` just changes the mode. The state dict is
    unchanged (parameters are shared).

    Returns:
        The number of blocks using fast attention.
    """
    n = 0
    for block in getattr(encoder, "blocks", []):
        attn = block.attn
        if isinstance(attn, SdpaAttention):
            attn.bias_mode = bias_mode
        else:
            block.attn = SdpaAttention(attn, bias_mode)
        n += 1
    log.debug("fast attention (%s) enabled on %d encoder blocks", bias_mode, n)
    return n


def disable_fast_attention(encoder: nn.Module) -> int:
    """Restore the stock attention modules swapped by :func:`enable_fast_attention`; returns how many."""
    n = 0
    for block in getattr(encoder, "blocks", []):
        if isinstance(block.attn, SdpaAttention):
            block.attn = block.attn.reference
            n += 1
    return n
