"""A run's masks as an nnU-Net v2 raw data set: pseudo labels to train a fully supervised model on.

The output folder is the data set folder itself, e.g. ``$nnUNet_raw/Dataset501_BusiPseudo``::

    dataset.json
    imagesTr/<case>_0000.png   the image, 8-bit RGB (one file: nnU-Net's "natural image" 2D input)
    labelsTr/<case>.png        the run's mask as an 8-bit label map (0 = background)
    cases.json                 <case> -> sample id, label, split (for tracing a case back)

``<case>`` is the image's file stem in the run folder (``safe_name`` of its id: ASCII, unique).
``dataset.json`` holds ``channel_names`` ``{"0": "R", "1": "G", "2": "B"}``, ``labels``, ``numTraining``
and ``file_ending`` ``".png"``. Labels:

* ``labels="lesion"`` (default): ``{"background": 0, "lesion": 1}``, every mask pixel is 1;
* ``labels="class"``: ``{"background": 0, <class>: k, ...}`` with ``k`` = 1.. in sorted class order,
  and a mask pixel gets its image's class (for data sets where the classes are different structures).

Every finished image of the run becomes a training case (its processed split), including images with an
empty mask (background-only cases teach the model what is not a lesion).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal

import numpy as np

from samprompt.errors import ConfigError, DataError
from samprompt.export._run import RunOutputs
from samprompt.runner.outputs import atomic_write_bytes, atomic_write_json, png_bytes

__all__ = ["export_nnunet"]

log = logging.getLogger(__name__)

_DATASET_NAME = re.compile(r"^Dataset\d{3}_[A-Za-z0-9_-]+$")


def export_nnunet(
    run: RunOutputs,
    out: Path,
    *,
    strategy: str | None = None,
    source: str = "cam",
    labels: Literal["lesion", "class"] = "lesion",
) -> Path:
    """Write an nnU-Net v2 raw data set from a run's images and masks.

    Args:
        run: The run folder (its data must still be where the run read them: the images are copied).
        out: The data set folder, ideally named ``DatasetXXX_Name`` inside ``$nnUNet_raw``.
        strategy: Strategy label whose masks become the labels (default: the run's first).
        source: ``cam`` (pseudo labels) or ``gt`` (masks prompted from ground truth).
        labels: ``lesion`` (one foreground label) or ``class`` (one label per class).

    Returns:
        ``out``.

    Raises:
        ConfigError: Unknown strategy, source or ``labels`` value.
        DataError: The run's data cannot be opened again, an image or a mask cannot be read, or an
            image's size differs from the run's mask.
    """
    if labels not in ("lesion", "class"):
        raise ConfigError(f"labels must be 'lesion' or 'class', got {labels!r}")
    label = run.resolve(strategy, source)
    if not _DATASET_NAME.match(out.name):
        log.warning("nnU-Net expects the data set folder to be named DatasetXXX_Name, not %r", out.name)
    ds = run.dataset()
    classes = run.classes
    values = {c: (1 if labels == "lesion" else k) for k, c in enumerate(classes, start=1)}
    cases: dict[str, dict[str, str]] = {}
    for im in run.images:
        image = ds.load_image(im.id)
        if image.shape[:2] != (im.height, im.width):
            raise DataError(
                f"image {im.id!r} is now {image.shape[1]}x{image.shape[0]} but the run saw "
                f"{im.width}x{im.height}; the data changed since the run"
            )
        mask = run.mask(im, label, source)
        target = np.where(mask, values[im.label], 0).astype(np.uint8)
        atomic_write_bytes(out / "imagesTr" / f"{im.stem}_0000.png", png_bytes(image))
        atomic_write_bytes(out / "labelsTr" / f"{im.stem}.png", png_bytes(target))
        cases[im.stem] = {"id": im.id, "label": im.label, "split": im.split}
    label_map = {"background": 0, "lesion": 1} if labels == "lesion" else {"background": 0, **values}
    atomic_write_json(out / "dataset.json", {
        "channel_names": {"0": "R", "1": "G", "2": "B"},
        "labels": label_map,
        "numTraining": len(cases),
        "file_ending": ".png",
        "name": out.name,
        "description": f"pseudo labels of samprompt run {run.name!r}: strategy {label!r}, prompts from {source}",
    })
    atomic_write_json(out / "cases.json", cases)
    log.info("wrote nnU-Net data set %s: %d cases", out, len(cases))
    return out
