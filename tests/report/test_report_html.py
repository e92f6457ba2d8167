"""Pictures and the self-contained HTML page, drawn from a fake run view."""

from __future__ import annotations

import base64
import io
import math
import re
from typing import Any

import numpy as np
import pytest
from PIL import Image

from samprompt.report.figures import (
    CAM_COLORS,
    colorize,
    data_uri,
    draw_prompt,
    histograms,
    outline,
    thumbnail,
)
from samprompt.report.html import render_report
from samprompt.report.tables import summarize_rows

H, W = 60, 90


class FakeView:
    def __init__(self) -> None:
        self.gt_mask = np.zeros((H, W), bool)
        self.gt_mask[20:40, 30:60] = True

    def image(self, image_id: str) -> np.ndarray:
        return np.full((H, W, 3), 128, np.uint8)

    def gt(self, image_id: str) -> np.ndarray | None:
        return self.gt_mask

    def cam(self, record: dict[str, Any]) -> np.ndarray:
        return np.tile(np.linspace(0, 1, W, dtype=np.float32), (H, 1))

    def pseudo(self, record: dict[str, Any]) -> np.ndarray:
        return self.gt_mask

    def mask(self, image_id: str, strategy: str, source: str) -> np.ndarray:
        return self.gt_mask


def _record(image: str, dice: float) -> dict[str, Any]:
    rows = [{"image": image, "label": "benign", "split": "test", "strategy": s, "source": src, "dice": dice,
             "iou": dice, "pixel_accuracy": 1.0, "gt_empty": False, "has_prompt": True, "pred_fraction": 0.1}
            for src in ("cam", "gt") for s in ("box", "center_point")]
    prompts = [{"image": image, "strategy": "box", "source": src,
                "prompt": {"box": [30.0, 20.0, 60.0, 40.0], "points": [], "point_labels": []}} for src in ("cam", "gt")]
    prompts += [{"image": image, "strategy": "center_point", "source": src,
                 "prompt": {"box": None, "points": [[45.5, 30.5]], "point_labels": [1]}} for src in ("cam", "gt")]
    return {"image": image, "file": image, "label": "benign", "split": "test", "predicted": "benign",
            "target": ["benign"], "has_mask": True, "strategies": ["box", "center_point"], "rows": rows,
            "prompts": prompts}


def _decode(uri: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_colorize_endpoints_and_thumbnail() -> None:
    c = colorize(np.array([[0.0, 1.0, np.nan]]))
    assert c.dtype == np.uint8 and c.shape == (1, 3, 3)
    assert c[0, 0].tolist() == CAM_COLORS[0].tolist() and c[0, 1].tolist() == CAM_COLORS[-1].tolist()
    pil, scale = thumbnail(np.zeros((200, 100), np.uint8), 50)
    assert pil.size == (25, 50) and scale == pytest.approx(0.25)
    assert thumbnail(np.zeros((20, 10, 3), np.uint8), 50)[1] == 1.0  # never upscaled


def test_outline_and_prompt_drawing() -> None:
    img = np.zeros((20, 20, 3), np.uint8)
    m = np.zeros((20, 20), bool)
    m[5:15, 5:15] = True
    out = outline(img, m, (255, 0, 0))
    assert out[5, 5].tolist() == [255, 0, 0] and out[10, 10].tolist() == [0, 0, 0] and img.max() == 0
    pil = draw_prompt(Image.new("RGB", (20, 20)), {"box": [2, 2, 18, 18], "points": [[10.5, 10.5]],
                                                   "point_labels": [1]}, 1.0)
    arr = np.asarray(pil)
    assert arr[2, 10].any() and arr[10, 10].any() and not arr[6, 6].any()


def test_histograms_and_data_uri() -> None:
    pic = histograms({"box": {"CAM": [0.1, 0.2, math.nan], "GT": [0.9]}, "point": {"CAM": [], "GT": []}})
    assert pic.size[0] > 2 * 200
    back = _decode(data_uri(pic))
    assert back.format == "PNG" and back.size == pic.size


def test_render_report_is_self_contained_and_escaped() -> None:
    records = [_record("<script>alert(1)</script>", 0.3)] + [_record(f"img{k}", d) for k, d in enumerate([0.1, 0.5, 0.9])]
    rows = [r for rec in records for r in rec["rows"]]
    table = summarize_rows(rows)
    page = render_report(FakeView(), records, rows, table, title="t & <x>", config={"name": "t"},
                         failures=[{"image": "bad<1>", "stage": "load", "reason": "unreadable"}],
                         panels=2, gallery=2, thumb=48, notice="cite me")
    assert "<script>" not in page and "&lt;script&gt;" in page and "t &amp; &lt;x&gt;" in page
    uris = re.findall(r'src="(data:image/png;base64,[^"]+)"', page)
    # histogram, 2 panels of 2 rows (CAM prompts; ground-truth prompts), best and worst galleries
    assert len(uris) == 1 + 2 * 2 + 2
    panel, gt_row = _decode(uris[1]), _decode(uris[2])
    assert panel.height <= 48 + 14 and panel.width > 4 * 40  # image, CAM, pseudo, GT + 2 strategies
    assert gt_row.height <= 48 + 14 and 2 * 40 < gt_row.width < panel.width  # the 2 strategies, GT prompts
    assert page.count(": ground-truth prompts") == 2
    assert "bad&lt;1&gt;" in page and "cite me" in page and "http" not in page
