"""Fitting a scorer from image labels on synthetic scenes: the right polarity and region, no masks."""

from __future__ import annotations

import numpy as np
import pytest

from samprompt.errors import DataError
from samprompt.proposals.fit import fit_scorer
from samprompt.proposals.select import selector_from_scorer
from samprompt.regions import box_iou, mask_to_box

from .scenes import LocalisingCam, scene

SMALL = {"work_size": 96}


def _check_choices(sf, kind: str, with_cam: bool) -> None:
    test = [scene(kind, 500 + s) for s in range(6)]
    cam = LocalisingCam(test) if with_cam else None
    sel = selector_from_scorer(sf, **SMALL)
    ious = []
    for img, m in test:
        region, _ = sel.choose(img, None if cam is None else cam([img])[0])
        assert region is not None
        b, g = mask_to_box(region), mask_to_box(m)
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        # on the lesion (its centre in the lesion's box), not on a distractor
        assert g[0] <= cx <= g[2] and g[1] <= cy <= g[3] and box_iou(b, g) > 0.3, (kind, b, g)
        ious.append(box_iou(b, g))
    assert np.mean(ious) > 0.5, ious


@pytest.mark.parametrize("kind", ["bright", "colour"])
def test_fit_with_a_negative_class_picks_the_polarity_and_the_lesion(kind: str) -> None:
    pos = [scene(kind, s)[0] for s in range(10)]
    neg = [scene(kind, 100 + s, lesion=False)[0] for s in range(8)]
    sf = fit_scorer(pos + neg, [True] * 10 + [False] * 8, selector=SMALL, provenance={"seed": 0})
    assert sf.polarity == kind
    fit = sf.provenance["fit"]
    assert fit["negative_images"] == 8 and fit["masks_used"] is False and sf.provenance["seed"] == 0
    assert sf.shadow_penalty == 0.0 and sf.provenance["mask_tuned"] == []
    _check_choices(sf, kind, with_cam=False)


@pytest.mark.parametrize("kind", ["bright", "dark", "colour"])
def test_fit_without_a_negative_class_follows_the_classifier_evidence(kind: str) -> None:
    pairs = [scene(kind, s) for s in range(10)]
    cam = LocalisingCam(pairs)
    sf = fit_scorer([p[0] for p in pairs], [True] * 10, cams=cam, selector=SMALL)
    assert sf.polarity == kind
    assert cam.calls == 20  # each image and its mirror, once
    scores = sf.provenance["fit"]["polarity_scores"]
    assert scores[kind] == max(scores.values())
    _check_choices(sf, kind, with_cam=True)


def test_fit_with_a_cam_on_nothing_refuses() -> None:
    pairs = [scene("bright", s) for s in range(8)]
    with pytest.raises(DataError, match="not concentrated"):
        fit_scorer([p[0] for p in pairs], [True] * 8, cams=LocalisingCam([]), selector=SMALL, polarity="bright")


def test_too_few_images_say_how_many_are_needed() -> None:
    imgs = [scene("dark", s)[0] for s in range(5)]
    with pytest.raises(DataError, match="at least 8 lesion images, got 5"):
        fit_scorer(imgs, [True] * 5, cams=LocalisingCam([]))
    imgs = [scene("dark", s)[0] for s in range(11)]
    with pytest.raises(DataError, match="at least 8 images of the negative class, got 3"):
        fit_scorer(imgs, [True] * 8 + [False] * 3)
    with pytest.raises(DataError, match="needs the classifier's CAMs"):
        fit_scorer(imgs, [True] * 11)
    with pytest.raises(ValueError, match="11 images but 2 labels"):
        fit_scorer(imgs, [True, False])
