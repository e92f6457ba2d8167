"""``preprocessing="medsam"`` of the ``sam`` segmenter against MedSAM's inference recipe on a tiny SAM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samprompt.prompts.base import Prompt
from samprompt.segmenters.medsam import medsam_input
from samprompt.segmenters.sam import SamSegmenter
from samprompt.segmenters.sam_prompts import to_sam_box
from samprompt.testing import tiny_sam


def test_sam_medsam_matches_the_medsam_recipe() -> None:
    """MedSAM: encoder on the [0, 1] square, box scaled by S/W and S/H, single mask, logits > 0."""
    model = tiny_sam(seed=0)
    S = int(model.image_encoder.img_size)
    rng = np.random.default_rng(3)
    image = rng.integers(40, 180, (90, 120, 3), dtype=np.uint8)
    H, W = image.shape[:2]
    box = Prompt(box=[20, 15, 90, 70])
    seg = SamSegmenter.from_model(
        model, model_type="tiny", device="cpu", preprocessing="medsam", multimask=False, fast_attention=False
    )
    ours = seg.segment(image, [box])

    with torch.no_grad():
        emb = model.image_encoder(medsam_input(image, S, torch.device("cpu"))[None])
        b = torch.from_numpy(to_sam_box(box.box) * np.array([S / W, S / H, S / W, S / H], np.float32))[None]
        sparse, dense = model.prompt_encoder(points=None, boxes=b, masks=None)
        low, iou = model.mask_decoder(
            image_embeddings=emb, image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False,
        )
        ref = F.interpolate(low, (H, W), mode="bilinear", align_corners=False)[0, 0].numpy()
        two_step = model.postprocess_masks(low, (S, S), (H, W))[0, 0].numpy()
    assert ours.scores[0] == pytest.approx(float(iou[0, 0]), abs=1e-5)
    sure = np.abs(two_step) > 1e-4 * np.abs(two_step).max()
    np.testing.assert_array_equal(ours.masks[0][sure], (two_step > 0)[sure])
    # samprompt upsamples through the S x S grid (SAM's postprocess_masks), MedSAM straight to (H, W):
    # the masks differ only where the logits are near 0.
    agree = ours.masks[0] == (ref > 0)
    assert agree.mean() > 0.98
    assert np.all(agree[np.abs(ref) > 0.1 * np.abs(ref).max()])
    plain = SamSegmenter.from_model(model, model_type="tiny", device="cpu", multimask=False, fast_attention=False)
    assert not np.array_equal(plain.segment(image, [box]).masks, ours.masks)
