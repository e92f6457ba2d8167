"""The summary tables of a run: ``summary.csv`` and ``summary.md``.

The structure follows the paper's tables: per class × strategy, segmentation from CAM-derived prompts
next to segmentation from ground-truth-derived prompts ON THE SAME IMAGES, with "% of GT" and bootstrap
confidence intervals of the means; then what the prompts themselves are worth (box IoU vs the ground-truth
box, fraction of points inside the lesion, Dice of the ellipse inscribed in the box); then, on images
without a lesion (e.g. BUSI "normal"), the false-positive area.

Input rows are ``metrics.csv`` rows as dicts (see :mod:`samprompt.runner.scoring`); values may be floats,
``None`` or NaN (missing).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from samprompt.metrics import paired_bootstrap, summarize

__all__ = ["SUMMARY_COLUMNS", "format_summary_md", "summarize_rows", "summary_csv"]

_METRICS = ("dice", "iou", "pixel_accuracy")
_PROMPT_METRICS = ("box_iou", "points_inside", "box_prior_dice")

#: Column order of ``summary.csv``.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "group", "class", "strategy", "n",
    *(f"{src}_{m}{suf}" for m in _METRICS for src in ("cam", "gt") for suf in ("", "_ci_low", "_ci_high")),
    *(f"{m}_pct_of_gt" for m in _METRICS),
    *(f"{src}_{m}" for m in _PROMPT_METRICS for src in ("cam", "gt")),
    "cam_no_prompt", "fp_area", "fp_images",
    "dice_diff", "dice_diff_ci_low", "dice_diff_ci_high",
)


def _num(v: Any) -> float:
    if v is None or v == "":
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _truthy(v: Any) -> bool:
    return v in (True, 1, "1", "True", "true")


def _mean(values: Sequence[float]) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def summarize_rows(
    rows: Sequence[Mapping[str, Any]], *, confidence: float = 0.95, seed: int = 0
) -> list[dict[str, Any]]:
    """Aggregate metric rows into summary rows (one per group × class × strategy).

    Groups: ``lesion`` (images whose ground truth has foreground) and ``no_lesion`` (ground truth empty).
    Images without ground truth are not summarised. With more than one lesion class, an ``all`` class
    row per strategy is added.

    Args:
        rows: ``metrics.csv`` rows.
        confidence: Level of the bootstrap intervals.
        seed: Seed of the bootstrap.

    Returns:
        Dicts with the keys :data:`SUMMARY_COLUMNS` (NaN where not applicable).
    """
    strategies = list(dict.fromkeys(str(r["strategy"]) for r in rows))
    groups: dict[tuple[str, str, str], dict[str, list[Mapping[str, Any]]]] = {}
    for r in rows:
        empty = r.get("gt_empty")
        if empty is None or empty == "":
            continue
        group = "no_lesion" if _truthy(empty) else "lesion"
        for cls in (str(r["label"]), "all"):
            key = (group, cls, str(r["strategy"]))
            groups.setdefault(key, {"cam": [], "gt": []})[str(r["source"])].append(r)
    lesion_classes = sorted({k[1] for k in groups if k[0] == "lesion" and k[1] != "all"})
    out: list[dict[str, Any]] = []
    for group in ("lesion", "no_lesion"):
        classes = sorted({k[1] for k in groups if k[0] == group and k[1] != "all"})
        if group == "lesion" and len(lesion_classes) > 1:
            classes.append("all")
        for cls in classes:
            for strategy in strategies:
                g = groups.get((group, cls, strategy))
                if g is not None:
                    out.append(_summary_row(group, cls, strategy, g, confidence, seed))
    return out


def _summary_row(group: str, cls: str, strategy: str, g: dict[str, list[Mapping[str, Any]]],
                 confidence: float, seed: int) -> dict[str, Any]:
    row: dict[str, Any] = {c: math.nan for c in SUMMARY_COLUMNS}
    row.update(group=group, **{"class": cls}, strategy=strategy, n=len(g["cam"]))
    for src in ("cam", "gt"):
        for m in _METRICS:
            s = summarize([_num(r.get(m)) for r in g[src]], confidence=confidence, seed=seed)
            row[f"{src}_{m}"], row[f"{src}_{m}_ci_low"], row[f"{src}_{m}_ci_high"] = s.mean, s.ci_low, s.ci_high
        for m in _PROMPT_METRICS:
            row[f"{src}_{m}"] = _mean([_num(r.get(m)) for r in g[src]])
    for m in _METRICS:
        c, t = row[f"cam_{m}"], row[f"gt_{m}"]
        row[f"{m}_pct_of_gt"] = 100.0 * c / t if math.isfinite(c) and math.isfinite(t) and t > 0 else math.nan
    # CAM- minus GT-prompt Dice on the same images (paired bootstrap: the images are resampled together)
    gt_dice = {str(r.get("image")): _num(r.get("dice")) for r in g["gt"]}
    pairs = [(_num(r.get("dice")), gt_dice[str(r.get("image"))]) for r in g["cam"] if str(r.get("image")) in gt_dice]
    if pairs:
        pd = paired_bootstrap([a for a, _ in pairs], [b for _, b in pairs], confidence=confidence, seed=seed)
        row["dice_diff"], row["dice_diff_ci_low"], row["dice_diff_ci_high"] = pd.mean_diff, pd.ci_low, pd.ci_high
    row["cam_no_prompt"] = sum(not _truthy(r.get("has_prompt")) for r in g["cam"])
    if group == "no_lesion":
        fr = [_num(r.get("pred_fraction")) for r in g["cam"]]
        row["fp_area"] = _mean(fr)
        row["fp_images"] = _mean([float(f > 0) for f in fr if math.isfinite(f)])
    return row


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(v)
    x = _num(v)
    return "" if math.isnan(x) else f"{x:.{digits}f}"


def summary_csv(table: Sequence[Mapping[str, Any]]) -> str:
    """``summary.csv`` text (columns :data:`SUMMARY_COLUMNS`, NaN as empty cells)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SUMMARY_COLUMNS)
    for r in table:
        w.writerow([_fmt(r.get(c), 6) for c in SUMMARY_COLUMNS])
    return buf.getvalue()


def _ci(r: Mapping[str, Any], key: str, pct: bool) -> str:
    mean, lo, hi = _fmt(r[key], 2), _fmt(r[f"{key}_ci_low"], 2), _fmt(r[f"{key}_ci_high"], 2)
    if not mean:
        return "–"
    text = f"{mean} [{lo}, {hi}]"
    if pct:
        m = key.split("_", 1)[1]
        p = _num(r.get(f"{m}_pct_of_gt"))
        text += "" if math.isnan(p) else f" ({p:.0f} %)"
    return text


def format_summary_md(table: Sequence[Mapping[str, Any]], *, title: str = "run", confidence: float = 0.95,
                      notes: Sequence[str] = ()) -> str:
    """``summary.md``: the paper-style tables as Markdown.

    Args:
        table: Rows of :func:`summarize_rows`.
        title: The run's name.
        confidence: Level of the intervals (for the text).
        notes: Lines printed under the title (e.g. counts and the classifier's accuracy).
    """
    lesion = [r for r in table if r["group"] == "lesion"]
    normal = [r for r in table if r["group"] == "no_lesion"]
    level = f"{confidence * 100:.0f} %"
    lines = [f"# Summary: {title}", ""]
    lines += [f"- {n}" for n in notes] + ([""] if notes else [])
    lines += [(f"Means over images with {level} bootstrap intervals; \"(x %)\" = CAM-prompt result as a "
               "percentage of the ground-truth-prompt result on the same images."), ""]
    if lesion:
        lines += ["## Segmentation (images with a lesion)", "",
                  "| Class | Strategy | n | Dice CAM | Dice GT | IoU CAM | IoU GT | Pixel acc. CAM | Pixel acc. GT |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in lesion:
            lines.append(
                f"| {r['class']} | {r['strategy']} | {r['n']} | {_ci(r, 'cam_dice', True)} | {_ci(r, 'gt_dice', False)}"
                f" | {_ci(r, 'cam_iou', True)} | {_ci(r, 'gt_iou', False)} | {_ci(r, 'cam_pixel_accuracy', True)}"
                f" | {_ci(r, 'gt_pixel_accuracy', False)} |")
        lines += ["", "## Prompt quality (images with a lesion)", "",
                  ("| Class | Strategy | box IoU vs GT box | points inside lesion | box-prior Dice CAM "
                   "| box-prior Dice GT | no prompt |"), "|---|---|---|---|---|---|---|"]
        for r in lesion:
            lines.append(
                f"| {r['class']} | {r['strategy']} | {_fmt(r['cam_box_iou']) or '–'} | "
                f"{_fmt(r['cam_points_inside']) or '–'} | {_fmt(r['cam_box_prior_dice']) or '–'} | "
                f"{_fmt(r['gt_box_prior_dice']) or '–'} | {r['cam_no_prompt']} / {r['n']} |")
    if normal:
        lines += ["", "## False positives (images without a lesion)", "",
                  ("| Class | Strategy | n | mean predicted area (fraction of image) | images with any prediction "
                   "| no prompt |"), "|---|---|---|---|---|---|"]
        for r in normal:
            lines.append(f"| {r['class']} | {r['strategy']} | {r['n']} | {_fmt(r['fp_area'], 4)} | "
                         f"{_fmt(r['fp_images'], 2)} | {r['cam_no_prompt']} / {r['n']} |")
    if not lesion and not normal:
        lines.append("No image with a ground-truth mask was processed; nothing to summarise.")
    return "\n".join(lines) + "\n"
