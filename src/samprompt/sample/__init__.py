"""A small BUSI sample bundled with samprompt, for ``samprompt demo`` and for trying things out.

``busi/`` holds 60 images of the BUSI data set (20 benign, 20 malignant, 20 normal) in the original class
folder layout (``<class>/<class> (N).png`` with ``<class> (N)_mask.png``), downscaled so that the long side
is at most 160 px and stored as 8-bit greyscale PNG; each mask is the logical OR of the image's original
mask files. See ``README.md`` / ``NOTICE`` next to this file for the citation and licence (CC BY 4.0).

:func:`build_sample` is how the folder was made (deterministic: same source, same files).
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["CITATION", "EXCLUDED", "build_sample", "is_sample", "sample_path"]

#: How to cite the images of the bundled sample (BUSI); a report of a run on the sample shows it.
CITATION = ("Images: BUSI, Al-Dhabyani W., Gomaa M., Khaled H., Fahmy A. \"Dataset of breast ultrasound "
            "images\", Data in Brief 28:104863, 2020, doi:10.1016/j.dib.2019.104863 (CC BY 4.0).")

log = logging.getLogger(__name__)

#: Ids left out: BUSI's byte-identical pair with conflicting labels.
EXCLUDED: frozenset[str] = frozenset({"benign/benign (433)", "malignant/malignant (145)"})


def sample_path() -> Path:
    """Folder of the bundled sample (a class-folder data set)."""
    return Path(str(resources.files("samprompt") / "sample" / "busi"))


def is_sample(path: str | Path) -> bool:
    """Whether ``path`` is the bundled sample's folder itself (compared as resolved paths, never by name)."""
    try:
        return Path(path).resolve() == sample_path().resolve()
    except OSError:
        return False


def build_sample(
    source: str | Path, dest: str | Path, *, per_class: int = 20, long_side: int = 160, seed: int = 0
) -> list[str]:
    """Write a downscaled, deterministic subset of BUSI to ``dest``.

    Per class, ``per_class`` ids are drawn without replacement by ``numpy.random.default_rng(seed)`` from
    the naturally sorted ids (minus :data:`EXCLUDED`) and written in the BUSI layout: the image as
    greyscale PNG with its long side scaled to ``long_side`` (Lanczos; never upscaled), the OR of its masks
    resized bilinearly and thresholded at 0.5, as a 0/255 PNG.

    Args:
        source: The BUSI ``Dataset_BUSI_with_GT`` folder.
        dest: Output folder (class folders are created in it).
        per_class: Images per class.
        long_side: Maximum long side in pixels.
        seed: Seed of the draw.

    Returns:
        The chosen sample ids.
    """
    from samprompt.data import open_dataset

    ds = open_dataset(source)
    rng = np.random.default_rng(seed)
    chosen: list[str] = []
    for cls in ds.classes:
        ids = [s.id for s in ds if s.label == cls and s.id not in EXCLUDED]
        picks = sorted(rng.choice(len(ids), size=min(per_class, len(ids)), replace=False).tolist())
        chosen += [ids[k] for k in picks]
    out = Path(dest)
    for sid in chosen:
        img = Image.fromarray(ds.load_image(sid)).convert("L")
        scale = min(1.0, long_side / max(img.size))
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        target = out / f"{sid}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        img.resize(size, Image.Resampling.LANCZOS).save(target, optimize=True)
        mask = ds.load_mask(sid)
        if mask is not None:
            m = Image.fromarray(mask.astype(np.float32)).resize(size, Image.Resampling.BILINEAR)
            Image.fromarray(((np.asarray(m) >= 0.5) * 255).astype(np.uint8)).save(
                out / f"{sid}_mask.png", optimize=True)
    log.info("wrote %d sample images to %s", len(chosen), out)
    return chosen
