"""Draw docs/_static/report_panel.png: one report panel of a real ``samprompt demo`` run.

Usage (after ``samprompt demo --out DEMO``)::

    python docs/make_front_picture.py DEMO [--strategy box] [--thumb 200]

The panel is the report's own (:mod:`samprompt.report.html`): the image, its CAM, the pseudo mask with the
prompts, the ground truth and the strategy's mask over the ground truth with its Dice. The image shown is
the one with the highest CAM-prompt Dice of that strategy in the run (the caption on the front page says
so).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
from pathlib import Path

from PIL import Image

from samprompt.data import open_dataset
from samprompt.report.html import _Painter
from samprompt.runner.outputs import read_png
from samprompt.runner.records import mask_path


class _View:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.ds = open_dataset(json.loads((out / "config.json").read_text())["data"]["path"])

    def image(self, image_id: str):  # type: ignore[no-untyped-def]
        return self.ds.load_image(image_id)

    def gt(self, image_id: str):  # type: ignore[no-untyped-def]
        return self.ds.load_mask(image_id)

    def cam(self, record):  # type: ignore[no-untyped-def]
        return read_png(self.out / "cams" / f"{record['file']}.png") / 255.0

    def pseudo(self, record):  # type: ignore[no-untyped-def]
        return read_png(self.out / "pseudo_masks" / f"{record['file']}.png") > 0

    def mask(self, image_id: str, strategy: str, source: str):  # type: ignore[no-untyped-def]
        return read_png(mask_path(self.out, strategy, source, image_id)) > 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--strategy", default="box")
    ap.add_argument("--thumb", type=int, default=200)
    ap.add_argument("--to", type=Path, default=Path(__file__).parent / "_static" / "report_panel.png")
    a = ap.parse_args()
    records = [json.loads(p.read_text()) for p in sorted((a.run / "records").glob("*.json"))]

    def dice(rec: dict) -> float:  # type: ignore[type-arg]
        row = [r for r in rec["rows"] if r["strategy"] == a.strategy and r["source"] == "cam"][0]
        return float(row["dice"]) if row.get("dice") is not None and not row.get("gt_empty") else -1.0

    best = max(records, key=dice)
    rec = dict(best, strategies=[a.strategy])
    page = _Painter(_View(a.run), a.thumb).panel(rec)
    data = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)  # type: ignore[union-attr]
    img = Image.open(io.BytesIO(base64.b64decode(data)))
    img.save(a.to, optimize=True)
    print(f"{a.to}: {best['image']} ({a.strategy} Dice {dice(best):.2f}), {img.size}, {a.to.stat().st_size} bytes")


if __name__ == "__main__":
    main()
