"""Applying a pipeline's prompt strategies to one image: what :class:`~samprompt.PromptPipeline` runs per
image on the CPU (in-process, in its overlap thread or in its worker processes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from samprompt._arrays import as_bool_mask
from samprompt.errors import stage_errors
from samprompt.prompts.base import Prompt, PromptStrategy
from samprompt.regions import shared_components

if TYPE_CHECKING:
    from samprompt.maskers.base import PseudoMasker

__all__ = ["Prepared", "apply_strategies", "prepare_image"]

def apply_strategies(
    strategies: Mapping[str, PromptStrategy], mask: Any, cam: Any, image: Any = None
) -> dict[str, Prompt | None]:
    """Apply every strategy to one image's (H, W) mask and (H, W) CAM: label → prompt or ``None``.

    What :meth:`samprompt.PromptPipeline.prompts_for` does (module level, so that worker processes run
    it too): the inputs are validated once for all strategies and handed on read-only, the strategies
    share their connected-component labellings, and each prompt is checked to lie on the image.

    Args:
        strategies: Label → strategy.
        mask: (H, W) mask, non-zero = foreground (a pseudo mask, or a ground truth).
        cam: (H, W) CAM in [0, 1] (NaN = 0), or the mask itself for the ground-truth baseline.
        image: Optional (H, W, 3) uint8 image, handed to strategies whose ``needs_image`` is true.

    Raises:
        StageError: Naming the ``prompt`` stage and the strategy that failed.
    """
    out: dict[str, Prompt | None] = {}
    if not strategies:
        return out
    h, w = np.shape(mask)[:2]
    # Validate once for every strategy (the base class's __call__ would repeat it per strategy); the
    # arrays are handed on read-only, and the strategies share their connected-component selections.
    with stage_errors("prompt", next(iter(strategies.values())).name):
        wants_image = image is not None and any(s.needs_image for s in strategies.values())
        checked = PromptStrategy.check_inputs(mask, cam, image if wants_image else None)
    mask_ro, cam_ro = _read_only(checked[0]), _read_only(checked[1])
    with shared_components():
        for label, strategy in strategies.items():
            with stage_errors("prompt", strategy.name):
                if type(strategy).__call__ is PromptStrategy.__call__:
                    prompt = strategy.make_checked(mask_ro, cam_ro, checked[2])
                else:  # a strategy with its own __call__ gets exactly what it was given
                    prompt = strategy(mask, cam, image=image)
                if prompt is not None:
                    prompt.check_within(h, w, name=f"prompt of strategy {label!r}")
                out[label] = prompt
    return out


#: ``((H, W) bool pseudo mask, CAM prompts, ground-truth prompts)`` of one image.
Prepared = tuple[NDArray[np.bool_], dict[str, Prompt | None], dict[str, Prompt | None]]


def prepare_image(
    masker: PseudoMasker,
    strategies: Mapping[str, PromptStrategy],
    index: int,
    image: NDArray[np.uint8] | None,
    cam: NDArray[np.float32],
    skipped: bool,
    gt: Any,
) -> Prepared:
    """Pseudo mask, CAM prompts and ground-truth prompts of one image: the pipeline's CPU work.

    Args:
        masker: The pseudo masker.
        strategies: Label → strategy.
        index: The image's position in its batch (named in errors).
        image: (H, W, 3) uint8, or ``None`` when no strategy needs it.
        cam: (H, W) float32 CAM in [0, 1].
        skipped: The image gets no CAM prompt (its predicted class is skipped).
        gt: Optional (H, W) ground truth; its strategies' prompts form the ground-truth baseline.

    Returns:
        ``((H, W) bool pseudo mask, CAM prompts, ground-truth prompts)``.
    """
    with stage_errors("masker", masker.name):
        pseudo = masker(cam)
    cam_prompts = dict.fromkeys(strategies) if skipped else apply_strategies(strategies, pseudo, cam, image)
    gt_prompts: dict[str, Prompt | None] = {}
    if gt is not None:
        gt_arr = as_bool_mask(gt, f"gt_masks[{index}]")
        if gt_arr.shape != cam.shape:
            raise ValueError(f"gt_masks[{index}] shape {gt_arr.shape} differs from image shape {cam.shape}")
        # No image here: the ground-truth baseline prompts on the ground-truth mask itself.
        gt_prompts = apply_strategies(strategies, gt_arr, gt_arr)  # the mask as CAM (0 / 1 float32)
    return pseudo, cam_prompts, gt_prompts


def _read_only(arr: NDArray[Any]) -> NDArray[Any]:
    view = arr.view()
    view.flags.writeable = False
    return view
