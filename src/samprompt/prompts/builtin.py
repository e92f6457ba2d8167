"""Built-in prompt strategies: box, centre point, inside point, max point and their combinations.

All strategies first choose the region to prompt on (``component``): the largest connected component of
the mask (the paper's "largest contour"), all of it, or the component with most CAM mass. An empty mask
gives ``None``. Points are returned at pixel centres, ``(col + 0.5, row + 0.5)``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field
from scipy import ndimage as ndi

from samprompt.component import ComponentParams
from samprompt.prompts import PROMPT_STRATEGIES
from samprompt.prompts.base import Emits, Prompt, PromptStrategy
from samprompt.regions import bbox_slices, clip_box, keep_components, mask_to_box

__all__ = [
    "BoxCenterPointStrategy",
    "BoxInsidePointStrategy",
    "BoxMaxPointStrategy",
    "BoxStrategy",
    "CenterPointStrategy",
    "InsidePointStrategy",
    "MaxPointStrategy",
    "StrategyParams",
    "inside_point",
    "max_point",
]


class StrategyParams(ComponentParams):
    """Options shared by the built-in strategies.

    Attributes:
        component: Region of the mask to prompt on: ``largest`` connected component, ``all`` foreground,
            or ``max_cam`` (the component with the largest CAM sum).
        margin: Pixels added on every side of the box (the paper used 5), then clipped to the image.
    """

    component: Literal["largest", "all", "max_cam"] = "largest"
    margin: float = Field(default=0.0, ge=0.0)


def _region(
    mask: NDArray[np.bool_], cam: NDArray[np.float32], mode: Literal["largest", "all", "max_cam"]
) -> NDArray[np.bool_]:
    return mask if mode == "all" else keep_components(mask, mode, cam=cam)


def _box(region: NDArray[np.bool_], margin: float) -> NDArray[np.float32] | None:
    box = mask_to_box(region)
    if box is None:
        return None
    H, W = region.shape
    return clip_box(box + np.array([-margin, -margin, margin, margin], np.float32), W, H)


def inside_point(region: NDArray[np.bool_]) -> NDArray[np.float32] | None:
    """The pixel deepest inside ``region`` (distance-transform peak), as an (x, y) pixel centre.

    Ties (a plateau of equal depth) are broken by closeness to the region's centroid, so the point is
    central and always lies inside the region. ``None`` for an empty region.
    """
    window = bbox_slices(region)
    if window is None:
        return None
    crop = region[window]  # the transform only needs the region's box (plus the zero border added here)
    depth = ndi.distance_transform_edt(np.pad(crop, 1))[1:-1, 1:-1]
    return _offset(_plateau_point(depth, crop), window)


def max_point(cam: NDArray[np.float32], region: NDArray[np.bool_]) -> NDArray[np.float32] | None:
    """Location of the CAM maximum within ``region``, as an (x, y) pixel centre.

    On a plateau (several pixels share the maximum) the plateau's centroid is used — snapped to the
    nearest plateau pixel so it stays on the plateau — never the first index in memory order.
    ``None`` for an empty region.
    """
    window = bbox_slices(region)
    if window is None:
        return None
    crop = region[window]
    return _offset(_plateau_point(np.where(crop, cam[window], -np.inf), crop), window)


def _offset(point: NDArray[np.float32], window: tuple[slice, slice]) -> NDArray[np.float32]:
    """Shift a point found in ``image[window]`` back to full-image coordinates."""
    return point + np.array([window[1].start, window[0].start], dtype=np.float32)


def _plateau_point(values: NDArray[np.floating], region: NDArray[np.bool_]) -> NDArray[np.float32]:
    top = values[region].max()
    ys, xs = np.nonzero(region & (values >= top - 1e-6 * max(1.0, abs(float(top)))))
    cy, cx = ys.mean(), xs.mean()
    k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return np.array([xs[k] + 0.5, ys[k] + 0.5], dtype=np.float32)


def _center(box: NDArray[np.float32]) -> NDArray[np.float32]:
    return np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0], dtype=np.float32)


def _prompt(box: NDArray[np.float32] | None, point: NDArray[np.float32] | None) -> Prompt | None:
    if box is None and point is None:
        return None
    pts = np.zeros((0, 2), np.float32) if point is None else point[None]
    return Prompt(box=box, points=pts, point_labels=np.ones(len(pts), np.int64))


@PROMPT_STRATEGIES.register("box")
class BoxStrategy(PromptStrategy[StrategyParams]):
    """Bounding box of the chosen region (plus ``margin``), clipped to the image."""

    emits = Emits.BOX

    def make_prompt(
        self, mask: NDArray[np.bool_], cam: NDArray[np.float32], image: NDArray[np.uint8] | None = None
    ) -> Prompt | None:
        region = _region(mask, cam, self.params.component)
        return _prompt(_box(region, self.params.margin), None)


@PROMPT_STRATEGIES.register("center_point")
class CenterPointStrategy(PromptStrategy[StrategyParams]):
    """One positive point at the centre of the region's bounding box (the paper's "centre point").

    The box centre can fall outside a concave region; :class:`InsidePointStrategy` cannot.
    """

    emits = Emits.POINTS

    def make_prompt(
        self, mask: NDArray[np.bool_], cam: NDArray[np.float32], image: NDArray[np.uint8] | None = None
    ) -> Prompt | None:
        box = _box(_region(mask, cam, self.params.component), 0.0)
        return None if box is None else _prompt(None, _center(box))


@PROMPT_STRATEGIES.register("inside_point")
class InsidePointStrategy(PromptStrategy[StrategyParams]):
    """One positive point guaranteed inside the region: its distance-transform peak."""

    emits = Emits.POINTS

    def make_prompt(
        self, mask: NDArray[np.bool_], cam: NDArray[np.float32], image: NDArray[np.uint8] | None = None
    ) -> Prompt | None:
        return _prompt(None, inside_point(_region(mask, cam, self.params.component)))


@PROMPT_STRATEGIES.register("max_point")
class MaxPointStrategy(PromptStrategy[StrategyParams]):
    """One positive point at the CAM maximum inside the region (plateau: its centroid)."""

    emits = Emits.POINTS

    def make_prompt(
        self, mask: NDArray[np.bool_], cam: NDArray[np.float32], image: NDArray[np.uint8] | None = None
    ) -> Prompt | None:
        return _prompt(None, max_point(cam, _region(mask, cam, self.params.component)))


@PROMPT_STRATEGIES.register("box_center_point")
class BoxCenterPointStrategy(PromptStrategy[StrategyParams]):
    """Box plus one positive point at the box centre (the paper's "box + 1 point")."""

    emits = Emits.BOX | Emits.POINTS

    def make_prompt(
        self, mask: NDArray[np.bool_], cam: NDArray[np.float32], image: NDArray[np.uint8] | None = None
    ) -> Prompt | None:
        region = _region(mask, cam, self.params.component)
        box = _box(region, self.params.margin)
        centre = _box(region, 0.0)
        return None if box is None or centre is None else _prompt(box, _center(centre))


@PROMPT_STRATEGIES.register("box_inside_point")
class BoxInsidePointStrategy(PromptStrategy[StrategyParams]):
    """Box plus one positive point at the region's distance-transform peak."""

    emits = Emits.BOX | Emits.POINTS

    def make_prompt(
        self, mask: NDArray[np.bool_], cam: NDArray[np.float32], image: NDArray[np.uint8] | None = None
    ) -> Prompt | None:
        region = _region(mask, cam, self.params.component)
        return _prompt(_box(region, self.params.margin), inside_point(region))


@PROMPT_STRATEGIES.register("box_max_point")
class BoxMaxPointStrategy(PromptStrategy[StrategyParams]):
    """Box plus one positive point at the CAM maximum inside the region."""

    emits = Emits.BOX | Emits.POINTS

    def make_prompt(
        self, mask: NDArray[np.bool_], cam: NDArray[np.float32], image: NDArray[np.uint8] | None = None
    ) -> Prompt | None:
        region = _region(mask, cam, self.params.component)
        return _prompt(_box(region, self.params.margin), max_point(cam, region))
