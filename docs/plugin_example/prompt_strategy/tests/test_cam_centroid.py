"""Tests of the plugin, run with ``pytest`` after ``pip install -e .``."""

from __future__ import annotations

import numpy as np

from samprompt import PROMPT_STRATEGIES, Emits, PromptPipeline
from samprompt_cam_centroid import CamCentroidPoint


def test_point_is_the_cam_weighted_centre_of_a_square() -> None:
    mask = np.zeros((20, 30), bool)
    mask[5:10, 10:15] = True  # a 5 x 5 square: its centre pixel is (col 12, row 7)
    prompt = CamCentroidPoint()(mask, mask.astype(np.float32))
    assert prompt is not None
    assert prompt.points.tolist() == [[12.5, 7.5]]  # pixel centre
    assert prompt.point_labels.tolist() == [1] and prompt.box is None  # what `emits` declares


def test_point_stays_inside_a_concave_region() -> None:
    mask = np.zeros((40, 40), bool)
    mask[5:35, 5:10] = True  # an "L": its centroid lies outside it
    mask[30:35, 5:35] = True
    prompt = CamCentroidPoint()(mask, mask.astype(np.float32))
    assert prompt is not None
    x, y = prompt.points[0]
    assert mask[int(y), int(x)]


def test_cam_pulls_the_point_and_component_is_a_parameter() -> None:
    mask = np.zeros((20, 60), bool)
    mask[5:15, 5:20] = True  # the larger region, on the left
    mask[5:10, 40:50] = True  # a smaller one, on the right, where the CAM is strong
    cam = np.zeros(mask.shape, np.float32)
    cam[:, 40:] = 1.0
    left = CamCentroidPoint()(mask, cam)
    right = CamCentroidPoint(component="max_cam")(mask, cam)
    assert left is not None and right is not None
    assert left.points[0, 0] < 20 and right.points[0, 0] > 40
    assert CamCentroidPoint.emits == Emits.POINTS


def test_empty_mask_gives_no_prompt() -> None:
    assert CamCentroidPoint()(np.zeros((8, 8), bool), np.zeros((8, 8), np.float32)) is None


def test_samprompt_finds_the_installed_plugin() -> None:
    PROMPT_STRATEGIES.refresh()
    assert PROMPT_STRATEGIES.get("cam_centroid_point") is CamCentroidPoint
    pipe = PromptPipeline.from_config(
        {
            "prompts": [{"name": "cam_centroid_point", "params": {"component": "all"}}],
            "segmenter": {"name": "classical"},
        }
    )
    cam = np.zeros((48, 64), np.float32)
    cam[10:31, 20:51] = 1.0  # 21 x 31 pixels: the centre pixel is (col 35, row 20)
    result = pipe(np.full((48, 64), 128, np.uint8), cam=cam)
    prompt = result.strategies["cam_centroid_point"].prompt
    assert prompt is not None and prompt.points.tolist() == [[35.5, 20.5]] and prompt.box is None
