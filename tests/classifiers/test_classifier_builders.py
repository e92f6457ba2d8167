"""Classifier builders: registry, heads, initial weights (local files and the torch hub cache)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from samprompt.classifiers import CLASSIFIERS, build_classifier
from samprompt.classifiers.builders import cached_torchvision_weights
from samprompt.errors import CheckpointError, ConfigError, UnknownComponentError


@pytest.fixture(autouse=True)
def _no_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Any download attempt fails loudly; the hub cache is an empty temporary folder."""

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("samprompt tried to download something")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", boom)
    monkeypatch.setattr(torch.hub, "download_url_to_file", boom)


def test_registry_lists_builtins() -> None:
    assert {"resnet18", "resnet34", "resnet50", "tiny_cnn"} <= set(CLASSIFIERS.names())


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "tiny_cnn"])
def test_each_builder_builds_and_forwards(arch: str) -> None:
    torch.manual_seed(0)
    model = build_classifier(arch, 3).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()


def test_resnets_and_tiny_cnn_name_their_cam_layer() -> None:
    for arch in ("resnet18", "tiny_cnn"):
        model = build_classifier(arch, 2)
        assert model.cam_target_layer == "layer4"
        assert isinstance(model.get_submodule("layer4"), nn.Module)


def test_paper_head_is_relu_dropout_linear() -> None:
    model = build_classifier("resnet18", 3, head="paper", dropout=0.3)
    fc = model.fc
    assert isinstance(fc, nn.Sequential) and len(fc) == 3
    assert isinstance(fc[0], nn.ReLU)
    assert isinstance(fc[1], nn.Dropout) and fc[1].p == pytest.approx(0.3)
    assert isinstance(fc[2], nn.Linear) and (fc[2].in_features, fc[2].out_features) == (512, 3)


def test_fc_head_is_a_plain_linear_and_dropout_precedes_it() -> None:
    plain = build_classifier("resnet18", 2).fc
    assert isinstance(plain, nn.Linear) and plain.out_features == 2
    dropped = build_classifier("tiny_cnn", 2, dropout=0.5).fc
    assert isinstance(dropped, nn.Sequential)
    assert isinstance(dropped[0], nn.Dropout) and isinstance(dropped[1], nn.Linear)


def test_generic_torchvision_head_replaces_the_last_linear() -> None:
    model = build_classifier("torchvision:mobilenet_v3_small", 4, head="paper").eval()
    assert isinstance(model.classifier[-1], nn.Sequential)
    assert model.classifier[-1][-1].out_features == 4
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"num_classes": 1}, "num_classes"), ({"head": "mlp"}, "head"), ({"dropout": 1.0}, "dropout")],
)
def test_invalid_head_arguments(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"num_classes": 3, **kwargs}
    with pytest.raises(ConfigError, match=match):
        build_classifier("tiny_cnn", **args)  # type: ignore[arg-type]


def test_unknown_arch_suggests_a_name() -> None:
    with pytest.raises(UnknownComponentError, match="resnet18"):
        build_classifier("resnet81", 2)
    with pytest.raises(ConfigError, match="no model"):
        build_classifier("torchvision:not_a_model", 2)


def test_plugin_builder_can_be_registered() -> None:
    @CLASSIFIERS.register("test_linear_probe")
    def probe(
        num_classes: int, *, head: str = "fc", dropout: float = 0.0, weights: str | None = None
    ) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

    try:
        model = build_classifier("test_linear_probe", 2)
        assert model(torch.randn(1, 3, 8, 8)).shape == (1, 2)
    finally:
        CLASSIFIERS.remove("test_linear_probe")


def test_weights_from_a_local_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = build_classifier("tiny_cnn", 3, head="paper")
    path = tmp_path / "tiny.pt"
    torch.save(src.state_dict(), path)
    dst = build_classifier("tiny_cnn", 3, head="paper", weights=str(path))
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_imagenet_style_weights_keep_the_backbone_and_reinit_the_head(tmp_path: Path) -> None:
    torch.manual_seed(2)
    imagenet = torchvision.models.resnet18(weights=None)  # 1000-class head, like the real file
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in imagenet.state_dict().items()}}, path)
    model = build_classifier("resnet18", 3, head="paper", weights=str(path))
    assert torch.equal(model.conv1.weight, imagenet.conv1.weight)
    assert torch.equal(model.layer4[1].bn2.running_var, imagenet.layer4[1].bn2.running_var)
    assert model.fc[2].out_features == 3


def test_weights_that_do_not_fit_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "wrong.pt"
    torch.save(build_classifier("tiny_cnn", 2).state_dict(), path)
    with pytest.raises(CheckpointError, match="wrong.pt") as info:
        build_classifier("resnet18", 2, weights=str(path))
    assert "missing" in str(info.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        build_classifier("tiny_cnn", 2, weights=str(tmp_path / "absent.pt"))


def test_uncached_torchvision_weights_are_never_downloaded(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not cached") as info:
        build_classifier("resnet18", 3, weights="ResNet18_Weights.IMAGENET1K_V1")
    msg = str(info.value)
    assert "never downloads" in msg
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in msg


def test_cached_torchvision_weights_are_used(tmp_path: Path) -> None:
    torch.manual_seed(3)
    fake = torchvision.models.resnet18(weights=None)
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(fake.state_dict(), cache / "resnet18-f37072fd.pth")
    path, full = cached_torchvision_weights("IMAGENET1K_V1", "resnet18")
    assert full == "ResNet18_Weights.IMAGENET1K_V1" and path.is_file()
    model = build_classifier("resnet18", 2, weights="ResNet18_Weights.IMAGENET1K_V1")
    assert torch.equal(model.layer1[0].conv1.weight, fake.layer1[0].conv1.weight)


def test_weights_of_another_architecture_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="another architecture"):
        build_classifier("resnet34", 2, weights="ResNet18_Weights.IMAGENET1K_V1")
    with pytest.raises(ConfigError, match="no torchvision weights"):
        build_classifier("tiny_cnn", 2, weights="IMAGENET1K_V1")
