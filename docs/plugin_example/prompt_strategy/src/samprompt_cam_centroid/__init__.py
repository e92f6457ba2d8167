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

from samprompt import Emits, Prompt, PromptStrategy
from samprompt.component import ComponentParams
from samprompt.regions import keep_components

__all__ = ["CamCentroidParams", "CamCentroidPoint"]


class CamCentroidParams(ComponentParams):
    """Parameters of :class:`CamCentroidPoint`.

    Attributes:
        component: Region of the pseudo mask to use: ``largest`` connected component, ``all`` of the
            foreground, or ``max_cam`` (the component with the largest CAM sum).
    """

    component: Literal["largest", "all", "max_cam"] = "largest"


class CamCentroidPoint(PromptStrategy[CamCentroidParams]):
    """One positive point at the CAM-weighted centroid of the region, snapped into the region."""

    emits = Emits.POINTS  # what its prompts carry: one positive point, no box
    needs_image = False  # it never looks at the image (the default; shown for clarity)

    def make_prompt(
        self, mask: NDArray[np.bool_], cam: NDArray[np.float32], image: NDArray[np.uint8] | None = None
    ) -> Prompt | None:
        """Build the prompt from a validated (H, W) bool mask and its (H, W) float32 CAM in [0, 1]."""
        component = self.params.component  # typed: Literal["largest", "all", "max_cam"]
        region = mask if component == "all" else keep_components(mask, component, cam=cam)
        if not region.any():
            return None  # no prompt: the pipeline records an empty mask (a miss), never skips the image
        ys, xs = np.nonzero(region)
        weights = cam[ys, xs].astype(np.float64) + 1e-6  # a flat CAM gives the plain centroid
        cx = np.average(xs + 0.5, weights=weights)
        cy = np.average(ys + 0.5, weights=weights)
        nearest = int(np.argmin((xs + 0.5 - cx) ** 2 + (ys + 0.5 - cy) ** 2))
        point = [[xs[nearest] + 0.5, ys[nearest] + 0.5]]
        return Prompt(points=point, point_labels=[1])
