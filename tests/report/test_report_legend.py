"""The panels' colour legend: each swatch comes directly before the label it explains."""

from __future__ import annotations

import re

from samprompt.report.figures import CAM_COLOR, GT_COLOR, PRED_COLOR, PROMPT_COLOR
from samprompt.report.html import LEGEND, legend_html

_ITEM = re.compile(r'<span style="background:rgb\((\d+),(\d+),(\d+)\)"></span>([^<]*)')


def test_each_swatch_precedes_its_label() -> None:
    page = legend_html()
    assert page.startswith('<p class="legend"><span')  # a swatch first, not a label
    pairs = [(m.group(4), tuple(int(m.group(k)) for k in (1, 2, 3))) for m in _ITEM.finditer(page)]
    assert pairs == [
        ("ground truth", GT_COLOR),
        ("prediction", PRED_COLOR),
        ("pseudo mask", CAM_COLOR),
        ("box", PROMPT_COLOR),
    ]
    assert pairs == [(label, color) for label, color in LEGEND]


def test_labels_are_escaped() -> None:
    assert legend_html([("a<b", (1, 2, 3))]) == (
        '<p class="legend"><span style="background:rgb(1,2,3)"></span>a&lt;b</p>'
    )
