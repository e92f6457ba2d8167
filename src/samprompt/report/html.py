"""``report.html``: one self-contained page (inline CSS, base64 PNG pictures, no scripts, no links out).

Sections: the run's settings; the summary tables (CAM-prompt vs ground-truth-prompt results on the same
images); Dice histograms per strategy; per-image panels (image | CAM | pseudo mask with the prompts |
ground truth | the prediction of every strategy); the best and worst images; the failures.

The page reads pictures through a :class:`RunView` (the runner's run folder reader), so it can be rebuilt
from a finished or resumed run folder without recomputing anything.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from samprompt.report.figures import (
    CAM_COLOR,
    GT_COLOR,
    PRED_COLOR,
    PROMPT_COLOR,
    blend,
    caption,
    colorize,
    data_uri,
    draw_prompt,
    histograms,
    outline,
    resize_mask,
    strip,
    thumbnail,
)
from samprompt.report.tables import format_summary_md

__all__ = ["LEGEND", "RunView", "legend_html", "render_report"]

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:8px 0 18px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f2f2f2}td:nth-child(-n+2){text-align:left}img{image-rendering:auto;display:block}
.panel{margin:0 0 10px}.id{font:12px monospace;color:#444}details{margin:8px 0}pre{background:#f7f7f7;padding:8px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px;vertical-align:-1px}
.legend span:first-child{margin-left:0}
"""


#: Legend of the panels: ``(label, RGB colour)`` in the order shown (the colours of report.figures).
LEGEND: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("ground truth", GT_COLOR),
    ("prediction", PRED_COLOR),
    ("pseudo mask", CAM_COLOR),
    ("box", PROMPT_COLOR),
)


def legend_html(entries: Sequence[tuple[str, tuple[int, int, int]]] = LEGEND) -> str:
    """The panels' colour legend: each colour swatch directly BEFORE its label.

    Args:
        entries: ``(label, (r, g, b))`` pairs, in display order.

    Returns:
        One ``<p class="legend">`` element; labels are HTML-escaped.
    """
    items = "".join(f'<span style="background:rgb({r},{g},{b})"></span>{html.escape(label)}'
                    for label, (r, g, b) in entries)
    return f'<p class="legend">{items}</p>'


class RunView(Protocol):
    """What the report needs from a run folder (see :class:`samprompt.runner.run.RunFolder`)."""

    def image(self, image_id: str) -> NDArray[np.uint8]:
        """(H, W, 3) uint8 image."""

    def gt(self, image_id: str) -> NDArray[np.bool_] | None:
        """(H, W) bool ground truth, or ``None``."""

    def cam(self, record: dict[str, Any]) -> NDArray[np.float32]:
        """(H, W) float32 CAM in [0, 1]."""

    def pseudo(self, record: dict[str, Any]) -> NDArray[np.bool_]:
        """(H, W) bool pseudo mask."""

    def mask(self, image_id: str, strategy: str, source: str) -> NDArray[np.bool_]:
        """(H, W) bool segmentation."""


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _md_table_to_html(md: str) -> str:
    out, rows = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-:") for c in cells):
                rows.append(cells)
            continue
        if rows:
            head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
            out.append(f"<table><tr>{head}</tr>{body}</table>")
            rows = []
        if line.startswith("## "):
            out.append(f"<h3>{html.escape(line[3:])}</h3>")
        elif line and not line.startswith("# "):
            out.append(f"<p>{html.escape(line)}</p>")
    return "\n".join(out)


def _prompt_of(record: Mapping[str, Any], strategy: str, source: str) -> dict[str, Any] | None:
    for p in record["prompts"]:
        if p["strategy"] == strategy and p["source"] == source:
            prompt: dict[str, Any] | None = p["prompt"]
            return prompt
    return None


def _dice_of(record: Mapping[str, Any], strategy: str, source: str) -> float:
    for r in record["rows"]:
        if r["strategy"] == strategy and r["source"] == source:
            return _num(r.get("dice"))
    return math.nan


class _Painter:
    def __init__(self, view: RunView, thumb: int) -> None:
        self.view, self.thumb = view, thumb

    def panel(self, rec: Mapping[str, Any]) -> str:
        sid = rec["image"]
        img = self.view.image(sid)
        gt = self.view.gt(sid)
        base, scale = thumbnail(img, self.thumb)
        size = base.size
        arr = np.asarray(base)
        cam = np.asarray(thumbnail(colorize(self.view.cam(dict(rec))), self.thumb)[0])
        tiles = [caption(base, f"{rec['label']} -> {rec['predicted']}"),
                 caption(thumbnail(blend(arr, cam, 0.55), self.thumb)[0], "CAM " + "+".join(rec["target"]))]
        pseudo = resize_mask(self.view.pseudo(dict(rec)), size)
        p_img = thumbnail(outline(arr, pseudo, CAM_COLOR, fill=0.3), self.thumb)[0]
        for strategy in rec["strategies"]:
            draw_prompt(p_img, _prompt_of(rec, strategy, "cam"), scale)
        tiles.append(caption(p_img, "pseudo mask + prompts"))
        g = None if gt is None else resize_mask(gt, size)
        tiles.append(caption(thumbnail(outline(arr, g, GT_COLOR, fill=0.35), self.thumb)[0],
                             "ground truth" if gt is not None else "no ground truth"))
        tiles += [self._result(rec, strategy, "cam", arr, g, scale, strategy) for strategy in rec["strategies"]]
        strips = [f'<img alt="{html.escape(sid)}" src="{data_uri(strip(tiles))}">']
        if g is not None and any(p.get("source") == "gt" for p in rec.get("prompts", [])):
            # Second row: the same strategies prompted from the ground truth (the baseline), same segmenter.
            gt_tiles = [self._result(rec, strategy, "gt", arr, g, scale, f"{strategy}, GT prompt")
                        for strategy in rec["strategies"]]
            strips.append(f'<img alt="{html.escape(sid)}: ground-truth prompts" src="{data_uri(strip(gt_tiles))}">')
        return f'<div class="panel"><div class="id">{html.escape(sid)}</div>{"".join(strips)}</div>'

    def _result(self, rec: Mapping[str, Any], strategy: str, source: str, arr: NDArray[np.uint8],
                g: NDArray[np.bool_] | None, scale: float, label: str) -> Any:
        """One strategy's mask (and its prompt) over the ground truth, captioned with ``label`` and Dice."""
        pred = resize_mask(self.view.mask(rec["image"], strategy, source), (arr.shape[1], arr.shape[0]))
        t = thumbnail(outline(outline(arr, g, GT_COLOR), pred, PRED_COLOR, fill=0.3), self.thumb)[0]
        draw_prompt(t, _prompt_of(rec, strategy, source), scale)
        d = _dice_of(rec, strategy, source)
        return caption(t, label + ("" if math.isnan(d) else f" D={d:.2f}"))

    def gallery(self, items: Sequence[tuple[Mapping[str, Any], str, float]]) -> str:
        tiles = []
        for rec, strategy, _ in items:
            sid = rec["image"]
            base, scale = thumbnail(self.view.image(sid), self.thumb)
            gt = self.view.gt(sid)
            g = None if gt is None else resize_mask(gt, base.size)
            tiles.append(self._result(rec, strategy, "cam", np.asarray(base), g, scale, f"{sid}\n{strategy}"))
        return f'<img alt="gallery" src="{data_uri(strip(tiles))}">' if tiles else "<p>none</p>"


def render_report(
    view: RunView,
    records: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    table: Sequence[Mapping[str, Any]],
    *,
    title: str,
    config: Mapping[str, Any],
    failures: Sequence[Mapping[str, Any]] = (),
    panels: int = 12,
    gallery: int = 6,
    thumb: int = 112,
    confidence: float = 0.95,
    notice: str = "",
    progress: Callable[[str, int, int], None] | None = None,
) -> str:
    """The report page as a string (see the module docstring).

    Args:
        view: Reads images, ground truth, CAMs and masks.
        records: Finished images' records, in order.
        rows: ``metrics.csv`` rows.
        table: Summary rows (:func:`~samprompt.report.tables.summarize_rows`).
        title: Page title (the run's name).
        config: The run config (shown folded).
        failures: Failed images (``image``, ``stage``, ``reason``).
        panels: Number of per-image panels (the first records).
        gallery: Images in the best and in the worst gallery.
        thumb: Long side of every picture, in pixels.
        confidence: Level of the intervals in the tables.
        notice: A line shown at the bottom (e.g. the data set's citation).
        progress: ``progress("report", done, total)`` callback.
    """
    painter = _Painter(view, thumb)
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>samprompt run: {esc(title)}</h1>"]
    desc = str(config.get("description") or "")
    if desc:
        parts.append(f"<p>{esc(desc)}</p>")
    n_gt = sum(1 for r in records if r.get("has_mask"))
    parts.append(f"<p>{len(records)} images processed ({n_gt} with ground truth), {len(failures)} failed.</p>")
    parts.append(_md_table_to_html(format_summary_md(table, title=title, confidence=confidence)))
    strategies = list(dict.fromkeys(str(r["strategy"]) for r in rows))
    lesion = [r for r in rows if r.get("gt_empty") in (False, 0, "0")]
    series = {s: {src.upper(): [_num(r["dice"]) for r in lesion if r["strategy"] == s and r["source"] == src]
                  for src in ("cam", "gt")} for s in strategies}
    if lesion:
        parts.append("<h2>Dice distributions (images with a lesion)</h2>")
        parts.append(f'<img alt="Dice histograms" src="{data_uri(histograms(series))}">')
    shown = list(records[:panels])
    total = len(shown) + (2 if gallery else 0)
    parts.append(f"<h2>Per-image panels (first {len(shown)} images)</h2>")
    parts.append(legend_html())
    for k, rec in enumerate(shown):
        parts.append(painter.panel(rec))
        if progress:
            progress("report", k + 1, total)
    if gallery:
        scored = [(rec, s, _dice_of(rec, s, "cam")) for rec in records for s in rec["strategies"]
                  if rec.get("has_mask") and any(r["source"] == "cam" and r.get("gt_empty") is False
                                                 for r in rec["rows"])]
        scored = [t for t in scored if not math.isnan(t[2])]
        scored.sort(key=lambda t: (-t[2], t[0]["image"], t[1]))
        parts.append(f"<h2>Best {min(gallery, len(scored))} (image × strategy, by Dice)</h2>")
        parts.append(painter.gallery(scored[:gallery]))
        parts.append(f"<h2>Worst {min(gallery, len(scored))}</h2>")
        parts.append(painter.gallery(list(reversed(scored[-gallery:])) if scored else []))
        if progress:
            progress("report", total, total)
    if failures:
        parts.append("<h2>Failures</h2><table><tr><th>image</th><th>stage</th><th>reason</th></tr>")
        parts += [f"<tr><td>{esc(f['image'])}</td><td>{esc(f['stage'])}</td><td>{esc(f['reason'])}</td></tr>"
                  for f in failures]
        parts.append("</table>")
    parts.append("<details><summary>Run config</summary><pre>"
                 f"{esc(json.dumps(dict(config), indent=2, default=str))}</pre></details>")
    if notice:
        parts.append(f"<p><small>{esc(notice)}</small></p>")
    parts.append("</body></html>")
    return "\n".join(parts)
