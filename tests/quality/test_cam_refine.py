"""Image-guided CAM refinement (:func:`samprompt.cams.refine.guided_filter`) and ``tta``'s ``refine``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from samprompt.cams.fused import TTACamExtractor
from samprompt.cams.refine import guided_filter
from samprompt.preprocess import Preprocessing
from samprompt.regions import box_iou, mask_to_box


def _scene(bright: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 120 x 160 noisy image with a 30 x 40 lesion (rows 40:70, columns 50:90) and a coarse CAM: an 8 x 8
    grid's blob around it, upsampled (what a stride-16 network gives), wider than the lesion and off-centre."""
    rng = np.random.default_rng(0)
    grey = np.full((120, 160), 0.6, np.float32)
    grey[40:70, 50:90] = 0.9 if bright else 0.25
    grey = np.clip(grey + rng.normal(0, 0.03, grey.shape), 0, 1).astype(np.float32)
    image = np.repeat((grey[..., None] * 255).astype(np.uint8), 3, axis=2)
    yy, xx = np.mgrid[0:120, 0:160]
    cam = np.exp(-(((yy - 60) / 28.0) ** 2 + ((xx - 76) / 34.0) ** 2)).astype(np.float32)
    lesion = np.zeros((120, 160), bool)
    lesion[40:70, 50:90] = True
    return image, cam, lesion


def _best_box_iou(cam: np.ndarray, lesion: np.ndarray) -> float:
    gt = mask_to_box(lesion)
    best = 0.0
    for t in np.arange(0.05, 0.96, 0.05):
        lab, n = ndi.label(cam >= t)
        if n:
            k = 1 + int(np.argmax(ndi.sum(cam >= t, lab, range(1, n + 1))))
            best = max(best, box_iou(mask_to_box(lab == k), gt))
    return best


@pytest.mark.parametrize("bright", [False, True])
def test_the_filtered_cam_follows_the_lesion_edges(bright: bool) -> None:
    image, cam, lesion = _scene(bright)
    out = guided_filter(cam, image, radius=0.12, eps=1e-4)
    assert out.shape == cam.shape and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    before, after = _best_box_iou(cam, lesion), _best_box_iou(out, lesion)
    assert before < 0.75 and after > 0.9, (before, after)
    # the lesion is high and its surround low, for dark and bright lesions alike
    assert out[lesion].mean() > 0.6 and out[~ndi.binary_dilation(lesion, iterations=6)].mean() < 0.3


def test_a_cam_linear_in_the_grey_level_is_kept() -> None:
    rng = np.random.default_rng(1)
    grey = ndi.gaussian_filter(rng.random((64, 80)), 3).astype(np.float32)
    grey = (grey - grey.min()) / (grey.max() - grey.min())
    out = guided_filter(1.0 - grey, grey, radius=0.1, eps=1e-6)
    np.testing.assert_allclose(out, 1.0 - grey, atol=0.02)


def test_flat_inputs_and_large_images() -> None:
    assert not guided_filter(np.full((20, 30), 0.4, np.float32), np.zeros((20, 30), np.uint8)).any()
    # larger than the working side: the coefficients are computed at 512 px and upsampled
    image, cam, lesion = _scene(False)
    big_image = np.kron(image, np.ones((5, 5, 1), np.uint8))
    big_cam = np.kron(cam, np.ones((5, 5), np.float32))
    out = guided_filter(big_cam, big_image)
    assert out.shape == (600, 800)
    assert _best_box_iou(out, np.kron(lesion, np.ones((5, 5), bool))) > 0.9


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match=r"shape \(10, 10\) is not the image's \(H, W\) \(10, 12\)"):
        guided_filter(np.zeros((10, 10)), np.zeros((10, 12), np.uint8))
    with pytest.raises(ValueError, match="radius must be in"):
        guided_filter(np.zeros((10, 10)), np.zeros((10, 10), np.uint8), radius=0.0)
    with pytest.raises(ValueError, match="eps must be in"):
        guided_filter(np.zeros((10, 10)), np.zeros((10, 10), np.uint8), eps=2.0)


def test_tta_refine_filters_the_fused_cam() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential()
    net.add_module("layer4", torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=4, padding=1), torch.nn.ReLU()))
    net.add_module("pool", torch.nn.AdaptiveAvgPool2d(1))
    net.add_module("flat", torch.nn.Flatten())
    net.add_module("fc", torch.nn.Linear(4, 2))
    image, _, _ = _scene(False)
    pre = Preprocessing(input_size=32)
    plain = TTACamExtractor(method="gradcam", target_layer="layer4", target=0)(net, [image], preprocessing=pre)[0]
    refined = TTACamExtractor(method="gradcam", target_layer="layer4", target=0, refine="guided",
                              refine_radius=0.1, refine_eps=1e-3)(net, [image], preprocessing=pre)[0]
    np.testing.assert_allclose(refined.cam, guided_filter(plain.cam, image, 0.1, 1e-3), atol=1e-6)
    np.testing.assert_array_equal(refined.probabilities, plain.probabilities)
    with pytest.raises(Exception, match="refine_radius"):
        TTACamExtractor(refine="guided", refine_radius=0.8)
