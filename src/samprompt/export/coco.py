"""A run's masks as one COCO JSON file with RLE segmentations (optional extra ``samprompt[coco]``).

Layout of the file (COCO "instances" style):

* ``images``: every finished image of the run, ``id`` 1..N in sample-id order, ``file_name`` = the
  image's path relative to the data root (the sample id when the data cannot be opened again),
  ``width``, ``height`` and ``samprompt_id`` (the sample id).
* ``categories``: one per class label of the run's images, ``id`` 1..K in sorted label order.
* ``annotations``: one per image whose mask is not empty: the whole mask as one compressed RLE
  (``pycocotools.mask.encode``, ``counts`` as text), ``category_id`` = the image's class, ``area``
  and ``bbox`` (``[x, y, width, height]`` in pixels) from pycocotools, ``iscrowd`` 0 (a lesion, not a
  crowd). Decoding an annotation with ``pycocotools.mask.decode`` gives the run's mask back exactly.
* ``info``: the run, strategy and source the masks come from.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from samprompt.errors import ConfigError, DataError
from samprompt.export._run import RunOutputs
from samprompt.runner.outputs import atomic_write_json

__all__ = ["export_coco"]

log = logging.getLogger(__name__)


def _mask_api() -> Any:
    try:
        from pycocotools import mask as mask_api
    except ImportError:
        raise ConfigError("export format 'coco' needs pycocotools: pip install 'samprompt[coco]'") from None
    return mask_api


def export_coco(run: RunOutputs, out: Path, *, strategy: str | None = None, source: str = "cam") -> Path:
    """Write ``<out>/annotations.json`` (COCO with RLE masks) from a run's masks.

    Args:
        run: The run folder.
        out: Output folder (created).
        strategy: Strategy label whose masks are exported (default: the run's first).
        source: ``cam`` (prompts from the CAM: the pseudo labels) or ``gt`` (prompts from ground truth).

    Returns:
        The JSON file.

    Raises:
        ConfigError: Unknown strategy or source, or pycocotools not installed.
        DataError: A run mask is missing or unreadable.
    """
    mask_api = _mask_api()
    label = run.resolve(strategy, source)
    try:
        ds = run.dataset()
        files = {s.id: s.image_path.relative_to(ds.root).as_posix() for s in ds}
    except DataError as e:
        log.warning("%s; COCO file_name falls back to the sample id", e)
        files = {}
    categories = {c: k for k, c in enumerate(run.classes, start=1)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for k, im in enumerate(run.images, start=1):
        images.append({"id": k, "file_name": files.get(im.id, im.id), "width": im.width, "height": im.height,
                       "samprompt_id": im.id})
        mask = run.mask(im, label, source)
        if not mask.any():
            continue
        rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
        annotations.append({
            "id": len(annotations) + 1, "image_id": k, "category_id": categories[im.label],
            "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
            "area": int(mask_api.area(rle)), "bbox": [float(v) for v in mask_api.toBbox(rle)], "iscrowd": 0,
        })
    doc = {
        "info": {"description": f"samprompt run {run.name!r}: strategy {label!r}, prompts from {source}",
                 "run": str(run.dir), "strategy": label, "source": source},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k, "name": c, "supercategory": "lesion"} for c, k in categories.items()],
    }
    out.mkdir(parents=True, exist_ok=True)
    path = atomic_write_json(out / "annotations.json", doc)
    log.info("wrote %s: %d images, %d annotations", path, len(images), len(annotations))
    return path
