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


@pytest.mark.parametrize("decoder_batch", [64, 3])
@pytest.mark.parametrize("batching", ["exact", "pad"])
def test_decode_batch_matches_decode_per_image(checkpoint: Path, decoder_batch: int, batching: str) -> None:
    """All prompts of several images in shared decoder calls (each on its own embedding) give what
    decoding each image alone gives; images of different sizes, an image without prompts, a mask prompt."""
    seg = make(checkpoint, decoder_batch=decoder_batch, prompt_batching=batching)
    sizes = [(60, 80), (96, 128), (40, 30), (70, 90)]
    images = [random_image(h, w, seed=20 + k) for k, (h, w) in enumerate(sizes)]
    prompts = [prompts_for(h, w) for h, w in sizes]
    prompts[2] = []
    prompts[3] = prompts[3][:2] + [Prompt(mask_logits=np.full(sizes[3], -5.0, np.float32))]
    embs = seg.embed_batch(images)
    calls: list[int] = []
    seg.model.mask_decoder.register_forward_hook(lambda *_: calls.append(1))
    together = seg.decode_batch(embs, prompts)
    low_together = seg._low_res_many(embs, prompts)
    n_together = len(calls) // 2
    calls.clear()
    alone = [seg.decode(emb, ps) for emb, ps in zip(embs, prompts)]
    n_alone = len(calls)
    for k, ps in enumerate(prompts):
        assert together[k].masks.shape == alone[k].masks.shape == (len(ps), *sizes[k])
        if ps:
            np.testing.assert_allclose(together[k].scores, alone[k].scores, atol=1e-5)
            assert (together[k].masks == alone[k].masks).mean() >= 0.999
            low_alone = seg.decode_low_res(embs[k], ps)[0]
            torch.testing.assert_close(low_together[k][0], low_alone, atol=1e-4, rtol=1e-4)
    if decoder_batch == 64:
        # exact: token counts 2, 4 and 0 (the mask prompt) over all images -> 3 calls instead of 6;
        # pad: each image padded to its longest prompt: 4, 4 and 2 tokens -> 2 calls instead of 3
        assert (n_together, n_alone) == ((3, 6) if batching == "exact" else (2, 3))
    else:
        assert n_together >= 4  # 11 prompts, at most 3 per call


def test_decode_batch_checks_its_inputs(checkpoint: Path) -> None:
    seg = make(checkpoint)
    emb = seg.embed(random_image(30, 40))
    with pytest.raises(ValueError, match="2 embeddings but 1 prompt lists"):
        seg.decode_batch([emb, emb], [[]])
    with pytest.raises(ValueError, match=r"prompts\[1\]\[0\].mask_logits"):
        seg.decode_batch([emb, emb], [[], [Prompt(mask_logits=np.zeros((5, 5), np.float32))]])
    with pytest.raises(TypeError, match="not made by a SAM segmenter"):
        seg.decode_batch([ImageEmbedding((30, 40), np.zeros((30, 40)))], [[Prompt(box=[1, 1, 5, 5])]])
    assert [r.masks.shape for r in seg.decode_batch([emb, emb], [[], []])] == [(0, 30, 40), (0, 30, 40)]


def test_pipeline_decodes_a_batch_in_shared_calls(checkpoint: Path) -> None:
    """The pipeline hands every prompt of a batch (5 paper strategies on the CAM and on the ground truth,
    3 images) to ONE ``decode_batch``; each mask is the one decoding that prompt alone gives."""
    from samprompt import PromptPipeline
    from samprompt.cams import CAM_EXTRACTORS
    from samprompt.maskers import MASKERS
    from samprompt.prompts import PROMPT_STRATEGIES

    seg = make(checkpoint)
    names = ["box", "center_point", "max_point", "box_center_point", "box_max_point"]
    pipe = PromptPipeline(  # CAMs are passed in: the extractor is never called
        cam=CAM_EXTRACTORS.create("gradcam"), masker=MASKERS.create("threshold"),
        prompts=[PROMPT_STRATEGIES.create(n) for n in names], segmenter=seg,
    )
    sizes = [(60, 80), (96, 128), (70, 90)]
    images = [random_image(h, w, seed=40 + k) for k, (h, w) in enumerate(sizes)]
    cams, gts = [], []
    for h, w in sizes:
        yy, xx = np.mgrid[0:h, 0:w]
        cam = np.exp(-(((xx - 0.5 * w) / (0.2 * w)) ** 2 + ((yy - 0.4 * h) / (0.2 * h)) ** 2))
        cams.append(cam.astype(np.float32))
        gts.append(((xx - 0.55 * w) / (0.2 * w)) ** 2 + ((yy - 0.45 * h) / (0.15 * h)) ** 2 <= 1)
    calls: list[int] = []
    seg.model.mask_decoder.register_forward_hook(lambda *_: calls.append(1))
    results = pipe.run_batch(images, cams=cams, gt_masks=gts)
    # token counts: point + pad (2), box (2), box + point (3): 2 calls for 30 prompts of 3 images
    assert len(calls) == 2
    for img, res in zip(images, results):
        emb = seg.embed(img)
        for per in (res.strategies, res.gt):
            for r in per.values():
                alone = seg.decode(emb, [r.prompt])
                np.testing.assert_array_equal(r.mask, alone.masks[0])
                assert r.score == pytest.approx(float(alone.scores[0]), abs=1e-5)
