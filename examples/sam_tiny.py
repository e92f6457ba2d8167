"""The ``sam`` segmenter end to end on CPU, with the tiny random-weight SAM from ``samprompt.testing``.

The tiny SAM is built from the real ``segment_anything`` modules (same code paths as ViT-B/L/H) at a 128 px
input, so this runs in seconds without downloading anything. Its weights are random: the masks show that
the wiring works (checkpoint file → segmenter → one embedding per image → masks at the original size),
not what SAM can do. With a real checkpoint, change two parameters:
``{"model_type": "vit_b", "checkpoint": "sam_vit_b_01ec64.pth"}``.
Run: ``python examples/sam_tiny.py``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np


def main() -> int:
    try:
        from samprompt.testing import random_image, save_tiny_sam_checkpoint
    except ImportError as exc:  # an installation without the test helpers
        print(f"skipped: samprompt.testing is not available ({exc})")
        return 0
    from samprompt import SEGMENTERS, PromptPipeline

    if "sam" not in SEGMENTERS.names():
        print("skipped: this installation has no 'sam' segmenter")
        return 0
    image = random_image(120, 160, seed=0)  # (H, W, 3) uint8: speckle with a darker ellipse
    cam = np.zeros(image.shape[:2], np.float32)
    cam[40:70, 55:105] = 1.0  # a CAM as a classifier might give, over the ellipse
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = save_tiny_sam_checkpoint(Path(tmp) / "tiny_sam.pth", seed=0)
        pipe = PromptPipeline.from_config(
            {
                "prompts": [{"name": "box", "params": {"margin": 5}}, {"name": "box_center_point"}],
                "segmenter": {
                    "name": "sam",
                    "params": {"model_type": "tiny", "checkpoint": str(checkpoint), "device": "cpu"},
                },
            }
        )
        result = pipe(image, cam=cam)
    print(f"tiny SAM loaded from a checkpoint file; image {image.shape[1]}x{image.shape[0]} embedded once")
    for label, r in result.strategies.items():
        box = [round(v) for v in r.prompt.box.tolist()]
        print(
            f"{label:>16}: box={box} mask {r.mask.shape[1]}x{r.mask.shape[0]}, "
            f"{int(r.mask.sum())} px, predicted IoU {r.score:.2f} (random weights)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
