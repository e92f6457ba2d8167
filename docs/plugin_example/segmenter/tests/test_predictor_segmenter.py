"""Tests of the wrapper, with segment-anything's own SamPredictor around samprompt's tiny SAM.

MobileSAM's and SAM-HQ's predictors have the same interface, so what passes here passes for them;
only building their models needs their packages and checkpoints.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest
from segment_anything import SamPredictor

from samprompt import SEGMENTERS, Prompt
from samprompt.errors import ConfigError
from samprompt.segmenters.sam import SamSegmenter
from samprompt.testing import random_image, tiny_sam
from samprompt_sam_variants import MobileSamSegmenter, PredictorParams, PredictorSegmenter


class TinyPredictorSegmenter(PredictorSegmenter[PredictorParams]):
    """The wrapper around segment-anything's predictor and the tiny random-weight SAM."""

    def build_predictor(self) -> Any:
        return SamPredictor(tiny_sam(seed=0))


PROMPTS = [
    Prompt(box=[30, 20, 70, 45]),
    Prompt(points=[[50.5, 32.5]], point_labels=[1]),
    Prompt(box=[30, 20, 70, 45], points=[[50.5, 32.5], [5.5, 5.5]], point_labels=[1, 0]),
]


def test_masks_have_the_original_size_and_prompt_order() -> None:
    seg = TinyPredictorSegmenter()
    out = seg.segment(random_image(64, 96), PROMPTS)
    assert out.masks.shape == (3, 64, 96) and out.masks.dtype == bool
    assert out.scores.shape == (3,)


def test_each_embedding_keeps_its_own_image() -> None:
    seg = TinyPredictorSegmenter()
    first = seg.embed(random_image(64, 96, seed=1))
    alone = seg.decode(first, PROMPTS).masks
    seg.embed(random_image(80, 80, seed=2))  # the predictor now holds another image
    assert np.array_equal(seg.decode(first, PROMPTS).masks, alone)


def test_same_masks_as_samprompts_own_sam_segmenter() -> None:
    image = random_image(64, 96)
    ours = TinyPredictorSegmenter().segment(image, PROMPTS).masks
    builtin = SamSegmenter.from_model(tiny_sam(seed=0), model_type="tiny", fast_attention=False, device="cpu")
    theirs = builtin.segment(image, PROMPTS).masks
    for a, b in zip(ours, theirs):
        union = np.logical_or(a, b).sum()
        assert union == 0 or np.logical_and(a, b).sum() / union > 0.95


@pytest.mark.skipif(importlib.util.find_spec("mobile_sam") is not None, reason="MobileSAM is installed")
def test_missing_backend_is_a_config_error_with_the_install_command() -> None:
    with pytest.raises(ConfigError, match="pip install"):
        MobileSamSegmenter(checkpoint="mobile_sam.pt")


def test_samprompt_finds_the_installed_plugin() -> None:
    SEGMENTERS.refresh()
    assert {"mobile_sam", "sam_hq"} <= set(SEGMENTERS.names())
    assert SEGMENTERS.get("mobile_sam") is MobileSamSegmenter
