"""Tiny models and synthetic data for tests and plugin authors.

Everything here is cheap: a tiny CNN classifier (:func:`tiny_classifier`, the registered ``tiny_cnn``
builder with seeded weights, saved as a real samprompt checkpoint by :func:`save_tiny_classifier_checkpoint`)
and the tiny SAM (:data:`TINY_SAM`) is built from the REAL ``segment_anything`` modules at a 128 px input
(8 x 8 embedding, 32 x 32 low-res masks, ~60 k parameters) and runs in milliseconds on a CPU. Its weights
are random but seeded, so results are reproducible.

The tiny SAM is a test model, not one of the production model types: importing this module registers it
as the ``sam`` segmenter's ``model_type="tiny"`` (:func:`register_tiny_sam`; without a checkpoint it gets
the weights of :func:`tiny_sam` ``(seed=0)``). segment_anything is imported only when a function runs.

Example:
    >>> from samprompt.testing import save_tiny_sam_checkpoint
    >>> from samprompt.segmenters import SEGMENTERS
    >>> path = save_tiny_sam_checkpoint(tmp_path / "tiny.pth")  # doctest: +SKIP
    >>> seg = SEGMENTERS.create("sam", {"model_type": "tiny", "checkpoint": str(path)})  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from samprompt.segmenters.sam_models import SamArchitecture, register_sam_architecture

if TYPE_CHECKING:
    import torch
    from segment_anything.modeling import Sam

__all__ = [
    "TINY_SAM",
    "random_image",
    "register_tiny_sam",
    "save_tiny_classifier_checkpoint",
    "save_tiny_sam_checkpoint",
    "synthetic_lesion",
    "tiny_classifier",
    "tiny_sam",
]

#: Standard deviation given to the parameters the SAM modules initialise to zero (absolute position
#: embedding, relative-position tables), so that those code paths actually change the output.
_POS_STD = 0.5


#: The tiny SAM's numbers: 128 px input (8 x 8 embedding, 32 x 32 low-res masks), width 32, 2 heads,
#: 2 blocks of which block 1 is global, window 3 (so 8 x 8 tokens are padded to 9 x 9 windows), relative
#: positions on, decoder width 32.
TINY_SAM = SamArchitecture(
    encoder_embed_dim=32,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    image_size=128,
    patch_size=16,
    window_size=3,
    prompt_embed_dim=32,
    mask_in_chans=8,
    decoder_depth=2,
    decoder_mlp_dim=64,
    decoder_num_heads=2,
    iou_head_hidden_dim=32,
)


def register_tiny_sam(name: str = "tiny") -> None:
    """Make :data:`TINY_SAM` a SAM model type named ``name`` (done for ``"tiny"`` on import).

    Afterwards ``SEGMENTERS.create("sam", {"model_type": "tiny"})`` builds :func:`tiny_sam` ``(0)``, and
    with a ``checkpoint`` (:func:`save_tiny_sam_checkpoint`) loads it like an official model.
    """
    register_sam_architecture(name, TINY_SAM, random_weights=_tiny_sam_seed_zero)


def _tiny_sam_seed_zero() -> Sam:
    return tiny_sam(seed=0)


def tiny_sam(seed: int = 0) -> Sam:
    """A tiny SAM with seeded random weights, on CPU, in eval mode.

    Same modules and code paths as ViT-B/L/H (windowed + global attention with relative positions,
    window padding since 8 is not a multiple of the window 3, prompt encoder, two-way mask decoder);
    only the numbers differ. The zero-initialised position parameters are drawn from N(0, 0.5²).

    Args:
        seed: Seed of the weights; the global RNG state is left untouched.
    """
    import torch

    from samprompt.segmenters.sam_models import build_sam_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_sam_model(TINY_SAM)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith(("pos_embed", "rel_pos_h", "rel_pos_w")):
                    param.normal_(0.0, _POS_STD)
    return model.eval()


def save_tiny_sam_checkpoint(path: str | Path, seed: int = 0) -> Path:
    """Write the state dict of :func:`tiny_sam` ``(seed)`` to ``path`` (parents created) and return it."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_sam(seed).state_dict(), path)
    return path


def random_image(height: int, width: int, seed: int = 0) -> NDArray[np.uint8]:
    """A (H, W, 3) uint8 ultrasound-like image: speckle noise with one darker ellipse (the "lesion").

    The ellipse is centred at ``(0.5 W, 0.45 H)`` with semi-axes ``(0.2 W, 0.15 H)``.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    inside = ((xx + 0.5 - 0.5 * width) / (0.2 * width)) ** 2 + (
        (yy + 0.5 - 0.45 * height) / (0.15 * height)
    ) ** 2 <= 1
    base = np.where(inside, 50.0, 140.0) + 40.0 * rng.standard_normal((height, width))
    grey = np.clip(base, 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def synthetic_lesion(seed: int, height: int = 200, width: int = 260
                     ) -> tuple[NDArray[np.uint8], NDArray[np.float32], NDArray[np.bool_]]:
    """A dark elliptical lesion on speckle, with a CAM that is a wider Gaussian blob around it.

    Returns:
        ``(image, cam, lesion)``: the (H, W) uint8 grey image, the (H, W) float32 CAM in [0, 1] (peak at
        the lesion's centre, 1.6 times its semi-axes wide) and the (H, W) bool lesion mask. At the
        default size the centre is at y 70-130, x 90-170 and the semi-axes are 20-35 (y) and 30-50 (x)
        pixels; other sizes scale these.
    """
    rng = np.random.default_rng(seed)
    sy, sx = height / 200, width / 260
    cy, cx = rng.uniform(70, 130) * sy, rng.uniform(90, 170) * sx
    ry, rx = rng.uniform(20, 35) * sy, rng.uniform(30, 50) * sx
    yy, xx = np.mgrid[0:height, 0:width] + 0.5
    lesion = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    image = np.clip(rng.normal(150, 15, (height, width)) - 90 * lesion, 0, 255).astype(np.uint8)
    cam = np.exp(-(((yy - cy) / (1.6 * ry)) ** 2 + ((xx - cx) / (1.6 * rx)) ** 2)).astype(np.float32)
    return image, cam, lesion


def tiny_classifier(num_classes: int = 3, seed: int = 0) -> torch.nn.Module:
    """The registered ``tiny_cnn`` classifier with seeded random weights, in eval mode.

    Its CAM target layer is ``"layer4"``; it takes any input size (e.g. 32 x 32) and returns (B, C) logits.

    Example:
        >>> import torch
        >>> from samprompt.testing import tiny_classifier
        >>> tiny_classifier(3)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 3])
    """
    import torch

    from samprompt.classifiers import CLASSIFIERS

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: torch.nn.Module = CLASSIFIERS.get("tiny_cnn")(num_classes)
    return model.eval()


def save_tiny_classifier_checkpoint(
    path: str | Path,
    class_names: Sequence[str] = ("benign", "malignant", "normal"),
    *,
    input_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write :func:`tiny_classifier` as a samprompt classifier checkpoint (loadable by ``load_classifier``).

    Args:
        path: Destination file.
        class_names: Output classes, in order.
        input_size: Square input size stored in the checkpoint's preprocessing.
        seed: Weight seed.
    """
    from samprompt.classifiers import ClassifierInfo, save_classifier
    from samprompt.preprocess import Preprocessing

    info = ClassifierInfo(
        arch="tiny_cnn",
        class_names=tuple(class_names),
        preprocessing=Preprocessing(input_size=(input_size, input_size)),
        target_layer="layer4",
    )
    return save_classifier(path, tiny_classifier(len(class_names), seed), info)


register_tiny_sam()
