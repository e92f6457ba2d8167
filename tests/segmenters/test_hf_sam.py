"""The ``hf_sam`` segmenter against transformers' own processor + model forward on tiny random models."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from samprompt.errors import CheckpointError, ConfigError
from samprompt.prompts.base import Prompt
from samprompt.segmenters import SEGMENTERS
from samprompt.segmenters.medsam import medsam_input

PROMPTS = [
    Prompt(box=[10, 12, 70, 60]),
    Prompt(points=[[40.5, 30.5]], point_labels=[1]),
    Prompt(box=[30, 5, 110, 85], points=[[60.5, 40.5]], point_labels=[0]),
    Prompt(points=[[20.5, 20.5], [80.5, 70.5]], point_labels=[1, 0]),
]


def _randomise(model: torch.nn.Module) -> None:
    """Give zero-initialised parameters random values so that every part of the model matters."""
    with torch.no_grad():
        for prm in model.parameters():
            if prm.abs().sum() == 0:
                prm.normal_(0, 0.05)


@pytest.fixture(scope="module")
def sam_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ``SamModel`` (128 px, width 32) + ``SamProcessor`` saved with save_pretrained."""
    tf = pytest.importorskip("transformers", reason="needs transformers (samprompt[hf])")
    vision = tf.SamVisionConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=128, patch_size=16,
        output_channels=32, window_size=3, global_attn_indexes=[1], mlp_dim=64, num_pos_feats=16,
    )
    prompt = tf.SamPromptEncoderConfig(hidden_size=32, image_size=128, patch_size=16, mask_input_channels=4)
    decoder = tf.SamMaskDecoderConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64, iou_head_hidden_dim=32
    )
    config = tf.SamConfig(
        vision_config=vision.to_dict(), prompt_encoder_config=prompt.to_dict(), mask_decoder_config=decoder.to_dict()
    )
    torch.manual_seed(0)
    model = tf.SamModel(config).eval()
    _randomise(model)
    folder = tmp_path_factory.mktemp("hf") / "tiny-sam"
    model.save_pretrained(folder)
    image_processor = tf.SamImageProcessor(size={"longest_edge": 128}, pad_size={"height": 128, "width": 128})
    tf.SamProcessor(image_processor).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def sam2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ``Sam2Model`` (128 px Hiera of width 8, decoder width 32) + ``Sam2Processor``."""
    tf = pytest.importorskip("transformers", reason="needs transformers (samprompt[hf])")
    if not hasattr(tf, "Sam2Model"):
        pytest.skip(f"transformers {tf.__version__} has no Sam2Model")
    backbone = tf.Sam2HieraDetConfig(
        hidden_size=8, num_attention_heads=1, image_size=[128, 128], blocks_per_stage=[1, 2, 1, 1],
        embed_dim_per_stage=[8, 16, 32, 64], num_attention_heads_per_stage=[1, 1, 1, 1],
        window_size_per_stage=[8, 4, 14, 7], global_attention_blocks=[2],
        window_positional_embedding_background_size=[2, 2],
    )
    vision = tf.Sam2VisionConfig(
        backbone_config=backbone, backbone_channel_list=[64, 32, 16, 8],
        backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]], fpn_hidden_size=32,
    )
    prompt = tf.Sam2PromptEncoderConfig(hidden_size=32, image_size=128, patch_size=16, mask_input_channels=4)
    decoder = tf.Sam2MaskDecoderConfig(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32)
    torch.manual_seed(0)
    model = tf.Sam2Model(
        tf.Sam2Config(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    ).eval()
    _randomise(model)
    folder = tmp_path_factory.mktemp("hf") / "tiny-sam2"
    model.save_pretrained(folder)
    tf.Sam2Processor(tf.Sam2ImageProcessor(size={"height": 128, "width": 128})).save_pretrained(folder)
    return folder


def _hf_inputs(prompt: Prompt) -> dict[str, Any]:
    """samprompt prompt → the processor's nested lists (SAM pixel indices, inclusive boxes)."""
    kw: dict[str, Any] = {}
    if len(prompt.points):
        kw["input_points"] = [[(prompt.points - 0.5).tolist()]]
        kw["input_labels"] = [[prompt.point_labels.tolist()]]
    if prompt.box is not None:
        x0, y0, x1, y1 = prompt.box.tolist()
        kw["input_boxes"] = [[[x0, y0, x1 - 1, y1 - 1]]]
    return kw


def _reference(folder: Path, image: np.ndarray, prompt: Prompt, multimask: bool, medsam: bool = False):
    """transformers' own path: processor → model forward → post_process_masks; (H, W) logits, score."""
    import transformers as tf

    model = tf.AutoModel.from_pretrained(folder, local_files_only=True).eval()
    proc = tf.AutoProcessor.from_pretrained(folder, local_files_only=True)
    inputs = proc(images=image, return_tensors="pt", **_hf_inputs(prompt))
    if medsam:  # MedSAM: the square [0, 1] input, prompts scaled to the square
        S = 128
        inputs["pixel_values"] = medsam_input(image, S, torch.device("cpu"))[None]
        H, W = image.shape[:2]
        factor = torch.tensor([S / W, S / H])
        for key in ("input_points", "input_boxes"):
            if key in inputs:  # undo the processor's aspect-keeping scale, apply the square one
                old = inputs["reshaped_input_sizes"][0].float()
                back = torch.tensor([W / old[1], H / old[0]])
                shape = inputs[key].shape
                inputs[key] = (inputs[key].reshape(*shape[:-1], -1, 2) * back * factor).reshape(shape)
        inputs["reshaped_input_sizes"] = torch.tensor([[S, S]])
    with torch.no_grad():
        out = model(
            pixel_values=inputs["pixel_values"],
            multimask_output=multimask,
            **{k: inputs[k] for k in ("input_points", "input_labels", "input_boxes") if k in inputs},
        )
    sizes = [inputs["original_sizes"]]
    if "reshaped_input_sizes" in inputs:  # SAM; SAM 2 resizes to the square and needs no crop
        sizes.append(inputs["reshaped_input_sizes"])
    logits = proc.post_process_masks(out.pred_masks, *sizes, binarize=False)[0][0]
    iou = out.iou_scores[0, 0]
    best = int(iou.argmax()) if multimask else 0
    return logits[best].numpy(), float(iou[best])


def _check_same(res_mask: np.ndarray, res_score: float, logits: np.ndarray, iou: float) -> None:
    sure = np.abs(logits) > 1e-4 * np.abs(logits).max()  # sign cannot flip by float rounding
    assert sure.mean() > 0.99
    np.testing.assert_array_equal(res_mask[sure], (logits > 0)[sure])
    assert res_score == pytest.approx(iou, abs=1e-4)


@pytest.mark.parametrize("kind", ["sam", "sam2"])
@pytest.mark.parametrize("multimask", [True, False])
def test_hf_sam_matches_transformers(kind: str, multimask: bool, request: pytest.FixtureRequest) -> None:
    sam_folder = request.getfixturevalue(f"{kind}_folder")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8), rng.integers(0, 256, (100, 70, 3), np.uint8)]
    seg = SEGMENTERS.create("hf_sam", {"model": str(sam_folder), "device": "cpu", "multimask": multimask})
    out = seg.decode_batch(seg.embed_batch(images), [PROMPTS, PROMPTS[:2]])
    checked = 0
    for img, res, ps in zip(images, out, [PROMPTS, PROMPTS[:2]]):
        assert res.masks.shape == (len(ps), *img.shape[:2])
        for k, p in enumerate(ps):
            _check_same(res.masks[k], float(res.scores[k]), *_reference(sam_folder, img, p, multimask))
            checked += 1
    assert checked == 6
    assert 0.0 < np.mean([r.masks.mean() for r in out]) < 1.0


def test_hf_sam_medsam_preprocessing(sam_folder: Path) -> None:
    image = np.random.default_rng(2).integers(30, 200, (90, 120, 3), dtype=np.uint8)
    seg = SEGMENTERS.create("hf_sam", {"model": str(sam_folder), "device": "cpu", "preprocessing": "medsam"})
    plain = SEGMENTERS.create("hf_sam", {"model": str(sam_folder), "device": "cpu"})
    res = seg.segment(image, PROMPTS[:1])
    _check_same(res.masks[0], float(res.scores[0]), *_reference(sam_folder, image, PROMPTS[0], True, medsam=True))
    assert not np.array_equal(res.masks, plain.segment(image, PROMPTS[:1]).masks)


def test_medsam_input_is_min_max_normalised_square() -> None:
    image = np.full((30, 50, 3), 100, np.uint8)
    image[5:10, 5:20] = 220
    x = medsam_input(image, 64, torch.device("cpu"))
    assert x.shape == (3, 64, 64)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    flat = medsam_input(np.full((8, 8, 3), 7, np.uint8), 8, torch.device("cpu"))
    assert float(flat.abs().max()) == 0.0


def test_hf_sam_errors(sam_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nowhere"):
        SEGMENTERS.create("hf_sam", {"model": str(tmp_path / "nowhere")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="empty"):
        SEGMENTERS.create("hf_sam", {"model": str(tmp_path / "empty")})
    seg = SEGMENTERS.create("hf_sam", {"model": str(sam_folder), "device": "cpu"})
    emb = seg.embed(np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(ValueError, match="mask prompts"):
        seg.decode(emb, [Prompt(mask_logits=np.zeros((20, 20), np.float32))])


def test_hf_sam_missing_package_says_which_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(ConfigError, match=r"segmenter 'hf_sam' needs the transformers package: pip install 'samprompt\[hf\]'"):
        SEGMENTERS.create("hf_sam", {"model": str(tmp_path)})


@pytest.mark.parametrize("decoder_batch", [64, 2])
def test_hf_sam_batches_prompts_of_many_images(sam_folder: Path, decoder_batch: int) -> None:
    """3 boxes on one image and 1 on another: one padded forward (or chunks of 2 rows), same masks."""
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8), rng.integers(0, 256, (64, 64, 3), np.uint8)]
    boxes = [Prompt(box=[10, 12, 70, 60]), Prompt(box=[0, 0, 40, 30]), Prompt(box=[50, 40, 119, 89])]
    prompts = [boxes, [Prompt(box=[5, 5, 50, 60])], []]
    seg = SEGMENTERS.create("hf_sam", {"model": str(sam_folder), "device": "cpu", "decoder_batch": decoder_batch})
    embs = seg.embed_batch(images)
    out = seg.decode_batch([*embs, embs[0]], prompts)
    assert [r.masks.shape for r in out] == [(3, 90, 120), (1, 64, 64), (0, 90, 120)]
    for img, res, ps in zip(images, out, prompts):
        for k, p in enumerate(ps):
            _check_same(res.masks[k], float(res.scores[k]), *_reference(sam_folder, img, p, True))
