"""The per-image work of :func:`~samprompt.proposals.fit.fit_scorer` (private; run in worker processes too).

Pass 1 proposes every tried polarity's candidates of an image with their first-stage features (CAM
features from the CAM as the strategy will see it) and, without a negative class, their concentration of
the flip-averaged evidence map; pass 2 refines the best of them under the fitted first stage. The regions
are kept compactly (``_Proposed``) between the passes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from skimage.transform import resize

from samprompt.proposals.features import CAM_FEATURES, REFINED_FEATURE_NAMES, cam_at, features_of
from samprompt.proposals.refine import _refine
from samprompt.proposals.regions import Candidate, Work, grey_of
from samprompt.proposals.scorer import CandidateScorer
from samprompt.proposals.select import ProposalSelector
from samprompt.regions import mask_to_box

#: Per image: the CAM as ``cams`` gave it and (no negative class) the flip-averaged evidence map.
_Maps = tuple[NDArray[np.float32] | None, NDArray[np.float32] | None]


def _concentration(cam: NDArray[np.float64], masks: Sequence[NDArray[np.bool_]]) -> NDArray[np.float64]:
    """Mean CAM on each mask / mean CAM of the image (1 = no concentration)."""
    ref = float(cam.mean()) + 1e-6
    return np.array([float(cam[m].mean()) / ref if m.any() else 0.0 for m in masks])


def _erase(image: NDArray[np.uint8], region: NDArray[np.bool_]) -> NDArray[np.uint8]:
    """``image`` with ``region`` filled with the mean colour of a ring around it."""
    from scipy import ndimage as ndi

    grow = max(2, int(0.2 * np.sqrt(region.sum())))
    ring = ndi.binary_dilation(region, iterations=grow) & ~region
    out = image.copy()
    fill = image[ring].mean(axis=0) if ring.any() else image.reshape(-1, image.shape[-1]).mean(axis=0)
    out[region] = np.round(fill).astype(np.uint8)
    return out


class _Image:
    """One image's regions in one polarity: features, boxes and (without negatives) evidence."""

    def __init__(self, F: NDArray[np.float64], boxes: list[Any], evidence: NDArray[np.float64] | None) -> None:
        self.F, self.boxes, self.evidence = F, boxes, evidence


class _Proposed(_Image):
    """Pass 1's candidates of one image in one polarity, kept for pass 2 (which refines the best of
    them): features (with the CAM features when a CAM was given), boxes, evidence, the candidate
    masks packed compactly (the bits of each mask's bounding box) and the CAM at the working shape
    (float32, lossless: :func:`cam_at` resizes in float32), for the refined regions' CAM features."""

    def __init__(self, cands: Sequence[Candidate], F: NDArray[np.float64],
                 evidence: NDArray[np.float64] | None, cam_small: NDArray[np.float32] | None = None) -> None:
        super().__init__(F, [c.box() for c in cands], evidence)
        self.cam_small = cam_small  # shared by the image's polarities (kept, not copied)
        self.shape: tuple[int, int] = (int(cands[0].mask.shape[0]), int(cands[0].mask.shape[1]))
        self.scale = cands[0].scale
        self.hits = np.array([c.hits for c in cands], np.int64)
        frames, bits = [], []
        for c in cands:
            ys = np.flatnonzero(c.mask.any(axis=1))
            xs = np.flatnonzero(c.mask.any(axis=0))
            y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
            frames.append((y0, y1, x0, x1))
            bits.append(np.packbits(c.mask[y0:y1, x0:x1]))
        self.frames = np.array(frames, np.int32)
        self.offsets = np.cumsum([0] + [len(b) for b in bits])
        self.bits = np.concatenate(bits)

    def candidate(self, j: int) -> Candidate:
        """Candidate ``j``, as proposed."""
        y0, y1, x0, x1 = (int(v) for v in self.frames[j])
        crop = np.unpackbits(self.bits[self.offsets[j]:self.offsets[j + 1]], count=(y1 - y0) * (x1 - x0))
        mask = np.zeros(self.shape, bool)
        mask[y0:y1, x0:x1] = crop.reshape(y1 - y0, x1 - x0).astype(bool)
        return Candidate(mask=mask, scale=self.scale, hits=int(self.hits[j]))


# worker processes build their selector once per settings (see _selector)
_SELECTORS: dict[str, ProposalSelector] = {}


def _selector(settings: Mapping[str, Any]) -> ProposalSelector:
    key = repr(sorted(settings.items()))
    if key not in _SELECTORS:
        _SELECTORS.clear()
        _SELECTORS[key] = ProposalSelector(CandidateScorer(), CandidateScorer(names=REFINED_FEATURE_NAMES),
                                           **settings)
    return _SELECTORS[key]


def _is_colour(images: Sequence[Any]) -> bool:
    for k in range(min(4, len(images))):
        a = np.asarray(images[k])
        if a.ndim == 3 and a.shape[2] >= 3 and float(np.ptp(a[..., :3].astype(np.int16), axis=2).mean()) > 4:
            return True
    return False


def _work(settings: Mapping[str, Any], which: str, *args: Any) -> Any:
    """What a worker process (or this one) does for one image: :func:`_pass1` or :func:`_pass2`."""
    return (_pass1 if which == "pass1" else _pass2)(settings, *args)


def _pass1(settings: Mapping[str, Any], tries: Sequence[str], image: NDArray[Any],
           cam: NDArray[np.float32] | None, ev_map: NDArray[np.float32] | None) -> dict[str, _Proposed | None]:
    """One image's candidates and first-stage features (CAM features from ``cam``) in every tried polarity
    and, given an evidence map (no negative class), their concentration of it; each map is resized once
    for all polarities."""
    sel = _selector(settings)
    out: dict[str, _Proposed | None] = {}
    cam_small: NDArray[np.float64] | None = None
    kept: NDArray[np.float32] | None = None  # cam_small as pass 2 needs it: one copy for every polarity
    cam_ev: NDArray[np.float64] | None = None
    grey = grey_of(image)
    for p in tries:
        work, cands = sel.propose(image, p, grey)
        if not cands:
            out[p] = None
            continue
        if cam is not None and cam_small is None:
            cam_small = cam_at(cam, cands[0].mask.shape)
            kept = cam_small.astype(np.float32)
        F = features_of(work, cands, cam, cam_small=cam_small)
        ev = None
        if ev_map is not None:
            if cam_ev is None:
                cam_ev = resize(np.asarray(ev_map, np.float64), cands[0].mask.shape, order=1)
            ev = _concentration(cam_ev, [c.mask for c in cands])
        out[p] = _Proposed(cands, F, ev, kept)
    return out


def _erasure_evidence(image: NDArray[np.uint8], r: _Proposed, score: Callable[[Sequence[Any]], NDArray[np.float64]]) -> None:
    """Multiply the evidence of the 3 most CAM-evident candidates by ``1 + `` the classifier's score drop
    when each is erased (in place)."""
    ev = r.evidence
    if ev is None:
        return
    top = np.argsort(-ev)[:3]
    erased = [_erase(image, r.candidate(int(j)).full_mask(image.shape[:2])) for j in top]
    s = np.asarray(score([image, *erased]), np.float64)
    drop = np.clip((s[0] - s[1:]) / max(float(s[0]), 1e-6), 0.0, 1.0)
    ev[top] = ev[top] * (1.0 + drop)


def _pass2(settings: Mapping[str, Any], stage1: CandidateScorer, chosen: Sequence[str], fallback: Sequence[str],
           uses_cam: bool, image: NDArray[Any], recs: Mapping[str, _Proposed | None],
           ev_map: NDArray[np.float32] | None) -> _Image | None:
    """One image's refined regions of the ``chosen`` polarities (``fallback`` ones when it has none)."""
    sel = _selector(settings)
    r = _refined(sel, stage1, image, recs, ev_map, chosen, uses_cam)
    if r is None and fallback:
        r = _refined(sel, stage1, image, recs, ev_map, fallback, uses_cam)
    return r


def _refined(sel: ProposalSelector, stage1: CandidateScorer, image: NDArray[Any],
             recs: Mapping[str, _Proposed | None], ev_map: NDArray[np.float32] | None, polarities: Sequence[str],
             uses_cam: bool) -> _Image | None:
    """The refined regions of ``polarities``: features (CAM features from pass 1's working-shape CAM) and,
    given an evidence map, their concentration of it."""
    Fs, boxes, evs = [], [], []
    cam_f: NDArray[np.float64] | None = None
    grey: NDArray[np.float32] | None = None  # made once for all polarities
    for p in polarities:
        rec = recs[p]
        if rec is None:
            continue
        if grey is None:
            grey = grey_of(image)
        work = Work(image, sel.sigma, work_size=sel.work_size, polarity=p, grey=grey)
        F1 = rec.F
        if not uses_cam and np.any(F1[:, list(CAM_FEATURES)] != 0):
            F1 = F1.copy()
            F1[:, list(CAM_FEATURES)] = 0.0
        s1 = stage1(F1)
        # the candidates refinement will use (finite scores, the best top-k), in their original order:
        # refining only them picks and orders the same regions (a stable sort of a subsequence)
        finite = np.flatnonzero(np.isfinite(s1))
        top = np.sort(finite[np.argsort(-s1[finite], kind="stable")[:sel.refine_top_k]])
        small = None if rec.cam_small is None else rec.cam_small.astype(np.float64)
        _, full, F = _refine(work, [rec.candidate(int(j)) for j in top], s1[top], top_k=sel.refine_top_k,
                             margin=sel.refine_margin, segmenter=sel.segmenter, cam_small=small)
        Fs.append(F)
        boxes += [mask_to_box(m) for m in full]
        if ev_map is not None:
            if cam_f is None:
                cam_f = resize(np.asarray(ev_map, np.float64), image.shape[:2], order=1)
            evs.append(_concentration(cam_f, full))
    if not Fs:
        return None
    return _Image(np.concatenate(Fs), boxes, np.concatenate(evs) if evs else None)


def _pool(per: Mapping[str, Sequence[_Image | None]], polarities: Sequence[str]) -> list[_Image | None]:
    """Per image, the regions of all ``polarities`` together (one bag)."""
    out: list[_Image | None] = []
    for parts in zip(*(per[p] for p in polarities)):
        have = [r for r in parts if r is not None]
        if not have:
            out.append(None)
            continue
        ev = [r.evidence for r in have]
        evs = [e for e in ev if e is not None]
        out.append(_Image(np.concatenate([r.F for r in have]), [b for r in have for b in r.boxes],
                          np.concatenate(evs) if len(evs) == len(ev) else None))
    return out
