"""The ``sam2`` segmenter against the ``sam2`` package's own SAM2ImagePredictor on a tiny random model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from samprompt.errors import CheckpointError, ConfigError
from samprompt.prompts.base import Prompt
from samprompt.segmenters import SEGMENTERS

CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
#: Hydra overrides shrinking SAM 2.1-tiny to a 128 px, width-8 Hiera with a width-32 decoder (~0.6 M
#: parameters): stages [1, 2, 1, 1] so the one global block (2) is not a pooling block.
TINY = (
    "++model.image_size=128",
    "++model.image_encoder.trunk.embed_dim=8",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,2,1,1]",
    "++model.image_encoder.trunk.global_att_blocks=[2]",
    "++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[2,2]",
    "++model.image_encoder.neck.d_model=32",
    "++model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
    "++model.image_encoder.neck.position_encoding.num_pos_feats=32",
    "++model.memory_attention.d_model=32",
    "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.d_model=32",
    "++model.memory_attention.layer.dim_feedforward=32",
    "++model.memory_attention.layer.self_attention.embedding_dim=32",
    "++model.memory_attention.layer.self_attention.feat_sizes=[8,8]",
    "++model.memory_attention.layer.cross_attention.embedding_dim=32",
    "++model.memory_attention.layer.cross_attention.feat_sizes=[8,8]",
    "++model.memory_attention.layer.cross_attention.kv_in_dim=16",
    "++model.memory_encoder.out_dim=16",
    "++model.memory_encoder.position_encoding.num_pos_feats=16",
    "++model.memory_encoder.mask_downsampler.embed_dim=32",
    "++model.memory_encoder.fuser.layer.dim=32",
    "++model.memory_encoder.fuser.num_layers=1",
    "++model.memory_encoder.in_dim=32",
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A tiny random SAM 2.1 saved as ``{"model": state_dict}`` (the official layout), and the model."""
    build_sam = pytest.importorskip("sam2.build_sam", reason="needs the sam2 package (samprompt[sam2])")
    torch.manual_seed(0)
    model = build_sam.build_sam2(CONFIG, None, device="cpu", hydra_overrides_extra=list(TINY))
    with torch.no_grad():  # random init leaves some embeddings at 0: make every parameter matter
        for name, prm in model.named_parameters():
            if prm.abs().sum() == 0:
                prm.normal_(0, 0.02 if "embed" in name else 0.1)
    path = tmp_path_factory.mktemp("sam2") / "tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    return path, model.eval()


def _segmenter(path: Path, **extra: object) -> object:
    return SEGMENTERS.create(
        "sam2", {"config": CONFIG, "checkpoint": str(path), "overrides": list(TINY), "device": "cpu", **extra}
    )


def _reference(model: torch.nn.Module, image: np.ndarray, prompt: Prompt, multimask: bool) -> tuple:
    """The package's predictor: (H, W) logits of the best mask and its score, for one prompt."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    pred = SAM2ImagePredictor(model)
    s = model.image_size
    pred._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]  # hard-coded for 1024
    pred.set_image(image)
    kwargs: dict = {}
    if prompt.mask_logits is not None:  # the low-res mask input, made as samprompt documents it
        L = 4 * model.sam_prompt_encoder.image_embedding_size[0]
        m = torch.from_numpy(prompt.mask_logits)[None, None]
        kwargs["mask_input"] = torch.nn.functional.interpolate(
            m, (L, L), mode="bilinear", align_corners=False, antialias=True
        )[0].numpy()
    if len(prompt.points):
        kwargs.update(point_coords=prompt.points - 0.5, point_labels=prompt.point_labels)
    if prompt.box is not None:
        x0, y0, x1, y1 = prompt.box
        kwargs["box"] = np.array([x0, y0, x1 - 1, y1 - 1])
    logits, iou, _ = pred.predict(multimask_output=multimask, return_logits=True, **kwargs)
    best = int(np.argmax(iou)) if multimask else 0
    return logits[best], float(iou[best])


PROMPTS = [
    Prompt(box=[10, 12, 70, 60]),
    Prompt(points=[[40.5, 30.5]], point_labels=[1]),
    Prompt(points=[[20.5, 20.5], [80.5, 70.5]], point_labels=[1, 0]),
    Prompt(box=[30, 5, 110, 85], points=[[60.5, 40.5]], point_labels=[0]),
]


@pytest.mark.parametrize("multimask", [True, False])
def test_sam2_matches_the_package_predictor(tiny: tuple[Path, torch.nn.Module], multimask: bool) -> None:
    path, model = tiny
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8), rng.integers(0, 256, (100, 70, 3), np.uint8)]
    seg = _segmenter(path, multimask=multimask)
    embs = seg.embed_batch(images)
    prompts = [PROMPTS, [PROMPTS[1], PROMPTS[0]]]
    out = seg.decode_batch(embs, prompts)
    checked = 0
    for img, ps, res in zip(images, prompts, out):
        assert res.masks.shape == (len(ps), *img.shape[:2])
        for k, p in enumerate(ps):
            logits, iou = _reference(model, img, p, multimask)
            sure = np.abs(logits) > 1e-4 * np.abs(logits).max()  # sign cannot flip by float rounding
            assert sure.mean() > 0.99
            np.testing.assert_array_equal(res.masks[k][sure], (logits > 0)[sure])
            assert res.scores[k] == pytest.approx(iou, abs=1e-4)
            checked += 1
    assert checked == 6
    assert 0.0 < np.mean([r.masks.mean() for r in out]) < 1.0  # masks are not trivially empty / full


def test_sam2_decode_equals_decode_batch_and_segment(tiny: tuple[Path, torch.nn.Module]) -> None:
    path, _ = tiny  # and mask prompts (alone, with a box) as SAM2ImagePredictor's mask_input
    image = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    seg = _segmenter(path)
    one = seg.segment(image, PROMPTS[:2])
    emb = seg.embed(image)
    many = seg.decode_batch([emb, emb], [PROMPTS[:2], []])
    assert many[1].masks.shape == (0, 64, 96)
    assert np.mean(one.masks == many[0].masks) > 0.999
    logits = np.where(one.masks[0], 5.0, -5.0).astype(np.float32)
    with_mask = [Prompt(mask_logits=logits), Prompt(box=[10, 12, 70, 60], mask_logits=logits)]
    out = seg.decode(emb, with_mask)
    assert out.masks.shape == (2, 64, 96)
    _, model = tiny
    for k, p in enumerate(with_mask):
        ref, iou = _reference(model, image, p, True)
        sure = np.abs(ref) > 1e-4 * np.abs(ref).max()
        np.testing.assert_array_equal(out.masks[k][sure], (ref > 0)[sure])
        assert out.scores[k] == pytest.approx(iou, abs=1e-4)


def test_sam2_errors_name_the_file_and_config(tiny: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    path, _ = tiny
    with pytest.raises(CheckpointError, match="missing.pt"):
        _segmenter(tmp_path / "missing.pt")
    bad = tmp_path / "other.pt"
    torch.save({"model": {"not.a.key": torch.zeros(1)}}, bad)
    with pytest.raises(CheckpointError, match=r"other\.pt.*sam2\.1_hiera_t"):
        _segmenter(bad)
    with pytest.raises(ConfigError, match="no_such_config"):
        SEGMENTERS.create("sam2", {"config": "no_such_config.yaml", "checkpoint": str(path), "device": "cpu"})


def test_sam2_missing_package_says_which_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "sam2.build_sam", None)  # makes `import sam2.build_sam` fail
    with pytest.raises(ConfigError, match=r"segmenter 'sam2' needs the sam2 package: pip install 'samprompt\[sam2\]'"):
        SEGMENTERS.create("sam2", {"checkpoint": str(tmp_path / "x.pt")})


def test_importing_samprompt_imports_no_optional_model_package() -> None:
    """The registries list sam2 / hf_sam and build timm names without importing sam2, transformers, timm."""
    import subprocess

    code = (
        "import sys, samprompt, samprompt.cli\n"
        "from samprompt.segmenters import SEGMENTERS\n"
        "from samprompt.classifiers import CLASSIFIERS\n"
        "assert {'sam2', 'hf_sam'} <= set(SEGMENTERS.names()), SEGMENTERS.names()\n"
        "CLASSIFIERS.names()\n"
        "SEGMENTERS.get('sam2'); SEGMENTERS.get('hf_sam')\n"
        "print(sorted(m for m in ('sam2', 'hydra', 'transformers', 'timm', 'safetensors') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]"


def test_sam2_bf16_encoder_stays_close_to_fp32(tiny: tuple[Path, torch.nn.Module]) -> None:
    """precision='bf16' (CPU autocast here): fp32 features, masks close to the fp32 ones."""
    path, _ = tiny
    image = np.random.default_rng(4).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    full, half = _segmenter(path), _segmenter(path, precision="bf16")
    emb = half.embed(image)
    assert emb.data.image_embed.dtype == torch.float32
    diff = (emb.data.image_embed - full.embed(image).data.image_embed).abs().max()
    assert 0 < float(diff) < 0.1 * float(full.embed(image).data.image_embed.abs().max())
    a, b = full.segment(image, PROMPTS).masks, half.segment(image, PROMPTS).masks
    assert (a == b).mean() > 0.9
