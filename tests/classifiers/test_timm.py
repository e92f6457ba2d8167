"""``timm:<name>`` classifiers: building, local weights, CAM layer, training from the CLI, CAM in the pipeline."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from samprompt.classifiers import build_classifier, load_classifier, read_info
from samprompt.errors import CheckpointError, ConfigError


@pytest.fixture
def timm() -> Any:
    """The timm module (tests skip without samprompt[timm])."""
    return pytest.importorskip("timm", reason="needs timm (samprompt[timm])")

SAMPLE = Path(__file__).resolve().parents[2] / "src" / "samprompt" / "sample" / "busi"


@pytest.mark.parametrize(
    ("name", "layer"), [("test_resnet", "layer4"), ("test_convnext", "stages.3"), ("test_vit", None)]
)
def test_build_gives_logits_and_the_cam_layer(timm: Any, name: str, layer: str | None) -> None:
    model = build_classifier(f"timm:{name}", 3, head="paper", dropout=0.2)
    assert getattr(model, "cam_target_layer", None) == layer
    assert model.training  # built in training mode, like the torchvision builders
    with torch.no_grad():
        out = model.eval()(torch.rand(2, 3, 160, 160))
    assert out.shape == (2, 3)
    if layer is not None:  # the recorded layer really is a (B, C, h, w) feature map
        seen: list[torch.Size] = []
        model.get_submodule(layer).register_forward_hook(lambda _m, _i, o: seen.append(o.shape))
        with torch.no_grad():
            model(torch.rand(1, 3, 160, 160))
        assert len(seen[0]) == 4 and seen[0][-1] > 1


def test_local_pretrained_weights_load_and_the_old_head_is_dropped(timm: Any, tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.torch")
    torch.manual_seed(1)
    imagenet = timm.create_model("test_resnet", pretrained=False, num_classes=1000)  # like a published file
    state = imagenet.state_dict()
    st.save_file(state, str(tmp_path / "model.safetensors"))
    torch.save(state, tmp_path / "model.pth")
    for file in ("model.safetensors", "model.pth"):
        model = build_classifier("timm:test_resnet", 2, weights=str(tmp_path / file))
        own = model.state_dict()
        backbone = [k for k in state if not k.startswith("fc.")]
        assert backbone and all(torch.equal(own[k], state[k]) for k in backbone)
        assert own["fc.weight"].shape == (2, state["fc.weight"].shape[1])  # re-initialised new head


def test_bad_names_and_weights_are_clear(timm: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="timm has no model 'no_such_net'"):
        build_classifier("timm:no_such_net", 2)
    with pytest.raises(CheckpointError, match="never downloads"):
        build_classifier("timm:test_resnet", 2, weights="timm/resnet18.a1_in1k")
    other = timm.create_model("test_convnext", num_classes=2)
    torch.save(other.state_dict(), tmp_path / "convnext.pth")
    with pytest.raises(CheckpointError, match="convnext.pth"):
        build_classifier("timm:test_resnet", 2, weights=str(tmp_path / "convnext.pth"))
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        build_classifier("timm:test_resnet", 2, weights=str(tmp_path / "bad.safetensors"))


def test_missing_timm_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` fail, installed or not
    with pytest.raises(ConfigError, match=r"classifier 'timm:resnet18' needs the timm package: pip install 'samprompt\[timm\]'"):
        build_classifier("timm:resnet18", 2)


def test_train_from_the_cli_then_cam_through_the_pipeline(timm: Any, tmp_path: Path) -> None:
    from samprompt.cli import main
    from samprompt.pipeline import PromptPipeline

    data = tmp_path / "data"
    for cls in ("benign", "malignant", "normal"):
        (data / cls).mkdir(parents=True)
        for img in sorted((SAMPLE / cls).glob("*).png"))[:4]:
            shutil.copy(img, data / cls / img.name)
            shutil.copy(img.with_name(img.stem + "_mask.png"), data / cls)
    out = tmp_path / "clf"
    args = ["--no-progress", "train", str(data), "--out", str(out), "--arch", "timm:test_resnet",
            "--epochs", "1", "--input-size", "64", "--device", "cpu", "--set", "batch_size=4"]
    assert main(args) == 0
    ckpt = out / "classifier.pt"
    info, _ = read_info(ckpt)
    assert info.arch == "timm:test_resnet" and info.target_layer == "layer4"
    model, _ = load_classifier(ckpt)  # rebuilt from the name, no download
    assert model.cam_target_layer == "layer4"

    pipe = PromptPipeline.from_config({
        "classifier": {"checkpoint": str(ckpt)},
        "cam": {"name": "gradcam", "params": {"target_layer": info.target_layer}},
        "prompts": [{"name": "box"}],
        "segmenter": {"name": "classical"},
        "device": "cpu",
    })
    with Image.open(next(data.glob("benign/*).png"))) as img:
        image = np.asarray(img.convert("RGB"))
    (cam,) = pipe.compute_cams([image])
    heat = np.asarray(cam.cam)
    assert heat.shape == image.shape[:2] and heat.dtype == np.float32
    assert 0.0 <= heat.min() < heat.max() <= 1.0  # a real, non-constant map
