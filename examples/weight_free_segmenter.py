"""A weight-free segmenter written in this script, registered at run time and used by name in a config.

``dark_in_box`` needs no download and no GPU: it smooths the image once per image (``embed``), and for
each prompt (``decode``) thresholds the region inside the box (or a window around the positive points)
with Otsu's method, keeps the dark component that holds the prompt's centre and returns it with a score
(the grey-level contrast between the region and its surround, in [0, 1]). Ultrasound lesions are
usually darker than their surround, which is all it assumes. It shows the two methods a segmenter
implements; the script scores it next to the built-in weight-free ``classical`` segmenter.
Run: ``python examples/weight_free_segmenter.py`` (CPU, a few seconds).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from pydantic import Field
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from samprompt import SEGMENTERS, PromptPipeline
from samprompt.component import ComponentParams
from samprompt.metrics import dice
from samprompt.prompts.base import Prompt
from samprompt.segmenters.base import ImageEmbedding, Segmentation, Segmenter
from samprompt.testing import synthetic_lesion


@SEGMENTERS.register("dark_in_box")
class DarkInBox(Segmenter):
    """Otsu threshold inside the prompt's box; the dark component at the prompt's centre."""

    class Params(ComponentParams):
        smooth: float = Field(default=1.5, ge=0.0)  # Gaussian sigma in pixels
        window: int = Field(default=40, ge=4)  # side of the square around points when there is no box

    def embed(self, image: NDArray[np.uint8]) -> ImageEmbedding:
        grey = image.mean(axis=2) if image.ndim == 3 else image.astype(np.float64)
        params: DarkInBox.Params = self.params  # type: ignore[assignment]
        return ImageEmbedding(grey.shape[:2], ndi.gaussian_filter(grey, params.smooth))

    def decode(self, embedding: ImageEmbedding, prompts: Sequence[Prompt]) -> Segmentation:
        H, W = embedding.original_size
        masks, scores = np.zeros((len(prompts), H, W), bool), np.zeros(len(prompts), np.float32)
        for k, p in enumerate(prompts):
            masks[k], scores[k] = self._one(embedding.data, p)
        return Segmentation(masks, scores)

    def _one(self, grey: NDArray[np.float64], p: Prompt) -> tuple[NDArray[np.bool_], float]:
        H, W = grey.shape
        pos = p.points[p.point_labels == 1]
        if p.box is not None:
            x0, y0, x1, y1 = p.box
        elif len(pos):
            params: DarkInBox.Params = self.params  # type: ignore[assignment]
            (cx, cy), h = pos.mean(axis=0), params.window / 2
            x0, y0, x1, y1 = cx - h, cy - h, cx + h, cy + h
        else:
            return np.zeros((H, W), bool), 0.0
        c0, r0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))  # box edges -> pixel slices
        c1, r1 = min(W, int(np.ceil(x1))), min(H, int(np.ceil(y1)))
        crop = grey[r0:r1, c0:c1]
        if crop.size < 4 or crop.min() == crop.max():
            return np.zeros((H, W), bool), 0.0
        dark, _ = ndi.label(crop <= threshold_otsu(crop))  # type: ignore[no-untyped-call]
        cx, cy = pos.mean(axis=0) if len(pos) else ((x0 + x1) / 2, (y0 + y1) / 2)
        at = dark[min(max(int(cy) - r0, 0), crop.shape[0] - 1), min(max(int(cx) - c0, 0), crop.shape[1] - 1)]
        keep = dark == at if at else dark == np.argmax(np.bincount(dark.ravel())[1:]) + 1
        mask = np.zeros((H, W), bool)
        mask[r0:r1, c0:c1] = keep
        contrast = (crop[~keep].mean() - crop[keep].mean()) / 255.0 if (~keep).any() else 0.0
        return mask, float(np.clip(contrast, 0.0, 1.0))


def main() -> None:
    print("registered segmenters:", ", ".join(SEGMENTERS.names()))
    for name in ("dark_in_box", "classical"):
        pipe = PromptPipeline.from_config({
            "masker": {"name": "threshold", "params": {"value": 0.3}},
            "prompts": [{"name": "box"}, {"name": "center_point"}],
            "segmenter": {"name": name},
        })
        scores: dict[str, list[float]] = {label: [] for label in pipe.strategies}
        for seed in range(4):
            image, cam, lesion = synthetic_lesion(seed)
            for label, r in pipe(image, cam=cam).strategies.items():
                scores[label].append(float(dice(r.mask, lesion)))
        line = ", ".join(f"{label} {np.mean(v):.3f}" for label, v in scores.items())
        print(f"{name:>12}: mean Dice over 4 synthetic images: {line}")


if __name__ == "__main__":
    main()
