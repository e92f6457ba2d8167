"""Quickstart: a CAM to prompts to masks on a synthetic image, with the weight-free segmenter.

Run: ``python examples/quickstart.py`` (no data, no weights, a second on a CPU).
"""

from __future__ import annotations

import numpy as np

from samprompt import PromptPipeline
from samprompt.metrics import dice


def main() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(150, 12, size=(240, 320)).clip(0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:240, 0:320]
    lesion = ((yy - 110) / 35.0) ** 2 + ((xx - 190) / 55.0) ** 2 <= 1.0
    image[lesion] = (image[lesion] * 0.35).astype(np.uint8)  # a dark ("hypoechoic") lesion
    # A CAM as a classifier might give: a blurry blob slightly off the lesion.
    cam = np.exp(-(((yy - 118) / 40.0) ** 2 + ((xx - 200) / 60.0) ** 2)).astype(np.float32)

    pipe = PromptPipeline.from_config(
        {
            "masker": {"name": "threshold", "params": {"value": 0.5}},
            "prompts": [{"name": "box"}, {"name": "box_inside_point"}, {"name": "max_point"}],
            "segmenter": {"name": "classical"},
        }
    )
    result = pipe(image, cam=cam, gt_mask=lesion)
    for label, r in result.strategies.items():
        box = None if r.prompt is None or r.prompt.box is None else [round(v) for v in r.prompt.box.tolist()]
        print(f"{label:>18}: box={box} dice(CAM prompt)={dice(r.mask, lesion):.3f} "
              f"dice(GT prompt)={dice(result.gt[label].mask, lesion):.3f}")


if __name__ == "__main__":
    main()
