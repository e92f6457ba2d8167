"""Summary tables: values, "% of GT", groups, CSV and Markdown."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import pytest

from samprompt.metrics import summarize
from samprompt.report.tables import SUMMARY_COLUMNS, format_summary_md, summarize_rows, summary_csv


def _row(image: str, label: str, strategy: str, source: str, dice: float, *, empty: bool = False,
         has_prompt: bool = True, frac: float = 0.1, box_iou: float = math.nan, pts: float = math.nan) -> dict[str, Any]:
    return {"image": image, "label": label, "split": "test", "strategy": strategy, "source": source,
            "predicted": label, "dice": dice, "iou": dice / 2, "pixel_accuracy": 0.9, "box_iou": box_iou,
            "points_inside": pts, "n_points": 0, "box_prior_dice": 0.5 if not empty else math.nan, "score": 0.5,
            "has_prompt": has_prompt, "pred_fraction": frac, "gt_empty": empty}


ROWS = [
    _row("b1", "benign", "box", "cam", 0.2, box_iou=0.3), _row("b1", "benign", "box", "gt", 0.8, box_iou=1.0),
    _row("b2", "benign", "box", "cam", 0.4, box_iou=0.5), _row("b2", "benign", "box", "gt", 0.8, box_iou=1.0),
    _row("m1", "malignant", "box", "cam", 0.0, has_prompt=False, box_iou=0.0),
    _row("m1", "malignant", "box", "gt", 0.6, box_iou=1.0),
    _row("n1", "normal", "box", "cam", 0.0, empty=True, frac=0.2),
    _row("n1", "normal", "box", "gt", 1.0, empty=True, frac=0.0, has_prompt=False),
    _row("n2", "normal", "box", "cam", 1.0, empty=True, frac=0.0, has_prompt=False),
    _row("n2", "normal", "box", "gt", 1.0, empty=True, frac=0.0, has_prompt=False),
    {**_row("x", "benign", "box", "cam", math.nan), "gt_empty": None},  # no ground truth: not summarised
]


def _get(table: list[dict[str, Any]], group: str, cls: str) -> dict[str, Any]:
    (row,) = [r for r in table if r["group"] == group and r["class"] == cls and r["strategy"] == "box"]
    return row


def test_summary_values() -> None:
    table = summarize_rows(ROWS, seed=3)
    b = _get(table, "lesion", "benign")
    assert b["n"] == 2 and b["cam_dice"] == pytest.approx(0.3) and b["gt_dice"] == pytest.approx(0.8)
    assert b["dice_pct_of_gt"] == pytest.approx(37.5)
    s = summarize([0.2, 0.4], seed=3)
    assert (b["cam_dice_ci_low"], b["cam_dice_ci_high"]) == (s.ci_low, s.ci_high)
    assert b["cam_box_iou"] == pytest.approx(0.4) and b["gt_box_iou"] == pytest.approx(1.0)
    m = _get(table, "lesion", "malignant")
    assert m["cam_no_prompt"] == 1 and m["cam_dice"] == 0.0  # a miss counts, it is not skipped
    a = _get(table, "lesion", "all")
    assert a["n"] == 3 and a["cam_dice"] == pytest.approx(0.2)
    n = _get(table, "no_lesion", "normal")
    assert n["n"] == 2 and n["fp_area"] == pytest.approx(0.1) and n["fp_images"] == pytest.approx(0.5)
    assert math.isnan(n["cam_box_iou"])
    assert not [r for r in table if r["class"] == "all" and r["group"] == "no_lesion"]


def test_csv_and_markdown() -> None:
    table = summarize_rows(ROWS)
    parsed = list(csv.DictReader(io.StringIO(summary_csv(table))))
    assert list(parsed[0]) == list(SUMMARY_COLUMNS) and len(parsed) == len(table)
    assert parsed[0]["group"] == "lesion" and parsed[0]["class"] == "benign"
    md = format_summary_md(table, title="t")
    assert md.startswith("# Summary: t")
    assert "| benign | box | 2 | 0.30 [" in md and "(38 %)" in md
    assert "| malignant | box | 0.000 | – |" in md  # box IoU of a miss is 0, points do not apply
    assert "| normal | box | 2 | 0.1000 | 0.50 | 1 / 2 |" in md


def test_empty_input() -> None:
    assert summarize_rows([]) == []
    assert "nothing to summarise" in format_summary_md([])
