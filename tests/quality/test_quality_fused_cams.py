"""Test-time-augmented CAMs (``tta``) on a small random CNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from samprompt.cams import CAM_EXTRACTORS
from samprompt.cams.fused import TTACamExtractor
from samprompt.preprocess import Preprocessing


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer3 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.layer4 = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer4(self.layer3(x)).mean((2, 3)))


@pytest.fixture()
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (40, 50, 3), dtype=np.uint8), rng.integers(0, 255, (30, 20), dtype=np.uint8)]


def test_tta_cams_have_original_sizes_and_range(images: list[np.ndarray]) -> None:
    torch.manual_seed(0)
    ext = CAM_EXTRACTORS.create("tta", {"method": "gradcam", "target_layer": ["layer3", "layer4"],
                                        "flips": ["h", "v"], "scales": [1.5], "target": [0, 1]})
    res = ext(_Net(), images, preprocessing=Preprocessing(input_size=32))
    assert [r.cam.shape for r in res] == [(40, 50), (30, 20)]
    for r in res:
        assert r.cam.dtype == np.float32 and r.cam.min() >= 0 and r.cam.max() <= 1
        assert r.target == (0, 1) and r.probabilities.shape == (3,)


def test_without_views_equals_the_base_method(images: list[np.ndarray]) -> None:
    net = _Net()
    pre = Preprocessing(input_size=32)
    tta = TTACamExtractor(method="gradcam", target_layer="layer4", flips=[], fusion="max")(net, images, preprocessing=pre)
    base = CAM_EXTRACTORS.create("gradcam", {"target_layer": "layer4"})(net, images, preprocessing=pre)
    for a, b in zip(tta, base):
        np.testing.assert_allclose(a.cam, b.cam, atol=1e-5)


def test_flip_of_a_flipped_image_gives_the_mirrored_cam(images: list[np.ndarray]) -> None:
    net = _Net()
    pre = Preprocessing(input_size=32)
    ext = TTACamExtractor(method="gradcam", target_layer="layer4", flips=["h"], target=0)
    a = ext(net, [images[0]], preprocessing=pre)[0].cam
    b = ext(net, [np.ascontiguousarray(images[0][:, ::-1])], preprocessing=pre)[0].cam
    np.testing.assert_allclose(a, b[:, ::-1], atol=1e-4)


def test_bad_method_is_refused(images: list[np.ndarray]) -> None:
    with pytest.raises(ValueError, match="tta.method"):
        TTACamExtractor(method="tta")(_Net(), images)
