"""Per-row scoring of the runner (``runner.scoring.score_row``) against the public metrics."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from samprompt.metrics import dice, iou, pixel_accuracy
from samprompt.prompts.base import Prompt
from samprompt.regions import box_iou, ellipse_in_box, mask_to_box
from samprompt.runner.scoring import StrategyKind, score_row


def _masks(seed: int, h: int, w: int, p_empty: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for _ in range(2):
        if rng.random() < p_empty:
            out.append(np.zeros((h, w), bool))
            continue
        cy, cx, ry, rx = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, h), rng.uniform(1, w)
        out.append(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)
    return out[0], out[1]


@given(st.integers(0, 2**32 - 1), st.integers(1, 60), st.integers(1, 60))
@settings(max_examples=150, deadline=None)
def test_score_row_equals_the_metrics_functions(seed: int, h: int, w: int) -> None:
    mask, gt = _masks(seed, h, w, p_empty=0.3)
    box = np.array([0.2 * w, 0.1 * h, 0.9 * w, 0.8 * h], np.float32)
    prompt = Prompt(box=box, points=[[0.5 * w, 0.5 * h]], point_labels=[1])
    row = score_row(prompt=prompt, mask=mask, score=0.7, gt=gt, kind=StrategyKind(True, True))
    assert row["dice"] == dice(mask, gt) and row["iou"] == iou(mask, gt)  # exactly the same floats
    assert row["pixel_accuracy"] == pixel_accuracy(mask, gt)
    assert row["pred_fraction"] == float(mask.mean())
    assert row["gt_empty"] == (not gt.any())
    if gt.any():
        assert row["box_iou"] == box_iou(box, mask_to_box(gt))
        assert row["box_prior_dice"] == dice(ellipse_in_box(box, h, w), gt)


def test_score_row_values_and_conventions() -> None:
    gt = np.zeros((10, 10), bool)
    gt[2:6, 2:6] = True  # 16 px
    mask = np.zeros((10, 10), bool)
    mask[4:8, 4:8] = True  # 16 px, 4 shared
    kind = StrategyKind(True, False)
    row = score_row(prompt=Prompt(box=[4, 4, 8, 8]), mask=mask, score=0.5, gt=gt, kind=kind)
    assert (row["dice"], row["iou"], row["pixel_accuracy"]) == (0.25, 4 / 28, 0.76)
    assert row["pred_fraction"] == 0.16 and row["box_iou"] == 4 / 28
    empty = np.zeros((10, 10), bool)
    row = score_row(prompt=None, mask=empty, score=0.0, gt=empty, kind=kind)  # a correct "nothing there"
    assert (row["dice"], row["iou"], row["pixel_accuracy"], row["gt_empty"]) == (1.0, 1.0, 1.0, True)
    row = score_row(prompt=None, mask=empty, score=0.0, gt=None, kind=kind)
    assert np.isnan(row["dice"]) and row["gt_empty"] is None and row["has_prompt"] is False


def test_strategy_kind_reads_the_declaration_and_scores_a_miss_on_it() -> None:
    import warnings

    from samprompt import PROMPT_STRATEGIES, Emits, PromptStrategy
    from samprompt.runner.scoring import strategy_kind

    expected = {"box": (True, False), "center_point": (False, True), "box_center_point": (True, True)}
    for name, kind in expected.items():
        assert strategy_kind(PROMPT_STRATEGIES.create(name)) == StrategyKind(*kind)
    cands = PROMPT_STRATEGIES.get("candidates")
    assert strategy_kind(cands(output="points")) == StrategyKind(False, True)  # follows the parameters
    assert strategy_kind(cands(output="box", fallback="none")) == StrategyKind(True, False)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # undeclared emits (tested in tests/core)

        class Undeclared(PromptStrategy):
            calls = 0

            def make_prompt(self, mask, cam, image=None):  # type: ignore[no-untyped-def]
                Undeclared.calls += 1
                return Prompt(box=[0, 0, 1, 1])

    assert strategy_kind(Undeclared()) == StrategyKind(True, True) and Undeclared.calls == 0  # nothing is run
    assert Undeclared.emits == Emits.BOX | Emits.POINTS
    gt = np.zeros((10, 10), bool)
    gt[2:6, 2:6] = True
    miss = score_row(prompt=None, mask=np.zeros_like(gt), score=0.0, gt=gt,
                     kind=strategy_kind(PROMPT_STRATEGIES.create("center_point")))
    assert miss["points_inside"] == 0.0 and np.isnan(miss["box_iou"]) and np.isnan(miss["box_prior_dice"])
