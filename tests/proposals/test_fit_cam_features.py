"""The fit computes the CAM features exactly as the ``candidates`` strategy will at run time: on the CAM it
is handed (not on the flip-averaged evidence map), for the candidates (stage 1) and for the refined regions
(stage 2) alike."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import ndimage as ndi

from samprompt.errors import ConfigError
from samprompt.proposals._fit_models import _instances, _mil
from samprompt.proposals._fit_work import _pass1, _refined, _selector
from samprompt.proposals.features import CAM_FEATURES, FEATURE_NAMES, REFINED_FEATURE_NAMES, features_of
from samprompt.proposals.fit import fit_scorer
from samprompt.proposals.scorer import CandidateScorer, load_scorer
from samprompt.proposals.select import ProposalSelector

from .scenes import LocalisingCam, scene

SMALL = {"work_size": 64}
CAMS = list(CAM_FEATURES)


def _lopsided_cam(mask: NDArray[np.bool_]) -> NDArray[np.float32]:
    """A CAM on the lesion plus a ramp rising to the right: its mirror is a different map."""
    w = mask.shape[1]
    cam = ndi.gaussian_filter(mask.astype(np.float32), 4) + np.linspace(0.0, 0.6, w, dtype=np.float32)[None, :]
    return (cam / cam.max()).astype(np.float32)


def _scorers() -> tuple[CandidateScorer, CandidateScorer]:
    w1 = np.zeros(len(FEATURE_NAMES))
    w1[FEATURE_NAMES.index("contrast")] = -1.0
    w1[FEATURE_NAMES.index("cam_mean")] = 2.0
    w2 = np.zeros(len(REFINED_FEATURE_NAMES))
    w2[REFINED_FEATURE_NAMES.index("stage1_score")] = 1.0
    w2[REFINED_FEATURE_NAMES.index("cam_mass")] = 3.0
    return CandidateScorer(w1), CandidateScorer(w2, names=REFINED_FEATURE_NAMES)


def test_fit_features_are_the_strategys_features() -> None:
    image, mask = scene("dark", 3)
    cam = _lopsided_cam(mask)
    averaged = ((cam + cam[:, ::-1]) / 2).astype(np.float32)
    recs = _pass1(SMALL, ["dark"], image, cam, averaged)
    rec = recs["dark"]
    assert rec is not None and rec.evidence is not None
    # stage 1: what the strategy's selector computes from the same CAM
    stage1, stage2 = _scorers()
    sel = ProposalSelector(stage1, stage2, **SMALL)
    work, cands = sel.propose(image, "dark")
    want = features_of(work, cands, cam)
    np.testing.assert_array_equal(rec.F, want)
    assert np.abs(features_of(work, cands, averaged)[:, CAMS] - want[:, CAMS]).max() > 1e-3  # the test can fail
    # stage 2: the refined regions' features, CAM columns filled, equal the strategy's
    r = _refined(_selector(SMALL), stage1, image, recs, None, ["dark"], uses_cam=True)
    assert r is not None
    scores = sel.score1(work, cands, cam)
    full, F = sel.refine(work, cands, scores, cam)
    np.testing.assert_allclose(r.F, F, rtol=0, atol=1e-12)
    assert np.all(F[:, REFINED_FEATURE_NAMES.index("cam_max")] > 0)
    assert len(full) == len(r.boxes)


def test_the_strategy_reads_the_cam_in_stage_2_only_when_weighted() -> None:
    image, mask = scene("dark", 4)
    cam = _lopsided_cam(mask)
    stage1, stage2 = _scorers()
    sel = ProposalSelector(stage1, stage2, **SMALL)
    assert sel.uses_cam(1) and sel.uses_cam(2)
    work, cands = sel.propose(image, "dark")
    scores = sel.score1(work, cands, cam)
    _, with_cam = sel.refine(work, cands, scores, cam)
    _, without = sel.refine(work, cands, scores, None)
    assert np.all(with_cam[:, CAMS[1]] > 0) and np.all(without[:, CAMS] == 0)
    shipped = load_scorer("busi-v1")
    busi = ProposalSelector(shipped.stage1, shipped.stage2, **SMALL)
    assert not busi.uses_cam(2)  # busi-v1's stage 2 has no CAM weight: its results do not change
    _, F = busi.refine(work, cands, scores, cam)
    assert np.all(F[:, CAMS] == 0)


def test_with_a_negative_class_the_fit_asks_one_cam_per_image_or_none() -> None:
    pos = [scene("dark", s) for s in range(8)]
    neg = [scene("dark", 100 + s, lesion=False)[0] for s in range(8)]
    cams = LocalisingCam(pos)
    sf = fit_scorer([p[0] for p in pos] + neg, [True] * 8 + [False] * 8, cams=cams, selector=SMALL, polarity="dark",
                    cam_features=True)
    assert cams.calls == 16  # no mirrors: the CAM features use the CAM as the strategy will see it
    assert np.any(sf.stage1.weights[CAMS] != 0) and sf.provenance["fit"]["cam_features"]
    off = LocalisingCam(pos)  # by default the CAM features are not fitted: with a negative class, no CAM at all
    sf = fit_scorer([p[0] for p in pos] + neg, [True] * 8 + [False] * 8, cams=off, selector=SMALL, polarity="dark")
    assert off.calls == 0 and np.all(sf.stage1.weights[CAMS] == 0) and np.all(sf.stage2.weights[CAMS] == 0)
    no_neg = LocalisingCam(pos)
    sf = fit_scorer([p[0] for p in pos], [True] * 8, cams=no_neg, selector=SMALL, polarity="dark")
    assert no_neg.calls == 16  # each image and its mirror: the evidence map is flip-averaged (the teacher)
    assert np.all(sf.stage1.weights[CAMS] == 0)  # ... but no CAM feature is fitted
    with pytest.raises(ConfigError, match="cam_features"):
        fit_scorer([p[0] for p in pos] + neg, [True] * 8 + [False] * 8, selector=SMALL, cam_features=True)


def test_cam_weights_are_never_negative() -> None:
    """Negative images whose CAM is high and lesion images whose lesion region has a LOW CAM: unbounded,
    the labels are best explained by a negative CAM weight; bounded, it is 0 and the appearance feature
    (``contrast``, high on the lesion region) carries the fit."""
    rng = np.random.default_rng(0)
    n_feat = len(FEATURE_NAMES)
    c, cam = FEATURE_NAMES.index("contrast"), FEATURE_NAMES.index("cam_mean")
    bags, y = [], []
    for k in range(40):
        lesion = k < 20
        X = rng.normal(0.0, 0.3, (5, n_feat))
        X[:, 0] = 1.0
        X[:, cam] = 0.9 if not lesion else 0.2
        if lesion:
            X[0, c] += 2.0  # the lesion region
        bags.append(X)
        y.append(lesion)
    m = _mil(bags, np.array(y), 1e-2)
    assert m.weights[c] > 0.5
    assert np.all(m.weights[CAMS] >= 0) and m.weights[cam] == 0.0
    inst = _instances(np.concatenate(bags), np.repeat(np.array(y), 5), 1e-2)
    assert np.all(inst.weights[CAMS] >= 0) and inst.weights[cam] == 0.0
