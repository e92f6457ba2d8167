"""The weight-free ``classical`` segmenter (polar contour search) on synthetic ultrasound-like images."""

from __future__ import annotations

import numpy as np
import pytest

from samprompt.metrics import dice
from samprompt.prompts.base import Prompt
from samprompt.regions import ellipse_in_box, mask_to_box
from samprompt.segmenters import SEGMENTERS
from samprompt.segmenters.classical import ClassicalSegmenter
from samprompt.segmenters.classical_polar import PolarParams, polar_contour


def _scene(shape: str = "rect", seed: int = 0, H: int = 240, W: int = 320):
    """Bright speckled background with one dark lesion; returns (uint8 image, bool mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    cy, cx, ry, rx = H * 0.5, W * 0.45, H * 0.22, W * 0.2
    u, v = (xx - cx) / rx, (yy - cy) / ry
    if shape == "rect":  # a rounded rectangle: the ellipse misses its corners
        mask = np.abs(u) ** 6 + np.abs(v) ** 6 <= 1
    elif shape == "lobed":  # a lobulated outline: the ellipse overshoots between lobes
        ang, rad = np.arctan2(v, u), np.hypot(u, v)
        mask = rad <= 0.8 + 0.2 * np.cos(3 * ang)
    else:
        mask = u**2 + v**2 <= 1
    img = 170 + 25 * rng.standard_normal((H, W))
    img[mask] = 60 + 20 * rng.standard_normal(mask.sum())
    return np.clip(img, 0, 255).astype(np.uint8), mask


@pytest.mark.parametrize("shape", ["rect", "lobed"])
def test_box_prompt_beats_the_ellipse_prior(shape: str) -> None:
    img, gt = _scene(shape)
    box = mask_to_box(gt)
    seg = ClassicalSegmenter()
    out = seg.segment(img, [Prompt(box=box)])
    ell = dice(ellipse_in_box(box, *gt.shape), gt)
    got = dice(out.masks[0], gt)
    assert got > ell + 0.02, (got, ell)
    assert got > 0.9
    assert 0.0 <= out.scores[0] <= 1.0


def test_tight_box_mask_stays_inside_and_touches_every_side() -> None:
    img, gt = _scene("lobed", seed=3)
    box = mask_to_box(gt)
    m = ClassicalSegmenter().segment(img, [Prompt(box=box)]).masks[0]
    got = mask_to_box(m)
    assert got is not None
    assert np.all(np.abs(got - box) <= 2.0), (got, box)
    loose = ClassicalSegmenter(stretch_to_box=False).segment(img, [Prompt(box=box)]).masks[0]
    x0, y0 = (int(v) for v in box[:2])
    assert not loose[:, : max(0, x0 - 1)].any() and not loose[: max(0, y0 - 1)].any()


def test_points_only_grows_a_bounded_region() -> None:
    img, gt = _scene("ellipse", seed=1)
    ys, xs = np.nonzero(gt)
    pt = np.array([[xs.mean() + 0.5, ys.mean() + 0.5]], np.float32)
    m = ClassicalSegmenter().segment(img, [Prompt(points=pt, point_labels=[1])]).masks[0]
    assert dice(m, gt) > 0.75
    assert m[int(pt[0, 1]), int(pt[0, 0])]
    # a point on plain background: the region stays small (bounded), never the whole image
    flat = np.full((120, 160), 150, np.uint8)
    m2 = ClassicalSegmenter().segment(flat, [Prompt(points=[[80.5, 60.5]], point_labels=[1])]).masks[0]
    assert m2[60, 80] and m2.mean() < 0.5


def test_point_constraints_are_respected() -> None:
    img, gt = _scene("ellipse", seed=2)
    box = mask_to_box(gt)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    neg = [cx + 0.5 * (box[2] - cx), cy]
    m = ClassicalSegmenter().segment(img, [Prompt(box=box, points=[neg], point_labels=[0])]).masks[0]
    assert not m[int(neg[1]), int(neg[0])]
    corner = [box[0] + 0.12 * (box[2] - box[0]), box[1] + 0.12 * (box[3] - box[1])]
    m = ClassicalSegmenter().segment(img, [Prompt(box=box, points=[corner], point_labels=[1])]).masks[0]
    assert m[int(corner[1]), int(corner[0])]


def test_mask_logits_only_and_several_prompts_in_one_call() -> None:
    img, gt = _scene("rect", seed=4)
    logits = np.where(gt, 4.0, -4.0).astype(np.float32)
    prompts = [Prompt(mask_logits=logits), Prompt(box=mask_to_box(gt)), Prompt(box=[10, 10, 10.5, 10.5])]
    seg = SEGMENTERS.create("classical", {})
    out = seg.decode(seg.embed(img), prompts)
    assert out.masks.shape == (3, *gt.shape) and out.scores.shape == (3,)
    assert dice(out.masks[0], gt) > 0.85
    assert not out.masks[2].any() and out.scores[2] == 0.0


def test_random_walker_method_still_available() -> None:
    img, gt = _scene("ellipse")
    seg = ClassicalSegmenter(method="random_walker", beta=100, prior_weight=0.7)
    m = seg.segment(img, [Prompt(box=mask_to_box(gt))]).masks[0]
    assert dice(m, gt) > 0.8


def test_params_are_validated() -> None:
    from samprompt.errors import ConfigError

    with pytest.raises(ConfigError, match="classical.params.w_prior"):
        ClassicalSegmenter(w_prior=-1)
    with pytest.raises(ConfigError, match="classical.params.method"):
        ClassicalSegmenter(method="graphcut")


def test_polar_contour_uniform_image_returns_the_ellipse() -> None:
    img = np.full((64, 64), 0.5, np.float32)
    xs, ys, score = polar_contour(img, (32.0, 32.0), (10.0, 20.0), PolarParams(), box=np.array([22, 12, 42, 52.0]))
    r = np.hypot((xs - 32) / 10, (ys - 32) / 20)
    assert np.all(np.abs(r - 1) < 0.05)
    assert 0.0 <= score <= 1.0


def test_dp_ring_finds_the_cheapest_path_with_bounded_steps() -> None:
    """The contour's dynamic programme against brute force over every path of small (A, R) grids."""
    import itertools

    from samprompt.segmenters.classical_polar import _dp_ring

    rng = np.random.default_rng(5)
    for t in range(60):
        A, R = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        cost = rng.random((A, R))
        w_smooth, max_step = float(rng.choice([0.0, 0.3, 1.0])), int(rng.integers(0, 3))
        path = _dp_ring(cost, w_smooth, max_step)

        def total(p, cost=cost, w_smooth=w_smooth):  # type: ignore[no-untyped-def]
            return sum(cost[a, r] for a, r in enumerate(p)) + w_smooth * sum(abs(p[a] - p[a - 1]) for a in range(1, len(p)))

        allowed = [p for p in itertools.product(range(R), repeat=A)
                   if all(abs(p[a] - p[a - 1]) <= max_step for a in range(1, A))]
        assert path.shape == (A,) and all(abs(int(path[a]) - int(path[a - 1])) <= max_step for a in range(1, A))
        assert total(path.tolist()) == pytest.approx(min(total(p) for p in allowed), abs=1e-12), t


@pytest.mark.parametrize("shape", ["rect", "lobed"])
def test_bright_polarity_segments_a_bright_lesion_like_dark_does_a_dark_one(shape: str) -> None:
    img, gt = _scene(shape)
    bright = 255 - img  # the same scene, intensity-inverted: a bright lesion
    box = mask_to_box(gt)
    ell = dice(ellipse_in_box(box, *gt.shape), gt)
    dark_on_dark = dice(ClassicalSegmenter().segment(img, [Prompt(box=box)]).masks[0], gt)
    bright_on_bright = dice(ClassicalSegmenter(polarity="bright").segment(bright, [Prompt(box=box)]).masks[0], gt)
    assert bright_on_bright == pytest.approx(dark_on_dark, abs=0.02) and bright_on_bright > ell + 0.02
    seg = ClassicalSegmenter(polarity="auto")
    for image, want in ((img, False), (bright, True)):
        emb = seg.embed(image)
        assert seg.bright_inside(emb.data, Prompt(box=box)) is want
        assert seg.bright_inside(emb.data, Prompt(points=np.array([[box[0] + box[2], box[1] + box[3]]]) / 2,
                                                  point_labels=np.array([1]))) is want
        assert dice(seg.decode(emb, [Prompt(box=box)]).masks[0], gt) == pytest.approx(dark_on_dark, abs=0.02)
    assert ClassicalSegmenter().params.polarity == "dark"
