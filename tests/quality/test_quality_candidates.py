"""Candidate-region prompts (``candidates`` strategy) on synthetic images with real pixel values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samprompt.errors import ConfigError
from samprompt.prompts import PROMPT_STRATEGIES
from samprompt.prompts.base import Prompt
from samprompt.prompts.candidates import (
    FEATURE_NAMES,
    CandidatePromptStrategy,
    CandidateScorer,
    candidate_features,
    negative_points,
    propose_candidates,
    region_prompt,
    spread_points,
)
from samprompt.regions import box_iou, mask_to_box


def _scene(seed: int = 0, H: int = 200, W: int = 260):
    """Speckled bright tissue, a dark lesion, and a dark band along the bottom (a 'shadow')."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    lesion = ((xx - 150) / 35) ** 2 + ((yy - 80) / 25) ** 2 <= 1
    img = 160 + 20 * rng.standard_normal((H, W))
    img[lesion] = 50 + 15 * rng.standard_normal(lesion.sum())
    img[-25:] = 40 + 10 * rng.standard_normal((25, W))
    return np.clip(img, 0, 255).astype(np.uint8), lesion


def test_proposals_contain_the_lesion() -> None:
    img, lesion = _scene()
    cands = propose_candidates(img)
    assert cands
    best = max(box_iou(c.box(), mask_to_box(lesion)) for c in cands)
    assert best > 0.8
    F = candidate_features(img, cands, cam=np.zeros(lesion.shape, np.float32))
    assert F.shape == (len(cands), len(FEATURE_NAMES)) and np.isfinite(F).all()


def test_strategy_uses_the_image_and_the_cam() -> None:
    img, lesion = _scene(1)
    H, W = lesion.shape
    cam = np.zeros((H, W), np.float32)
    cam[40:130, 100:210] = 1.0  # a coarse CAM near the lesion
    strat = PROMPT_STRATEGIES.create("candidates", {"output": "box_points", "n_points": 3, "n_negative": 4})
    p = strat(cam > 0.5, cam, image=img)
    assert isinstance(p, Prompt) and p.box is not None
    assert box_iou(p.box, mask_to_box(lesion)) > 0.7
    pos = p.points[p.point_labels == 1]
    neg = p.points[p.point_labels == 0]
    assert len(pos) == 3 and all(lesion[int(y), int(x)] for x, y in pos)
    assert len(neg) >= 1 and not any(lesion[int(y), int(x)] for x, y in neg)


def test_without_image_falls_back_to_the_mask_box() -> None:
    mask = np.zeros((50, 60), bool)
    mask[10:20, 30:45] = True
    cam = mask.astype(np.float32)
    p = CandidatePromptStrategy()(mask, cam)
    assert p is not None and p.box.tolist() == [30.0, 10.0, 45.0, 20.0]
    assert CandidatePromptStrategy(fallback="none")(mask, cam) is None
    assert CandidatePromptStrategy()(np.zeros((50, 60), bool), cam * 0) is None


def test_image_size_must_match() -> None:
    img, lesion = _scene()
    with pytest.raises(ValueError, match="image shape"):
        CandidatePromptStrategy()(lesion, lesion.astype(np.float32), image=img[:-1])


def test_config_round_trip_and_validation() -> None:
    from samprompt.errors import ConfigError

    s = CandidatePromptStrategy(output="box_point", margin=0.05)
    cfg = s.to_config()
    assert cfg["name"] == "candidates"
    assert PROMPT_STRATEGIES.create(cfg["name"], cfg["params"]).params == s.params
    with pytest.raises(ConfigError, match="candidates.params.outputs"):
        CandidatePromptStrategy(outputs="box")
    with pytest.raises(ValueError, match="weights"):
        CandidateScorer(weights=[1.0, 2.0])


def test_region_prompt_forms_and_points() -> None:
    region = np.zeros((80, 100), bool)
    region[20:60, 30:80] = True
    assert region_prompt(region, "box").points.shape == (0, 2)
    p = region_prompt(region, "points", n_points=4, n_negative=3)
    assert p.box is None and p.point_labels.tolist().count(1) == 4
    pts = spread_points(region, 5)
    assert len(pts) == 5 and all(region[int(y), int(x)] for x, y in pts)
    assert len({tuple(p) for p in pts.tolist()}) == 5
    neg = negative_points(region, 8)
    assert len(neg) >= 1 and not any(region[int(y), int(x)] for x, y in neg)
    assert region_prompt(np.zeros((5, 5), bool), "box") is None


def test_refinement_features_and_choice() -> None:
    from samprompt.prompts.candidates import REFINED_FEATURE_NAMES, refine_candidates

    img, lesion = _scene(2)
    cands = propose_candidates(img)
    scores = CandidateScorer()(candidate_features(img, cands))
    refined, full, F = refine_candidates(img, cands, scores, top_k=4)
    assert len(refined) == len(full) == F.shape[0] == min(4, len(cands))
    assert F.shape[1] == len(REFINED_FEATURE_NAMES) and np.isfinite(F).all()
    assert all(m.shape == lesion.shape for m in full)
    assert max(box_iou(mask_to_box(m), mask_to_box(lesion)) for m in full) > 0.8
    assert refine_candidates(img, [], np.zeros(0))[2].shape == (0, len(REFINED_FEATURE_NAMES))
    assert CandidateScorer(names=REFINED_FEATURE_NAMES)(F).shape == (len(refined),)


@pytest.mark.parametrize("top_k", [0, 6])
def test_strategy_with_and_without_refinement(top_k: int) -> None:
    img, lesion = _scene(3)
    cam = np.ones(lesion.shape, np.float32)
    p = CandidatePromptStrategy(output="box_point", refine_top_k=top_k)(cam > 0.5, cam, image=img)
    assert p is not None and box_iou(p.box, mask_to_box(lesion)) > 0.7
    (x, y), = p.points
    assert lesion[int(y), int(x)] and p.point_labels.tolist() == [1]


def test_point_emitted_only_when_confident() -> None:
    img, lesion = _scene(4)
    cam = np.ones(lesion.shape, np.float32)
    sure = CandidatePromptStrategy(output="box_point", point_min_score=-1e9)(cam > 0.5, cam, image=img)
    unsure = CandidatePromptStrategy(output="box_point", point_min_score=1e9)(cam > 0.5, cam, image=img)
    assert len(sure.points) == 1 and len(unsure.points) == 0
    assert unsure.box is not None and np.allclose(unsure.box, sure.box)


def test_under_smaller_region_flags_the_region_under_a_smaller_one() -> None:
    from samprompt.prompts.candidates import under_smaller_region

    lesion, shadow = [100, 50, 160, 90], [95, 95, 165, 180]
    assert under_smaller_region([lesion, shadow]).tolist() == [False, True]
    assert under_smaller_region([shadow, lesion]).tolist() == [True, False]  # order does not matter
    assert under_smaller_region([[200, 50, 240, 90], shadow]).tolist() == [False, False]  # beside, not above
    assert under_smaller_region([[100, 0, 160, 40], shadow]).tolist() == [False, False]  # gap 55 > 0.5 x 40
    assert under_smaller_region([[100, 0, 160, 40], shadow], gap=2.0).tolist() == [False, True]
    big_above = [60, 10, 200, 94]
    assert under_smaller_region([big_above, shadow]).tolist() == [False, False]  # the upper one is larger
    assert under_smaller_region([None, shadow, lesion]).tolist() == [False, True, False]
    assert under_smaller_region([]).shape == (0,)


def test_shadow_penalty_moves_the_choice_from_the_shadow_to_the_lesion_above() -> None:
    rng = np.random.default_rng(3)
    H, W = 220, 260
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    lesion = ((xx - 130) / 30) ** 2 + ((yy - 70) / 18) ** 2 <= 1
    shadow = (xx > 95) & (xx < 165) & (yy > 100) & (yy < 190)
    img = 165 + 15 * rng.standard_normal((H, W))
    img[lesion] = 50 + 10 * rng.standard_normal(lesion.sum())
    img[shadow] = 55 + 10 * rng.standard_normal(shadow.sum())
    img = np.clip(img, 0, 255).astype(np.uint8)
    from samprompt.prompts.candidates import REFINED_FEATURE_NAMES

    prefer_big = [0.0] * len(REFINED_FEATURE_NAMES)
    prefer_big[REFINED_FEATURE_NAMES.index("log_area")] = 1.0  # a score that prefers the larger region
    boxes = {}
    for penalty in (0.0, 100.0):
        strat = CandidatePromptStrategy(refine_weights=prefer_big, shadow_penalty=penalty)
        p = strat(np.zeros((H, W), bool), np.zeros((H, W), np.float32), image=np.stack([img] * 3, -1))
        boxes[penalty] = p.box
    assert box_iou(boxes[0.0], mask_to_box(shadow)) > 0.6  # without the penalty: the big shadow
    assert box_iou(boxes[100.0], mask_to_box(lesion)) > 0.6  # with it: the lesion above the shadow
    assert CandidatePromptStrategy().selector.shadow_penalty == 2.0  # busi-v1's (mask-tuned, its provenance says)
    with pytest.raises(ConfigError, match="shadow_penalty"):
        CandidatePromptStrategy(shadow_penalty=-1)


def test_strategy_matches_the_public_functions_step_by_step() -> None:
    """The strategy prepares the image once and shares it between its stages; the result must be the
    one the public functions give when each recomputes everything from the image."""
    from samprompt.prompts.candidates import refine_candidates, under_smaller_region

    img, lesion = _scene(5)
    rgb = np.stack([img] * 3, -1)
    cam = np.zeros(lesion.shape, np.float32)
    strat = CandidatePromptStrategy()
    region, score = strat.choose(rgb, cam)

    cands = propose_candidates(rgb)
    scores = strat.scorer(candidate_features(rgb, cands, cam))
    _, full, F = refine_candidates(rgb, cands, scores, top_k=strat.params.refine_top_k)
    s2 = strat.refine_scorer(F) - strat.selector.shadow_penalty * under_smaller_region([mask_to_box(m) for m in full])
    i = int(np.argmax(s2))
    assert score == pytest.approx(float(s2[i]), abs=0) and np.array_equal(region, full[i])
    assert box_iou(mask_to_box(region), mask_to_box(lesion)) > 0.7


@given(st.integers(0, 2**32 - 1), st.integers(8, 40), st.integers(8, 40), st.integers(1, 6))
@settings(max_examples=60, deadline=None)
def test_cropped_fill_and_ring_equal_the_whole_image_operations(seed: int, h: int, w: int, it: int) -> None:
    from scipy import ndimage as ndi

    from samprompt.prompts.candidate_regions import _fill_holes, _ring

    rng = np.random.default_rng(seed)
    m = ndi.binary_dilation(rng.random((h, w)) < 0.08, iterations=1)  # blobs, some touching the border
    m[rng.integers(h), rng.integers(w)] = True  # never empty
    assert np.array_equal(_fill_holes(m), ndi.binary_fill_holes(m))
    assert np.array_equal(_ring(m, it), ndi.binary_dilation(m, iterations=it) & ~m)


@given(st.integers(0, 2**32 - 1), st.integers(20, 300), st.integers(20, 300), st.integers(8, 64), st.integers(8, 64))
@settings(max_examples=60, deadline=None)
def test_shrunk_mask_equals_the_anti_aliased_resize(seed: int, H: int, W: int, h: int, w: int) -> None:
    from skimage.transform import resize

    from samprompt.prompts.candidate_regions import _shrink_mask

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    cy, cx = rng.uniform(0, H), rng.uniform(0, W)  # anywhere, also at the border
    m = ((yy - cy) / rng.uniform(2, H / 2)) ** 2 + ((xx - cx) / rng.uniform(2, W / 2)) ** 2 <= 1
    expected = resize(m.astype(np.float32), (h, w), order=1) > 0.5 if m.any() else np.zeros((h, w), bool)
    assert np.array_equal(_shrink_mask(m, (h, w)), expected)
