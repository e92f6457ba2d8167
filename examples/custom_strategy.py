"""A prompt strategy defined in this script and registered at run time, then used by name in a config.

CAM blobs are usually larger than the lesion (a CAM is computed at 1/32 of the input and upsampled), so a
box around the thresholded CAM is too big. ``shrunk_box`` pulls the box's edges towards the CAM-weighted
centre by a fraction of its size. Run: ``python examples/custom_strategy.py`` (CPU, a few seconds).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from samprompt import PROMPT_STRATEGIES, Emits, Prompt, PromptPipeline, PromptStrategy
from samprompt.component import ComponentParams
from samprompt.metrics import dice
from samprompt.regions import clip_box, keep_components, mask_to_box
from samprompt.testing import synthetic_lesion


class ShrunkBoxParams(ComponentParams):
    """``shrink``: fraction of the box's size each side moves towards the centre."""

    shrink: float = Field(default=0.15, ge=0.0, lt=0.5)


@PROMPT_STRATEGIES.register("shrunk_box")
class ShrunkBox(PromptStrategy[ShrunkBoxParams]):
    """Box of the largest component, its sides pulled towards the CAM-weighted centre of the component."""

    emits = Emits.BOX

    def make_prompt(
        self, mask: NDArray[np.bool_], cam: NDArray[np.float32], image: NDArray[np.uint8] | None = None
    ) -> Prompt | None:
        region = keep_components(mask, "largest")
        box = mask_to_box(region)  # (x0, y0, x1, y1) pixel edges, or None for an empty mask
        if box is None:
            return None
        ys, xs = np.nonzero(region)
        w = cam[ys, xs] + 1e-6
        cx, cy = np.average(xs + 0.5, weights=w), np.average(ys + 0.5, weights=w)
        k = 2 * self.params.shrink  # a centred box loses `shrink` x its width on each side
        x0, y0, x1, y1 = box
        shrunk = np.array([x0 + k * (cx - x0), y0 + k * (cy - y0), x1 - k * (x1 - cx), y1 - k * (y1 - cy)])
        return Prompt(box=clip_box(shrunk, mask.shape[1], mask.shape[0]))


def main() -> None:
    print("registered prompt strategies:", ", ".join(PROMPT_STRATEGIES.names()))
    pipe = PromptPipeline.from_config(
        {
            "masker": {"name": "threshold", "params": {"value": 0.3}},
            "prompts": [{"name": "box"}, {"name": "shrunk_box", "params": {"shrink": 0.15}}],
            "segmenter": {"name": "classical"},
        }
    )
    scores: dict[str, list[float]] = {label: [] for label in pipe.strategies}
    for seed in range(4):
        image, cam, lesion = synthetic_lesion(seed)
        result = pipe(image, cam=cam)
        for label, r in result.strategies.items():
            scores[label].append(float(dice(r.mask, lesion)))
    for label, values in scores.items():
        print(f"{label:>10}: mean Dice {np.mean(values):.3f} over {len(values)} images")
    print("config written back:", pipe.to_config()["prompts"])


if __name__ == "__main__":
    main()
