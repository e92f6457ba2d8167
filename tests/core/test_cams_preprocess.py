from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from samprompt import CAM_EXTRACTORS, Preprocessing, PromptPipeline
from samprompt.cams import normalize_targets


class BrightnessNet(nn.Module):
    """Activation = image brightness, so every gradient CAM equals the (normalised) brightness."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 1, 1, bias=False)
        nn.init.constant_(self.features.weight, 1.0)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.features(x))
        return self.fc(a.mean(dim=(2, 3)))


def _blob_image() -> np.ndarray:
    img = np.zeros((90, 240, 3), np.uint8)  # non-square, wide
    img[20:50, 170:230] = 255  # blob near the right edge
    return img


@pytest.mark.parametrize("mode", ["resize", "letterbox"])
@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "layercam"])
def test_cam_maps_blob_back_to_original_coordinates(mode: str, method: str) -> None:
    prep = Preprocessing(input_size=64, mode=mode, mean=(0, 0, 0), std=(1, 1, 1))
    extractor = CAM_EXTRACTORS.create(method, {"target_layer": "relu"})
    model = BrightnessNet()
    (res,) = extractor(model, [_blob_image()], preprocessing=prep, targets=0)
    assert res.cam.shape == (90, 240) and res.cam.dtype == np.float32
    assert res.cam.min() == 0.0 and res.cam.max() == pytest.approx(1.0)
    ys, xs = np.nonzero(res.cam > 0.5)
    assert abs(ys.min() - 20) <= 2 and abs(ys.max() - 49) <= 2
    assert abs(xs.min() - 170) <= 3 and abs(xs.max() - 229) <= 3
    assert res.target == (0,)
    assert not model.relu._forward_hooks and not model.relu._forward_pre_hooks  # hooks released


def test_pipeline_gives_box_around_blob_in_original_pixels() -> None:
    pipe = PromptPipeline(
        cam=CAM_EXTRACTORS.create("gradcam", {"target_layer": "relu"}),
        masker=PromptPipeline.from_config({}).masker,
        prompts=PromptPipeline.from_config({"prompts": [{"name": "box"}]}).strategies,
        segmenter=PromptPipeline.from_config({}).segmenter,
        classifier=BrightnessNet(),
        preprocessing=Preprocessing(input_size=64, mode="letterbox", mean=(0, 0, 0), std=(1, 1, 1)),
    )
    res = pipe(_blob_image(), target=0)
    box = res.strategies["box"].prompt.box
    assert np.allclose(box, [170, 20, 230, 50], atol=3)


def test_hooks_released_when_model_raises() -> None:
    class Broken(BrightnessNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.relu(self.features(x))
            raise RuntimeError("model failure")

    model = Broken()
    with pytest.raises(RuntimeError, match="model failure"):
        CAM_EXTRACTORS.create("gradcam", {"target_layer": "relu"})(model, [_blob_image()])
    assert not model.relu._forward_hooks


def test_summed_target_and_predicted() -> None:
    model = BrightnessNet()
    ex = CAM_EXTRACTORS.create("gradcam", {"target_layer": "relu", "batch_size": 1})
    res = ex(model, [_blob_image(), _blob_image()[:, :100]], targets=["predicted", (0, 1)])
    assert res[0].target == (res[0].predicted,) and res[1].target == (0, 1)
    assert res[1].cam.shape == (90, 100)
    assert normalize_targets((0, 1), 3) == [(0, 1)] * 3
    with pytest.raises(ValueError, match="out of range"):
        normalize_targets([5], 1, num_classes=2)
    with pytest.raises(ValueError, match="3 images"):
        normalize_targets([0, 1], 3)


def test_preprocessing_geometry_and_inverse_are_exact() -> None:
    prep = Preprocessing(input_size=(100, 100), mode="letterbox")
    geo = prep.geometry((50, 200))
    assert geo.content == (0.0, 37.0, 100.0, 62.0)  # 25 rows of content, centred
    _, geo2 = prep.to_tensor(np.zeros((50, 200, 3), np.uint8))
    assert geo2 == geo
    # A map equal to the input's x coordinate maps back to the original's x scaled by 0.5.
    xs = torch.arange(100, dtype=torch.float32).add(0.5).expand(100, 100)
    back = Preprocessing.to_original(xs, geo2)
    assert back.shape == (50, 200)
    # exact in the interior; the outermost half pixel is clamped to the border value
    assert torch.allclose(back[0, 1:-1], (torch.arange(1, 199) + 0.5) * 0.5, atol=1e-4)
    with pytest.raises(ValueError):
        Preprocessing(input_size=4)


@pytest.mark.parametrize("mode", ["resize", "letterbox"])
def test_preprocessing_on_a_device_equals_the_cpu_path(mode: str) -> None:
    img = np.random.default_rng(0).integers(0, 256, (70, 130, 3), dtype=np.uint8)
    img.flags.writeable = False
    prep = Preprocessing(input_size=(48, 64), mode=mode, pad_value=0.5)
    ref, geo = prep.to_tensor(img)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        x, g = prep.to_tensor(img, device=device)
        assert g == geo and x.shape == (3, 48, 64) and x.device.type == device
        torch.testing.assert_close(x.cpu(), ref, rtol=0, atol=1e-4 if device == "cuda" else 0)
        xb, geos = prep.batch([img, img], device=device)
        assert xb.shape == (2, 3, 48, 64) and geos == [geo, geo] and xb.device.type == device
    if mode == "letterbox":
        assert float(ref[0, 0, 0]) == pytest.approx((0.5 - 0.485) / 0.229)  # the pad value, normalised
