"""Fast SDPA attention of the SAM encoder vs the stock ``segment_anything`` attention (tiny SAM, CPU)."""

from __future__ import annotations

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention, get_rel_pos

from samprompt.segmenters._sam_fast import (
    SdpaAttention,
    disable_fast_attention,
    enable_fast_attention,
    rel_pos_table,
)
from samprompt.testing import tiny_sam


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max absolute difference relative to the reference's max magnitude."""
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def encoder_input() -> torch.Tensor:
    return torch.randn(3, 3, 128, 128, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("size, length", [(8, 15), (3, 5), (8, 9)])
def test_rel_pos_table_matches_reference(size: int, length: int) -> None:
    table = torch.randn(length, 4)
    torch.testing.assert_close(rel_pos_table(size, table), get_rel_pos(size, size, table))


@pytest.mark.parametrize("mode", ["mask", "fold"])
def test_fast_encoder_matches_stock_fp32(mode: str, encoder_input: torch.Tensor) -> None:
    model = tiny_sam(seed=3)
    with torch.no_grad():
        ref = model.image_encoder(encoder_input)
        assert enable_fast_attention(model.image_encoder, mode) == 2  # type: ignore[arg-type]
        fast = model.image_encoder(encoder_input)
    # window (3 x 3 with padding 8 -> 9) and global blocks both go through SDPA with the rel-pos bias
    assert _rel_err(fast, ref) < 1e-5
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["mask", "fold"])
def test_fast_encoder_bf16_autocast_is_close(mode: str, encoder_input: torch.Tensor) -> None:
    model = tiny_sam(seed=3)
    with torch.no_grad():
        ref = model.image_encoder(encoder_input)
        enable_fast_attention(model.image_encoder, mode)  # type: ignore[arg-type]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = model.image_encoder(encoder_input).float()
    rel_frob = float((fast - ref).norm() / ref.norm())
    assert rel_frob < 3e-2, rel_frob


def test_fast_attention_is_drop_in_and_reversible() -> None:
    model = tiny_sam(seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    enable_fast_attention(model.image_encoder, "fold")
    assert all(isinstance(b.attn, SdpaAttention) for b in model.image_encoder.blocks)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    # shared, not copied: loading into the fast model changes what the stock module would use
    model.load_state_dict(tiny_sam(seed=1).state_dict())
    enable_fast_attention(model.image_encoder, "mask")  # idempotent, switches mode
    assert model.image_encoder.blocks[0].attn.bias_mode == "mask"
    assert disable_fast_attention(model.image_encoder) == 2
    assert all(type(b.attn) is Attention for b in model.image_encoder.blocks)
    torch.testing.assert_close(model.state_dict(), tiny_sam(seed=1).state_dict())


def test_sdpa_attention_rejects_unknown_mode() -> None:
    attn = tiny_sam().image_encoder.blocks[0].attn
    with pytest.raises(ValueError, match="bias_mode"):
        SdpaAttention(attn, "flex")  # type: ignore[arg-type]
