"""Fitting a scorer from image labels on synthetic scenes: the right polarity and region, no masks."""

from __future__ import annotations

from pathlib import Path

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


def test_fit_without_a_negative_class_can_keep_a_prior_and_fit_the_polarity_only() -> None:
    """``prior``: the weights are the prior file's, the polarity is chosen from the evidence (here bright,
    while busi-v1's own polarity is dark); its shadow penalty and agreement weight are not carried."""
    from samprompt.proposals.scorer import load_scorer

    prior = load_scorer("busi-v1")
    pairs = [scene("bright", s) for s in range(10)]
    sf = fit_scorer([p[0] for p in pairs], [True] * 10, cams=LocalisingCam(pairs), selector=SMALL, prior=prior)
    assert sf.polarity == "bright" and prior.polarity == "dark"
    for a, b in ((sf.stage1, prior.stage1), (sf.stage2, prior.stage2)):
        assert np.array_equal(a.weights, b.weights) and np.array_equal(a.mean, b.mean)
        assert np.array_equal(a.scale, b.scale) and a.weights is not b.weights
    assert sf.shadow_penalty == 0.0 and sf.agreement_weight is None and sf.provenance["mask_tuned"] == []
    assert sf.provenance["prior"]["name"] == "busi-v1" and "weights from the prior" in sf.provenance["fit"]["method"]
    # even a CAM on nothing (no evidence to learn weights from) still gives the polarity with a prior
    sf2 = fit_scorer([p[0] for p in pairs], [True] * 10, cams=LocalisingCam([]), selector=SMALL, prior=prior,
                     polarity="bright")
    assert sf2.polarity == "bright" and np.array_equal(sf2.stage1.weights, prior.stage1.weights)
    # with a negative class the prior is ignored: every weight is fit from the labels
    neg = [scene("bright", 100 + s, lesion=False) for s in range(8)]
    sf3 = fit_scorer([p[0] for p in pairs + neg], [True] * 10 + [False] * 8, selector=SMALL, prior=prior)
    assert not np.array_equal(sf3.stage1.weights, prior.stage1.weights) and "prior" not in sf3.provenance


def test_fit_prior_is_checked_at_the_door(tmp_path: Path) -> None:
    from samprompt.errors import ConfigError
    from samprompt.runner import load_run_config

    base = {"data": {"path": str(tmp_path)}, "classifier": {"task": "multiclass"},
            "pipeline": {"prompts": [{"name": "candidates", "params": {"scorer": "fit"}}]}}
    fit = load_run_config({**base, "fit": {"prior": "busi-v1"}}).fit
    assert fit is not None and fit.prior == "busi-v1"
    with pytest.raises(ConfigError, match=r"fit\.prior.*'busi-v2' is neither a shipped scorer"):
        load_run_config({**base, "fit": {"prior": "busi-v2"}})


def _two_blobs(seed: int, lesion: bool, H: int = 96, W: int = 128) -> np.ndarray:
    """Lesion images with a dark AND a bright blob (either polarity explains the labels), negatives with none."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    img = 128 + 10 * rng.standard_normal((H, W))
    if lesion:
        for val, cx in ((48, rng.uniform(25, 50)), (208, rng.uniform(80, 105))):
            m = ((xx - cx) / 12) ** 2 + ((yy - rng.uniform(30, 66)) / 9) ** 2 <= 1
            img[m] = val + 8 * rng.standard_normal(int(m.sum()))
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def test_the_polarity_choice_says_how_sure_it_is(caplog: pytest.LogCaptureFixture) -> None:
    """``polarity_margin``: the chosen polarity's score minus the runner-up's with a resampled 95 % interval;
    a tie (both polarities explain the labels) is flagged uncertain with a warning, and the MIL fit then uses
    both polarities; a clear case is not flagged."""
    imgs = [_two_blobs(s, True) for s in range(10)] + [_two_blobs(100 + s, False) for s in range(10)]
    with caplog.at_level("WARNING", logger="samprompt.proposals.fit"):
        sf = fit_scorer(imgs, [True] * 10 + [False] * 10, selector=SMALL)
    m = sf.provenance["fit"]["polarity_margin"]
    assert m["certain"] is False and m["interval"][0] < 0 < m["interval"][1]
    assert sf.polarity == "both" and {m["by_score"], m["runner_up"]} == {"dark", "bright"}
    assert m["both_score"] > sf.provenance["fit"]["polarity_scores"][m["by_score"]]  # it won by the same score
    assert "do not decide between dark and bright" in caplog.text and "set the fit's polarity" in caplog.text
    # a lesion image of this data holds a dark and a bright blob: the fitted scorer chooses one of them
    for seed in (500, 501):
        image = _two_blobs(seed, True)
        grey = image[..., 0].astype(float)
        region, _ = selector_from_scorer(sf, **SMALL).choose(image)
        assert region is not None
        covered = sorted(float((region & blob).sum() / blob.sum()) for blob in (grey < 90, grey > 170))
        assert covered[0] == 0.0 and covered[1] > 0.9, covered  # all of one blob (48 or 208), none of the other
    pairs = [scene("bright", s) for s in range(10)] + [scene("bright", 100 + s, lesion=False) for s in range(8)]
    clear = fit_scorer([p[0] for p in pairs], [True] * 10 + [False] * 8, selector=SMALL)
    m = clear.provenance["fit"]["polarity_margin"]
    assert clear.polarity == "bright" and m["runner_up"] == "dark" and m["certain"] is True
    assert m["interval"][0] > 0 and m["difference"] == pytest.approx(
        clear.provenance["fit"]["polarity_scores"]["bright"] - clear.provenance["fit"]["polarity_scores"]["dark"])
    fixed = fit_scorer([p[0] for p in pairs], [True] * 10 + [False] * 8, selector=SMALL, polarity="bright")
    assert fixed.provenance["fit"]["polarity_margin"] is None  # nothing was chosen


def test_an_uncertain_choice_keeps_its_polarity_when_a_model_of_both_scores_lower(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The model of both polarities competes by the same held-out score: on the two-blob data it wins
    (above); made to score lower, the fit keeps the polarity the scores chose and only warns."""
    import samprompt.proposals.fit as fit_module

    real = fit_module._polarity_score
    calls: list[int] = []

    def lower_for_both(regions, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        score, values, l2 = real(regions, *args, **kwargs)
        return (score - 10.0 if len(calls) == 3 else score), values, l2  # 3rd call: the pooled bags

    monkeypatch.setattr(fit_module, "_polarity_score", lower_for_both)
    imgs = [_two_blobs(s, True) for s in range(10)] + [_two_blobs(100 + s, False) for s in range(10)]
    with caplog.at_level("WARNING", logger="samprompt.proposals.fit"):
        sf = fit_scorer(imgs, [True] * 10 + [False] * 10, selector=SMALL)
    m = sf.provenance["fit"]["polarity_margin"]
    assert len(calls) == 3 and m["certain"] is False
    scores = sf.provenance["fit"]["polarity_scores"]
    assert sf.polarity == max(("dark", "bright"), key=lambda p: scores[p]) and "by_score" not in m
    assert m["both_score"] < scores[sf.polarity]
    assert "is uncertain" in caplog.text and "fitting on both" not in caplog.text
