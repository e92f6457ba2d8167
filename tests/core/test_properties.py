"""Property-based tests: any finite CAM gives a valid prompt inside the image, or None."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from samprompt import MASKERS, PROMPT_STRATEGIES, Prompt

STRATEGY_NAMES = sorted(n for n in PROMPT_STRATEGIES.names() if PROMPT_STRATEGIES.get(n).__module__.startswith("samprompt."))

cams = st.tuples(st.integers(1, 24), st.integers(1, 24)).flatmap(
    lambda hw: arrays(
        np.float32,
        hw,
        elements=st.one_of(
            st.floats(0, 1, width=32),
            st.sampled_from([0.0, 1.0, float("nan"), float("inf"), -float("inf"), 7.0, -3.0]),
        ),
    )
)
masker_specs = st.sampled_from(
    [
        ("threshold", {"value": 0.5}),
        ("threshold", {"value": 0.8, "keep": "all"}),
        ("otsu", {"fill_holes": True}),
        ("percentile", {"q": 80, "keep": "max_cam"}),
        ("threshold", {"value": 0.3, "min_area": 0.2}),
    ]
)


def _check_prompt(p: Prompt | None, h: int, w: int) -> None:
    if p is None:
        return
    if p.box is not None:
        x0, y0, x1, y1 = p.box.tolist()
        assert 0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h
        assert x1 > x0 and y1 > y0  # a box from a non-empty mask covers at least one pixel
    assert p.points.shape[0] == p.point_labels.shape[0]
    assert set(p.point_labels.tolist()) <= {0, 1}
    for x, y in p.points.tolist():
        assert 0 <= x <= w and 0 <= y <= h


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cam=cams, spec=masker_specs, margin=st.floats(0, 10), name=st.sampled_from(STRATEGY_NAMES))
def test_any_finite_or_broken_cam_gives_valid_prompt_or_none(cam, spec, margin, name) -> None:  # type: ignore[no-untyped-def]
    h, w = cam.shape
    mask = MASKERS.create(*spec)(cam)
    assert mask.shape == (h, w) and mask.dtype == bool
    params = {"margin": margin} if "box" in name else {}
    p = PROMPT_STRATEGIES.create(name, params)(mask, cam)
    if not mask.any():
        assert p is None
    else:
        assert p is not None
        _check_prompt(p, h, w)


@settings(max_examples=60, deadline=None)
@given(
    mask=st.tuples(st.integers(1, 20), st.integers(1, 20)).flatmap(lambda hw: arrays(np.bool_, hw)),
    name=st.sampled_from(STRATEGY_NAMES),
)
def test_points_from_inside_and_max_strategies_lie_in_the_mask(mask, name) -> None:  # type: ignore[no-untyped-def]
    p = PROMPT_STRATEGIES.create(name)(mask, mask.astype(np.float32))
    if not mask.any():
        assert p is None
        return
    _check_prompt(p, *mask.shape)
    if name in {"inside_point", "max_point", "box_inside_point", "box_max_point"}:
        for x, y in p.points.tolist():
            assert mask[int(y), int(x)], (name, x, y)


@settings(max_examples=200, deadline=None)
@given(
    values=arrays(np.float32, st.integers(1, 300), elements=st.floats(0, 1, width=32)),
    q=st.one_of(st.floats(0, 100), st.integers(0, 100).map(float)),
)
def test_percentile_linear_is_numpy_percentile_bit_for_bit(values, q) -> None:  # type: ignore[no-untyped-def]
    from samprompt.maskers.builtin import percentile_linear

    fast, ref = percentile_linear(values, q), np.percentile(values, q)
    assert fast == ref and fast.dtype == ref.dtype
    assert np.array_equal(values > fast, values > ref)  # hence the same pseudo mask


@settings(max_examples=200, deadline=None)
@given(box=arrays(np.float32, 4, elements=st.floats(-1e4, 1e4, width=32)), w=st.integers(1, 2000),
       h=st.integers(1, 2000))
def test_clip_box_orders_and_clips_like_numpy(box, w, h) -> None:  # type: ignore[no-untyped-def]
    from samprompt.regions import clip_box

    x0, x1 = np.sort(box[[0, 2]])
    y0, y1 = np.sort(box[[1, 3]])
    ref = np.clip(np.array([x0, y0, x1, y1], np.float32), 0, [w, h, w, h]).astype(np.float32)
    out = clip_box(box, w, h)
    assert out.dtype == np.float32 and np.array_equal(out, ref)
