"""The CAM counts (issue 15, item 4): with a CAM that localises, the fitted choice follows it.

Every scene holds TWO dark blobs drawn alike (same size range, same grey level, same noise): appearance
cannot tell the lesion from the distractor. Lesion images have one lesion blob and one distractor; the
negative class has two distractors. The CAM is a stand-in for a classifier that localises
(``LocalisingCam`` of ``tests/proposals/scenes.py``: the lesion mask blurred; all zero for a negative
image). So the image labels are explained by the CAM and by nothing else, and a fit that uses the CAM
must learn to follow it: on new scenes the choice lands on the CAM-marked blob, moves to the other blob
when the CAM marks that one instead, and is much worse when the CAMs are shuffled across scenes.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import ndimage as ndi

from samprompt.proposals import FEATURE_NAMES
from samprompt.proposals.fit import fit_scorer
from samprompt.proposals.scorer import ScorerFile
from samprompt.proposals.select import selector_from_scorer
from samprompt.regions import box_iou, mask_to_box

from .scenes import LocalisingCam, scene

SMALL = {"work_size": 96}
Scene = tuple[NDArray[np.uint8], NDArray[np.bool_], NDArray[np.bool_]]


def two_blobs(seed: int, lesion: bool = True) -> Scene:
    """A dark-lesion :func:`scene` with a second dark blob drawn like the lesion. Returns (RGB image, mask
    of the lesion (a distractor when ``lesion`` is False), mask of the other blob)."""
    img, first = scene("dark", seed)  # the first blob: the lesion (or, for a negative, a distractor)
    img = img.copy()
    H, W = first.shape
    rng = np.random.default_rng(10_000 + seed)
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    bright = ndi.binary_dilation(img[..., 0] > 170, iterations=6)  # scene's bright distractor
    busy = ndi.binary_dilation(first, iterations=8) | bright
    for _ in range(1000):
        cx, cy = rng.uniform(22, W - 22), rng.uniform(25, H - 35)
        other = ((xx - cx) / rng.uniform(10, 16)) ** 2 + ((yy - cy) / rng.uniform(8, 12)) ** 2 <= 1
        if not (other & busy).any():
            break
    else:
        raise ValueError(f"no room for a second blob in scene {seed}")
    img[other] = np.clip(45 + 8 * rng.standard_normal((int(other.sum()), 1)), 0, 255).astype(np.uint8)
    return img, first, other


def _fit(train: list[Scene], negatives: list[Scene]) -> ScorerFile:
    # a negative image's CAM is all zero (its empty lesion mask blurred: the classifier sees no lesion)
    cam = LocalisingCam([(img, m) for img, m, _ in train] + [(img, np.zeros_like(m)) for img, m, _ in negatives])
    images = [s[0] for s in train] + [s[0] for s in negatives]
    return fit_scorer(images, [True] * len(train) + [False] * len(negatives), cams=cam, cam_features=True, polarity="dark",
                      selector=SMALL)


@pytest.fixture(scope="module")
def fitted() -> ScorerFile:
    return _fit([two_blobs(s) for s in range(10)], [two_blobs(200 + s, lesion=False) for s in range(8)])


def _hits(sf: ScorerFile, scenes: list[Scene], cam_masks: list[NDArray[np.bool_]], target: int) -> int:
    """How many scenes' chosen region lies on blob ``target`` (1 = the lesion, 2 = the other blob), with
    each scene's CAM made from ``cam_masks``: the chosen box's centre is in the blob's box, box IoU > 0.3."""
    sel = selector_from_scorer(sf, **SMALL)
    cams = LocalisingCam([(img, m) for (img, _, _), m in zip(scenes, cam_masks)])
    n = 0
    for img, lesion, other in scenes:
        region, _ = sel.choose(img, cams([img])[0])
        assert region is not None
        b, g = mask_to_box(region), mask_to_box(lesion if target == 1 else other)
        assert b is not None and g is not None
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        n += int(g[0] <= cx <= g[2] and g[1] <= cy <= g[3] and box_iou(b, g) > 0.3)
    return n


def test_the_fit_weighs_the_cam(fitted: ScorerFile) -> None:
    fit = fitted.provenance["fit"]
    assert fit["negative_images"] == 8 and fit["masks_used"] is False
    w = {n: fitted.stage1.weights[FEATURE_NAMES.index(n)] for n in ("cam_mean", "cam_max", "cam_mass", "cam_rank")}
    assert fit["cam_weight_norm"] > 0.5, w
    assert w["cam_mean"] + w["cam_max"] > 0, w  # more CAM on a region = more lesion-like


def test_the_choice_follows_the_cam(fitted: ScorerFile) -> None:
    new = [two_blobs(500 + s) for s in range(6)]
    lesions = [s[1] for s in new]
    others = [s[2] for s in new]
    # the CAM marks the lesion: the choice is the lesion
    assert _hits(fitted, new, lesions, target=1) >= 5
    # the same images, the CAM marks the other blob: the choice moves there (a choice blind to the CAM
    # could not be right both times)
    assert _hits(fitted, new, others, target=2) >= 5
    # CAMs shuffled across the scenes (each marks where another scene's lesion is): markedly worse
    perm = [1, 2, 3, 4, 5, 0]
    assert _hits(fitted, new, [lesions[j] for j in perm], target=1) <= 3
