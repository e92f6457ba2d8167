"""Property-based tests filling two gaps of tests/core/test_properties.py.

* The ``candidates`` strategy WITH an image (the core tests call every strategy without one): any image,
  mask and CAM give ``None`` or a prompt inside the image, never an exception.
* The weight-free ``classical`` segmenter on random VALID prompts (boxes, including degenerate ones,
  points on the edges, negative-only points, dense logits), both methods: masks are (K, H, W) bool,
  scores (K,) finite, never an exception.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from samprompt import PROMPT_STRATEGIES, SEGMENTERS, Prompt

SIZES = st.tuples(st.integers(1, 40), st.integers(1, 40))


@st.composite
def image_mask_cam(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = draw(SIZES)
    image = draw(st.one_of(
        arrays(np.uint8, (h, w, 3)),
        arrays(np.uint8, (h, w)),
        st.integers(0, 255).map(lambda v: np.full((h, w, 3), v, np.uint8)),  # uniform
    ))
    mask = draw(arrays(np.bool_, (h, w)))
    cam = draw(arrays(np.float32, (h, w), elements=st.one_of(
        st.floats(0, 1, width=32), st.sampled_from([float("nan"), float("inf"), -1.0]))))
    return image, mask, cam


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=image_mask_cam(), output=st.sampled_from(["box", "box_point", "box_points", "points"]),
       gate=st.sampled_from(["none", "overlap"]), fallback=st.sampled_from(["mask_box", "none"]))
def test_candidates_with_an_image_give_a_valid_prompt_or_none(data, output, gate, fallback) -> None:  # type: ignore[no-untyped-def]
    image, mask, cam = data
    h, w = mask.shape
    strategy = PROMPT_STRATEGIES.create("candidates", {
        "output": output, "n_negative": 2, "cam_gate": gate, "fallback": fallback, "work_size": 32,
        "segments": [50.0]})
    p = strategy(mask, cam, image=image)
    if p is None:
        return
    p.check_within(h, w)
    if p.box is not None:
        assert p.box[0] <= p.box[2] and p.box[1] <= p.box[3]
    assert set(p.point_labels.tolist()) <= {0, 1}
    assert output == "box" or (p.point_labels == 1).any()


@st.composite
def image_and_prompts(draw: st.DrawFn) -> tuple[np.ndarray, list[Prompt]]:
    h, w = draw(SIZES)
    image = draw(arrays(np.uint8, (h, w)))
    prompts = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["box", "points", "box_points", "logits"]))
        box = None
        if kind in ("box", "box_points"):
            x0, x1 = sorted(draw(st.lists(st.floats(0, w), min_size=2, max_size=2)))
            y0, y1 = sorted(draw(st.lists(st.floats(0, h), min_size=2, max_size=2)))
            box = [x0, y0, x1, y1]  # may be degenerate (zero width or height)
        pts = np.zeros((0, 2), np.float32)
        labels: list[int] = []
        if kind in ("points", "box_points"):
            n = draw(st.integers(1, 4))
            pts = np.array([[draw(st.floats(0, w)), draw(st.floats(0, h))] for _ in range(n)], np.float32)
            labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
        if kind == "logits":
            logits = draw(arrays(np.float32, (h, w), elements=st.floats(-5, 5, width=32)))
            prompts.append(Prompt(mask_logits=logits))
        else:
            prompts.append(Prompt(box=box, points=pts, point_labels=labels))
    return image, prompts


@pytest.mark.filterwarnings("ignore:The probability range is outside:UserWarning")  # skimage, on pure noise
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=image_and_prompts(), method=st.sampled_from(["polar", "polar", "random_walker"]))
def test_classical_segmenter_on_any_valid_prompts(data, method) -> None:  # type: ignore[no-untyped-def]
    image, prompts = data
    h, w = image.shape
    seg = SEGMENTERS.create("classical", {"method": method, "work_size": 24})
    out = seg.segment(image, prompts)
    assert out.masks.shape == (len(prompts), h, w) and out.masks.dtype == np.bool_
    assert out.scores.shape == (len(prompts),) and np.all(np.isfinite(out.scores))
