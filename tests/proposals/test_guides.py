"""Guide masks for a classifier's training from a label-only scorer (issue 19): on the lesion, packed,
the same with worker processes, and refused when the scorer reads a CAM."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from samprompt.errors import ConfigError
from samprompt.proposals import PackedMask, guide_masks
from samprompt.proposals.features import CAM_FEATURES
from samprompt.proposals.fit import fit_scorer
from samprompt.proposals.select import selector_from_scorer
from samprompt.regions import box_iou, mask_to_box

from .scenes import scene

SMALL = {"work_size": 96}


def test_packed_mask_gives_the_mask_back() -> None:
    rng = np.random.default_rng(0)
    m = np.zeros((37, 53), bool)
    m[5:20, 11:40] = rng.random((15, 29)) > 0.4
    p = PackedMask(m)
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    assert p.shape == (37, 53) and p.box == (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
    np.testing.assert_array_equal(p(), m)
    assert p._bits.nbytes <= (15 * 29) // 8 + 1
    with pytest.raises(ValueError, match="non-empty"):
        PackedMask(np.zeros((4, 4), bool))


def test_guides_lie_on_the_lesions_of_the_lesion_images_only() -> None:
    # a labels-only fit (MIL: bright lesions against lesion-free images), no classifier
    images = [scene("bright", s)[0] for s in range(10)] + [scene("bright", 100 + s, lesion=False)[0] for s in range(8)]
    sf = fit_scorer(images, [True] * 10 + [False] * 8, selector=SMALL)
    assert sf.polarity == "bright"
    new = [scene("bright", 500 + s) for s in range(4)] + [scene("bright", 600, lesion=False)]
    got = guide_masks([p[0] for p in new], sf, [True] * 4 + [False], settings=SMALL)
    assert got[4] is None
    for g, (_, truth) in zip(got[:4], new[:4], strict=True):
        assert g is not None
        m = g()
        assert m.shape == truth.shape and m.dtype == bool
        assert box_iou(mask_to_box(m), mask_to_box(truth)) > 0.5
    same = guide_masks([p[0] for p in new[:2]], sf, workers=1, settings=SMALL)  # in a worker process
    for a, b in zip(same, got[:2], strict=True):
        assert a is not None and b is not None
        np.testing.assert_array_equal(a(), b())
    with pytest.raises(ConfigError, match="5 images but 2 use flags"):
        guide_masks([p[0] for p in new], sf, [True, False])
    reads_cam = copy.deepcopy(sf)
    reads_cam.stage1.weights[CAM_FEATURES[0]] = 0.5  # an index into FEATURE_NAMES
    with pytest.raises(ConfigError, match="fit the scorer without cam_features"):
        guide_masks([new[0][0]], reads_cam)


def test_keep_leaves_the_guides_of_the_most_confident_choices() -> None:
    images = [scene("bright", s)[0] for s in range(10)] + [scene("bright", 100 + s, lesion=False)[0] for s in range(8)]
    sf = fit_scorer(images, [True] * 10 + [False] * 8, selector=SMALL)
    # four lesion images, and a lesion-free one whose region the scorer trusts least
    new = [scene("bright", 700 + s)[0] for s in range(4)] + [scene("bright", 800, lesion=False)[0]]
    scores = [selector_from_scorer(sf, **SMALL).choose(im)[1] for im in new]
    assert int(np.argmin(scores)) == 4
    every = guide_masks(new, sf, settings=SMALL)
    kept = guide_masks(new, sf, settings=SMALL, keep=0.5)
    top = set(np.argsort(scores)[::-1][:3].tolist())  # ceil(0.5 * 5) = 3
    assert {k for k, g in enumerate(kept) if g is not None} == top
    for k in top:
        np.testing.assert_array_equal(kept[k](), every[k]())  # type: ignore[misc]
    assert sum(g is not None for g in guide_masks(new, sf, settings=SMALL, keep=0.2)) == 1
    with pytest.raises(ConfigError, match=r"keep must be in \(0, 1\], got 0.0"):
        guide_masks(new, sf, keep=0.0)
