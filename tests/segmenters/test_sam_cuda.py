"""The ``sam`` segmenter and the whole pipeline on CUDA (skipped without a GPU; run by benchmarks/gpu_run.sh).

The CPU fp32 path of the same tiny SAM checkpoint is the reference: CUDA fp32 must match it closely and
CUDA bf16 (autocast, fast attention) must give nearly the same thresholded masks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from samprompt import PromptPipeline
from samprompt.prompts.base import Prompt
from samprompt.segmenters import SEGMENTERS
from samprompt.testing import random_image, save_tiny_sam_checkpoint, tiny_classifier

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_sam_checkpoint(tmp_path_factory.mktemp("sam") / "tiny.pth", seed=3)


def _seg(checkpoint: Path, device: str, **params: object):  # type: ignore[no-untyped-def]
    return SEGMENTERS.create("sam", {"model_type": "tiny", "checkpoint": str(checkpoint), "device": device,
                                     "batch_size": 4, **params})


def _prompts(h: int, w: int) -> list[Prompt]:
    box = [0.3 * w, 0.3 * h, 0.7 * w, 0.6 * h]
    return [Prompt(box=box), Prompt(points=[[0.5 * w, 0.45 * h]], point_labels=[1]),
            Prompt(box=box, points=[[0.5 * w, 0.45 * h], [2.5, 2.5]], point_labels=[1, 0])]


@pytest.mark.parametrize("precision, min_agreement", [("fp32", 0.999), ("bf16", 0.99)])
def test_cuda_matches_cpu_fp32(checkpoint: Path, precision: str, min_agreement: float) -> None:
    images = [random_image(120, 160, k) for k in range(5)]
    cpu = _seg(checkpoint, "cpu", precision="fp32", fast_attention=False)
    gpu = _seg(checkpoint, "cuda", precision=precision, fast_attention=True)
    embs_gpu = gpu.embed_batch(images)
    for image, e_cpu, e_gpu in zip(images, cpu.embed_batch(images), embs_gpu):
        f_cpu, f_gpu = e_cpu.data.features.float(), e_gpu.data.features.float().cpu()
        rel = float((f_gpu - f_cpu).norm() / f_cpu.norm())
        assert rel < (1e-3 if precision == "fp32" else 3e-2), rel
        ps = _prompts(*image.shape[:2])
        m_cpu, m_gpu = cpu.decode(e_cpu, ps).masks, gpu.decode(e_gpu, ps).masks
        assert m_gpu.shape == m_cpu.shape == (3, *image.shape[:2]) and m_gpu.dtype == bool
        assert float((m_cpu == m_gpu).mean()) >= min_agreement
    # all images' prompts in shared decoder calls on the GPU == image by image on the GPU
    batch = gpu.decode_batch(embs_gpu, [_prompts(*im.shape[:2]) for im in images])
    for image, e_gpu, got in zip(images, embs_gpu, batch):
        alone = gpu.decode(e_gpu, _prompts(*image.shape[:2]))
        assert float((got.masks == alone.masks).mean()) >= 0.999
        np.testing.assert_allclose(got.scores, alone.scores, atol=1e-3)


def test_pipeline_end_to_end_on_cuda(checkpoint: Path) -> None:
    from samprompt.cams import CAM_EXTRACTORS
    from samprompt.maskers import MASKERS
    from samprompt.preprocess import Preprocessing
    from samprompt.prompts import PROMPT_STRATEGIES

    images = [random_image(90 + 10 * k, 120, k) for k in range(4)]
    gts = [np.zeros(im.shape[:2], bool) for im in images]
    for g in gts:
        g[30:60, 40:80] = True
    results = {}
    for device in ("cpu", "cuda"):
        pipe = PromptPipeline(
            cam=CAM_EXTRACTORS.create("gradcam", {"target_layer": "layer4"}),
            masker=MASKERS.create("threshold", {"value": 0.5}),
            prompts=[PROMPT_STRATEGIES.create(n) for n in ("box", "center_point", "box_max_point")],
            segmenter=_seg(checkpoint, device, precision="fp32"),
            classifier=tiny_classifier(3).to(device), preprocessing=Preprocessing(input_size=32),
            class_names=["benign", "malignant", "normal"],
        )
        results[device] = pipe.run_batch(images, gt_masks=gts)
    for a, b in zip(results["cpu"], results["cuda"]):
        np.testing.assert_allclose(a.cam.cam, b.cam.cam, atol=1e-3)
        for label, r in a.gt.items():
            assert float((r.mask == b.gt[label].mask).mean()) >= 0.999
