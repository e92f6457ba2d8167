"""A prompt strategy plugin for samprompt: one positive point at the CAM-weighted centre of the region.

The centre of mass of the CAM over the chosen region can fall outside a concave region (a crescent,
an L), where a point prompt would ask for the wrong object; the point is therefore moved to the region
pixel nearest to that centre. Coordinates follow samprompt: ``(x, y)`` in original-image pixels, pixel
``(col, row)`` centred at ``(col + 0.5, row + 0.5)``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

from samprompt import Prompt, PromptStrategy
from samprompt.component import ComponentParams
from samprompt.regions import keep_components, mask_to_box

__all__ = ["CamCentroidPoint"]


class CamCentroidPoint(PromptStrategy):
    """One positive point at the CAM-weighted centroid of the region, snapped into the region.

    Params:
        component: Region of the pseudo mask to use: ``largest`` connected component, ``all`` of the
            foreground, or ``max_cam`` (the component with the largest CAM sum).
        with_box: Also give the region's bounding box (pixel edges ``x0, y0, x1, y1``).
    """

    class Params(ComponentParams):
        component: Literal["largest", "all", "max_cam"] = "largest"
        with_box: bool = False

    def make_prompt(self, mask: NDArray[np.bool_], cam: NDArray[np.float32]) -> Prompt | None:
        """Build the prompt from a validated (H, W) bool mask and its (H, W) float32 CAM in [0, 1]."""
        region = (
            mask if self.params.component == "all" else keep_components(mask, self.params.component, cam=cam)
        )
        if not region.any():
            return None  # no prompt: the pipeline records an empty mask (a miss), never skips the image
        ys, xs = np.nonzero(region)
        weights = cam[ys, xs].astype(np.float64) + 1e-6  # a flat CAM gives the plain centroid
        cx = np.average(xs + 0.5, weights=weights)
        cy = np.average(ys + 0.5, weights=weights)
        nearest = int(np.argmin((xs + 0.5 - cx) ** 2 + (ys + 0.5 - cy) ** 2))
        point = [[xs[nearest] + 0.5, ys[nearest] + 0.5]]
        box = mask_to_box(region) if self.params.with_box else None
        return Prompt(box=box, points=point, point_labels=[1])
