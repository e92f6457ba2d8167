"""The docs' SAM-HQ plugin example (docs/plugin_example/segmenter) against the real ``segment-anything-hq``.

A tiny random SAM-HQ is built from the package's own modules (``ImageEncoderViT``, ``PromptEncoder``,
``MaskDecoderHQ``, ``TwoWayTransformer``), saved as a state dict, and put under ``"vit_b"`` in the
package's ``sam_model_registry`` so that the example's unchanged ``build_predictor`` loads it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from samprompt.prompts.base import Prompt
from samprompt.segmenters.sam_prompts import to_sam_box, to_sam_points
from samprompt.testing import random_image

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "plugin_example" / "segmenter" / "src"
PROMPTS = [
    Prompt(box=[30, 20, 70, 45]),
    Prompt(points=[[50.5, 32.5]], point_labels=[1]),
    Prompt(box=[10, 5, 90, 60], points=[[50.5, 32.5], [5.5, 5.5]], point_labels=[1, 0]),
]


def _tiny_sam_hq(hq: Any) -> torch.nn.Module:
    """SAM-HQ at 128 px, width 32, 2 blocks (block 1 global), decoder width 32; random weights, seed 0."""
    m = hq.modeling
    torch.manual_seed(0)
    model = m.Sam(
        image_encoder=m.ImageEncoderViT(
            depth=2, embed_dim=32, img_size=128, mlp_ratio=4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=2, patch_size=16, qkv_bias=True, use_rel_pos=True, global_attn_indexes=[1],
            window_size=3, out_chans=32,
        ),
        prompt_encoder=m.PromptEncoder(
            embed_dim=32, image_embedding_size=(8, 8), input_image_size=(128, 128), mask_in_chans=16
        ),
        mask_decoder=m.MaskDecoderHQ(
            num_multimask_outputs=3,
            transformer=m.TwoWayTransformer(depth=2, embedding_dim=32, mlp_dim=64, num_heads=2),
            transformer_dim=32, iou_head_depth=3, iou_head_hidden_dim=32, vit_dim=32,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    with torch.no_grad():  # zero-initialised parts (e.g. rel. positions) get values so that they matter
        for prm in model.parameters():
            if prm.abs().sum() == 0:
                prm.normal_(0, 0.05)
    return model.eval()


@pytest.fixture
def sam_hq(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Path, Any]]:
    """(segment_anything_hq, checkpoint of the tiny model, the example module) with the registry patched."""
    hq = pytest.importorskip("segment_anything_hq", reason="needs segment-anything-hq (samprompt[test-hq])")
    model = _tiny_sam_hq(hq)
    path = tmp_path / "sam_hq_tiny.pth"
    torch.save(model.state_dict(), path)
    monkeypatch.setitem(hq.sam_model_registry, "vit_b", lambda checkpoint=None: _tiny_sam_hq(hq))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    had = "samprompt_sam_variants" in sys.modules
    import samprompt_sam_variants as example

    yield hq, path, example
    if not had:  # other tests check that listing plugins never imports the example
        sys.modules.pop("samprompt_sam_variants", None)


@pytest.mark.parametrize("hq_token_only", [False, True])
def test_sam_hq_example_matches_the_sam_hq_predictor(sam_hq: tuple[Any, Path, Any], hq_token_only: bool) -> None:
    hq, path, example = sam_hq
    seg = example.SamHqSegmenter(checkpoint=path, model_type="vit_b", device="cpu", hq_token_only=hq_token_only)
    first, second = random_image(64, 96, seed=1), random_image(80, 72, seed=2)
    emb = seg.embed(first)
    seg.embed(second)  # the predictor now holds another image: decode must restore the first one's state
    ours = seg.decode(emb, PROMPTS)

    ref = hq.SamPredictor(_tiny_sam_hq(hq))
    ref.set_image(first)
    assert ref.interm_features is not None  # SAM-HQ's extra state, which the example must carry
    for k, p in enumerate(PROMPTS):
        kwargs: dict[str, Any] = {"multimask_output": True, "hq_token_only": hq_token_only, "return_logits": True}
        if len(p.points):
            kwargs.update(point_coords=to_sam_points(p.points), point_labels=np.array(p.point_labels))
        if p.box is not None:
            kwargs["box"] = to_sam_box(p.box)
        logits, iou, _ = ref.predict(**kwargs)
        best = int(np.argmax(iou))
        np.testing.assert_array_equal(ours.masks[k], logits[best] > 0)
        assert ours.scores[k] == pytest.approx(float(iou[best]), abs=1e-6)
    assert 0.0 < ours.masks.mean() < 1.0


def test_hq_token_changes_the_masks(sam_hq: tuple[Any, Path, Any]) -> None:
    _, path, example = sam_hq
    image = random_image(64, 96, seed=3)
    both = example.SamHqSegmenter(checkpoint=path, model_type="vit_b", device="cpu").segment(image, PROMPTS)
    hq_only = example.SamHqSegmenter(
        checkpoint=path, model_type="vit_b", device="cpu", hq_token_only=True
    ).segment(image, PROMPTS)
    assert not np.array_equal(both.masks, hq_only.masks)
