"""The ``sam`` segmenter (tiny SAM on CPU) against the reference ``segment_anything.SamPredictor``.

Reference protocol: ``SamPredictor(tiny_sam(seed)).set_image(image)`` then ONE ``predict`` per prompt
(fp32, stock attention), with the prompt converted to SAM's own pixel-index convention
(:func:`to_sam_box`, :func:`to_sam_points`) — exactly what a SAM user passes for the same pixels.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from samprompt.errors import CheckpointError, ConfigError
from samprompt.prompts.base import Prompt
from samprompt.segmenters import SEGMENTERS, ImageEmbedding
from samprompt.segmenters.sam import SamFeatures, SamSegmenter
from samprompt.segmenters.sam_prompts import mask_logits_to_low_res, to_sam_box, to_sam_points
from samprompt.testing import random_image, save_tiny_sam_checkpoint, tiny_sam

SEED = 7




@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_sam_checkpoint(tmp_path_factory.mktemp("sam") / "tiny.pth", seed=SEED)


def make(checkpoint: Path, **params: Any) -> SamSegmenter:
    seg = SEGMENTERS.create(
        "sam", {"model_type": "tiny", "checkpoint": str(checkpoint), "device": "cpu", **params}
    )
    assert isinstance(seg, SamSegmenter)
    return seg


@lru_cache(maxsize=1)
def reference_model() -> Any:
    """The stock tiny SAM (never modified; SamPredictor only reads it)."""
    return tiny_sam(SEED)


def reference(
    image: np.ndarray, prompt: Prompt, multimask: bool = True
) -> tuple[np.ndarray, float, np.ndarray]:
    """SamPredictor: (mask (H, W) bool, predicted IoU, low-res logits (L, L)) of the chosen mask."""
    pred = SamPredictor(reference_model())
    pred.set_image(image)
    kw: dict[str, Any] = {}
    if prompt.box is not None:
        kw["box"] = to_sam_box(prompt.box)
    if len(prompt.points):
        kw["point_coords"], kw["point_labels"] = to_sam_points(prompt.points), prompt.point_labels.copy()
    if prompt.mask_logits is not None:
        low = mask_logits_to_low_res([prompt.mask_logits], pred.input_size, 128, 32, torch.device("cpu"))
        kw["mask_input"] = low[0].numpy()
    masks, iou, low_res = pred.predict(multimask_output=multimask, **kw)
    i = int(iou.argmax())
    return masks[i], float(iou[i]), low_res[i]


def prompts_for(h: int, w: int) -> list[Prompt]:
    """Point-only, box-only, box + points (fg and bg), several points; all valid for an (h, w) image."""
    cx, cy = 0.5 * w, 0.45 * h
    box = [0.3 * w, 0.3 * h, 0.7 * w, 0.6 * h]
    return [
        Prompt(points=[[cx, cy]], point_labels=[1]),
        Prompt(box=box),
        Prompt(box=box, points=[[cx, cy], [2.5, 2.5]], point_labels=[1, 0]),
        Prompt(points=[[cx, cy], [cx + 3, cy], [1.5, h - 1.5]], point_labels=[1, 1, 0]),
    ]


# 128 x 96 needs no resize (longest side = 128): preprocessing is bit-identical to SamPredictor's PIL path.
@pytest.mark.parametrize("size", [(96, 128), (50, 60), (150, 110)])
@pytest.mark.parametrize("fast, bias", [(False, "mask"), (True, "mask"), (True, "fold")])
def test_matches_sam_predictor(checkpoint: Path, size: tuple[int, int], fast: bool, bias: str) -> None:
    h, w = size
    image = random_image(h, w, seed=h)
    seg = make(checkpoint, fast_attention=fast, attention_bias=bias)
    emb = seg.embed(image)
    pred = SamPredictor(reference_model())
    pred.set_image(image)
    ours = emb.data.features
    rel = float((ours - pred.features).abs().max() / pred.features.abs().max())
    resized = (h, w) != (96, 128)
    assert rel < (1e-2 if resized else 1e-5), (
        rel
    )  # resized: PIL rounding differs by 1 grey level on ~0.1 % px
    assert emb.data.input_size == pred.input_size and emb.original_size == (h, w)

    prompts = prompts_for(h, w)
    out = seg.decode(emb, prompts)
    low, _ = seg.decode_low_res(emb, prompts)
    # decoding the reference embedding itself isolates the decoder path: logits equal to float rounding
    ref_emb = ImageEmbedding((h, w), SamFeatures(pred.features, pred.input_size))
    low_on_ref, scores_on_ref = seg.decode_low_res(ref_emb, prompts)
    for k, prompt in enumerate(prompts):
        mask, iou, ref_low = reference(image, prompt)
        torch.testing.assert_close(low_on_ref[k], torch.from_numpy(ref_low), rtol=1e-4, atol=1e-4)
        assert scores_on_ref[k].item() == pytest.approx(iou, abs=1e-5)
        agreement = float((out.masks[k] == mask).mean())
        assert agreement >= (0.99 if resized else 0.999), (k, agreement)
        if not resized:
            torch.testing.assert_close(low[k], torch.from_numpy(ref_low), rtol=1e-3, atol=1e-3)
            assert out.scores[k] == pytest.approx(iou, abs=1e-4)
    assert out.masks.shape == (4, h, w) and out.masks.dtype == bool and out.scores.dtype == np.float32


def test_checkpoint_loads_through_registry(checkpoint: Path) -> None:
    seg = make(checkpoint)
    torch.testing.assert_close(
        seg.model.state_dict(), tiny_sam(SEED).state_dict()
    )  # fast attention: same keys
    assert seg.to_config()["name"] == "sam"
    assert seg.to_config()["params"]["checkpoint"] == str(checkpoint)
    again = SEGMENTERS.create("sam", seg.to_config()["params"])
    torch.testing.assert_close(again.model.state_dict(), seg.model.state_dict())


def test_one_embedding_serves_many_prompt_sets(checkpoint: Path) -> None:
    seg = make(checkpoint)
    calls = {"encoder": 0, "decoder": 0}

    def count(name: str) -> Any:
        def hook(*_: Any) -> None:
            calls[name] += 1

        return hook

    seg.model.image_encoder.register_forward_hook(count("encoder"))
    seg.model.mask_decoder.register_forward_hook(count("decoder"))
    image = random_image(60, 80)
    emb = seg.embed(image)
    for k in range(5):
        out = seg.decode(emb, [Prompt(box=[5 + k, 5, 40, 30 + k]), Prompt(box=[10, 10, 70, 50])])
        assert out.masks.shape == (2, 60, 80)
    assert calls == {"encoder": 1, "decoder": 5}  # same structure: ONE decoder call per prompt set


def test_mixed_prompts_exact_and_pad(checkpoint: Path) -> None:
    image = random_image(70, 90, seed=3)
    prompts = prompts_for(70, 90) + [Prompt(mask_logits=np.full((70, 90), -5.0, np.float32))]
    exact = make(checkpoint)
    emb = exact.embed(image)
    together = exact.decode(emb, prompts)
    for k, p in enumerate(prompts):  # grouping never changes a prompt's result
        alone = exact.decode(emb, [p])
        np.testing.assert_array_equal(together.masks[k], alone.masks[0])
        assert together.scores[k] == pytest.approx(alone.scores[0], abs=1e-5)

    pad = make(checkpoint, prompt_batching="pad")
    n_calls = []
    pad.model.mask_decoder.register_forward_hook(lambda *_: n_calls.append(1))
    padded = pad.decode(emb, prompts)
    assert len(n_calls) == 1  # token counts 2, 2, 4, 4, 0 -> one call with not-a-point padding
    assert padded.masks.shape == together.masks.shape
    for k in (2, 3):  # the longest prompts (4 tokens) need no padding: identical results
        np.testing.assert_array_equal(padded.masks[k], together.masks[k])


def test_multimask_off_matches_single_output(checkpoint: Path) -> None:
    image = random_image(96, 128, seed=5)
    prompts = prompts_for(96, 128)
    multi, single = make(checkpoint), make(checkpoint, multimask=False)
    emb = multi.embed(image)
    low_multi, s_multi = multi.decode_low_res(emb, prompts)
    low_single, s_single = single.decode_low_res(emb, prompts)
    for k, p in enumerate(prompts):
        _, iou, ref_low = reference(image, p, multimask=False)
        torch.testing.assert_close(low_single[k], torch.from_numpy(ref_low), rtol=1e-3, atol=1e-3)
        assert s_single[k].item() == pytest.approx(iou, abs=1e-4)
        _, iou3, _ = predictor_scores(image, p)
        assert s_multi[k].item() == pytest.approx(iou3.max(), abs=1e-4)  # highest predicted IoU of 3
    assert not torch.allclose(low_multi, low_single)


def predictor_scores(image: np.ndarray, prompt: Prompt) -> tuple[Any, np.ndarray, Any]:
    pred = SamPredictor(reference_model())
    pred.set_image(image)
    kw: dict[str, Any] = {"box": None if prompt.box is None else to_sam_box(prompt.box)}
    if len(prompt.points):
        kw["point_coords"], kw["point_labels"] = to_sam_points(prompt.points), prompt.point_labels.copy()
    return pred.predict(multimask_output=True, **kw)


def test_mask_logits_prompt(checkpoint: Path) -> None:
    h, w = 96, 128  # no resize, so the embedding equals the reference's
    image = random_image(h, w, seed=11)
    logits = np.full((h, w), -8.0, np.float32)
    logits[30:70, 40:100] = 8.0
    seg = make(checkpoint)
    emb = seg.embed(image)
    prompts = [Prompt(mask_logits=logits), Prompt(box=[40, 30, 100, 70], mask_logits=logits)]
    low, scores = seg.decode_low_res(emb, prompts)
    for k, p in enumerate(prompts):
        _, iou, ref_low = reference(image, p)
        torch.testing.assert_close(low[k], torch.from_numpy(ref_low), rtol=1e-3, atol=1e-3)
        assert scores[k].item() == pytest.approx(iou, abs=1e-4)


@pytest.mark.parametrize("size", [(50, 60), (300, 200), (128, 128)])
def test_mask_logits_geometry_round_trips(size: tuple[int, int]) -> None:
    """Low-res mask input, upsampled back with SAM's postprocess_masks, lands on the original rectangle."""
    h, w = size
    logits = np.full((h, w), -4.0, np.float32)
    y0, y1, x0, x1 = h // 4, 3 * h // 4, w // 5, 3 * w // 5
    logits[y0:y1, x0:x1] = 4.0
    model = tiny_sam()
    scale = 128 / max(h, w)
    input_size = (int(h * scale + 0.5), int(w * scale + 0.5))
    low = mask_logits_to_low_res([logits], input_size, 128, 32, torch.device("cpu"))
    assert low.shape == (1, 1, 32, 32)
    assert float(low[0, 0, -1, -1]) <= -4.0  # padding is background
    back = model.postprocess_masks(low, input_size, (h, w))[0, 0].numpy() > 0
    truth = logits > 0
    iou = (back & truth).sum() / (back | truth).sum()
    assert iou > 0.9, iou


def test_embed_batch_of_different_sizes_equals_embed(checkpoint: Path) -> None:
    images = [random_image(50, 60, 1), random_image(96, 128, 2), random_image(150, 110, 3)]
    seg = make(checkpoint, batch_size=2)
    calls: list[int] = []
    seg.model.image_encoder.register_forward_hook(lambda _m, inp, _o: calls.append(inp[0].shape[0]))
    batched = seg.embed_batch(images)
    assert calls == [2, 1]
    for image, emb in zip(images, batched):
        single = seg.embed(image)
        assert emb.original_size == single.original_size == image.shape[:2]
        assert emb.data.input_size == single.data.input_size
        torch.testing.assert_close(emb.data.features, single.data.features, rtol=1e-5, atol=1e-5)


def test_read_only_image_is_embedded_without_warning(checkpoint: Path) -> None:
    import warnings

    image = random_image(60, 80, 4)
    frozen = image.copy()
    frozen.flags.writeable = False  # what np.asarray(PIL image) gives
    seg = make(checkpoint)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emb = seg.embed(frozen)
    torch.testing.assert_close(emb.data.features, seg.embed(image).data.features, rtol=0, atol=0)


def test_bf16_encoder_on_cpu(checkpoint: Path, caplog: pytest.LogCaptureFixture) -> None:
    image = random_image(96, 128)
    with caplog.at_level("WARNING", logger="samprompt.segmenters.sam"):
        bf16 = make(checkpoint, precision="bf16", attention_bias="fold")
    assert "bf16" in caplog.text
    ref = make(checkpoint, fast_attention=False).embed(image).data.features
    fast = bf16.embed(image).data.features
    assert fast.dtype == torch.float32
    assert float((fast - ref).norm() / ref.norm()) < 3e-2


def test_from_model_keeps_the_original(checkpoint: Path) -> None:
    model = tiny_sam(SEED)
    seg = SamSegmenter.from_model(model, model_type="tiny", device="cpu")
    assert type(model.image_encoder.blocks[0].attn).__name__ == "Attention"
    assert type(seg.model.image_encoder.blocks[0].attn).__name__ == "SdpaAttention"
    image = random_image(40, 40)
    np.testing.assert_array_equal(
        seg.segment(image, [Prompt(box=[5, 5, 30, 30])]).masks,
        make(checkpoint).segment(image, [Prompt(box=[5, 5, 30, 30])]).masks,
    )


def test_tiny_without_checkpoint_uses_seed_zero() -> None:
    seg = SEGMENTERS.create("sam", {"model_type": "tiny", "device": "cpu"})
    torch.testing.assert_close(seg.model.state_dict(), tiny_sam(0).state_dict())


def test_empty_prompts_and_bad_inputs(checkpoint: Path) -> None:
    seg = make(checkpoint)
    emb = seg.embed(random_image(30, 40)[:, :, 0])  # greyscale accepted
    empty = seg.decode(emb, [])
    assert empty.masks.shape == (0, 30, 40) and empty.scores.shape == (0,)
    with pytest.raises(ValueError, match="mask_logits has shape"):
        seg.decode(emb, [Prompt(mask_logits=np.zeros((10, 10), np.float32))])
    with pytest.raises(TypeError, match="not made by a SAM segmenter"):
        seg.decode(ImageEmbedding((30, 40), np.zeros((30, 40))), [Prompt(box=[1, 1, 5, 5])])
    with pytest.raises(TypeError, match="must be a Prompt"):
        seg.decode(emb, [{"box": [1, 1, 5, 5]}])  # type: ignore[list-item]


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"model_type": "vit_b"}, ConfigError, "checkpoint: required"),
        ({"model_type": "tiny", "typo": 1}, ConfigError, "typo"),
        ({"model_type": "vit_q"}, ConfigError, "model_type"),
        ({"model_type": "tiny", "batch_size": 0}, ConfigError, "batch_size"),
        ({"model_type": "tiny", "device": "gpu7"}, ConfigError, "device"),
        (
            {"model_type": "tiny", "checkpoint": "/nonexistent/sam.pth"},
            CheckpointError,
            r"sam\.pth.*does not exist",
        ),
    ],
)
def test_config_errors(params: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        SEGMENTERS.create("sam", params)


def test_wrong_model_type_through_registry(checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match=r"tiny\.pth.*model_type='vit_b'"):
        SEGMENTERS.create("sam", {"model_type": "vit_b", "checkpoint": str(checkpoint)})
