"""Tests of the plugin, run with ``pytest`` after ``pip install -e .``."""

from __future__ import annotations

import numpy as np

from samprompt import PROMPT_STRATEGIES, PromptPipeline
from samprompt_cam_centroid import CamCentroidPoint


def test_point_is_the_cam_weighted_centre_of_a_square() -> None:
    mask = np.zeros((20, 30), bool)
    mask[5:10, 10:15] = True  # a 5 x 5 square: its centre pixel is (col 12, row 7)
    prompt = CamCentroidPoint()(mask, mask.astype(np.float32))
    assert prompt.points.tolist() == [[12.5, 7.5]]  # pixel centre
    assert prompt.point_labels.tolist() == [1] and prompt.box is None


def test_point_stays_inside_a_concave_region() -> None:
    mask = np.zeros((40, 40), bool)
    mask[5:35, 5:10] = True  # an "L": its centroid lies outside it
    mask[30:35, 5:35] = True
    x, y = CamCentroidPoint()(mask, mask.astype(np.float32)).points[0]
    assert mask[int(y), int(x)]


def test_cam_pulls_the_point_and_box_is_optional() -> None:
    mask = np.zeros((20, 40), bool)
    mask[5:15, 5:35] = True
    cam = np.zeros(mask.shape, np.float32)
    cam[:, 30:] = 1.0  # the CAM is strong at the right end
    prompt = CamCentroidPoint(with_box=True)(mask, cam)
    assert prompt.points[0, 0] > 30
    assert prompt.box.tolist() == [5.0, 5.0, 35.0, 15.0]  # pixel edges


def test_empty_mask_gives_no_prompt() -> None:
    assert CamCentroidPoint()(np.zeros((8, 8), bool), np.zeros((8, 8), np.float32)) is None


def test_samprompt_finds_the_installed_plugin() -> None:
    PROMPT_STRATEGIES.refresh()
    assert PROMPT_STRATEGIES.get("cam_centroid_point") is CamCentroidPoint
    pipe = PromptPipeline.from_config(
        {
            "prompts": [{"name": "cam_centroid_point", "params": {"with_box": True}}],
            "segmenter": {"name": "classical"},
        }
    )
    cam = np.zeros((48, 64), np.float32)
    cam[10:31, 20:51] = 1.0  # 21 x 31 pixels: the centre pixel is (col 35, row 20)
    result = pipe(np.full((48, 64), 128, np.uint8), cam=cam)
    prompt = result.strategies["cam_centroid_point"].prompt
    assert prompt.points.tolist() == [[35.5, 20.5]] and prompt.box.tolist() == [20.0, 10.0, 51.0, 31.0]
