"""Classifier checkpoints: round trip and every way a file can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from samprompt.classifiers import ClassifierInfo, TaskSpec, build_classifier, load_classifier, save_classifier
from samprompt.classifiers.checkpoint import read_info
from samprompt.errors import CheckpointError, ConfigError
from samprompt.preprocess import Preprocessing

BINARY = TaskSpec(class_names=("normal", "abnormal"),
                  mapping={"normal": "normal", "benign": "abnormal", "malignant": "abnormal"})


def _saved(
    tmp_path: Path, arch: str = "tiny_cnn", head: str = "paper"
) -> tuple[torch.nn.Module, ClassifierInfo, Path]:
    torch.manual_seed(0)
    model = build_classifier(arch, 2, head=head, dropout=0.25).eval()  # type: ignore[arg-type]
    info = ClassifierInfo.for_model(
        model, arch=arch, task=BINARY, head=head, dropout=0.25,
        preprocessing=Preprocessing(input_size=(32, 40), mode="letterbox"),
        train_config={"epochs": 3, "lr": 0.001}, metrics={"best_epoch": 2, "val_macro_f1": 0.5},
    )
    path = save_classifier(tmp_path / "sub" / "clf.pt", model, info)
    return model, info, path


def test_save_load_gives_identical_logits_and_metadata(tmp_path: Path) -> None:
    model, info, path = _saved(tmp_path)
    loaded, info2 = load_classifier(path)
    x = torch.randn(3, 3, 32, 40)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert not loaded.training
    assert info2 == info
    assert info2.task == BINARY and info2.class_names == ("normal", "abnormal")
    assert info2.preprocessing.mode == "letterbox" and info2.preprocessing.input_size == (32, 40)
    assert info2.target_layer == "layer4" and loaded.cam_target_layer == "layer4"
    assert info2.samprompt_version


def test_file_loads_with_plain_weights_only_torch_load(tmp_path: Path) -> None:
    _, _, path = _saved(tmp_path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format"] == "samprompt.classifier"
    assert set(raw["meta"]) >= {"arch", "head", "dropout", "class_names", "label_mapping", "preprocessing",
                                "samprompt_version", "train_config"}


def _resave(path: Path, **changes: object) -> Path:
    raw = torch.load(path, map_location="cpu", weights_only=True)
    for k, v in changes.items():
        if k == "meta" and v is not None:
            raw["meta"].update(v)  # type: ignore[arg-type]
        elif v is None:
            del raw[k]
        else:
            raw[k] = v
    torch.save(raw, path)
    return path


def test_wrong_architecture_is_reported(tmp_path: Path) -> None:
    _, _, path = _saved(tmp_path, arch="resnet18", head="fc")
    _resave(path, meta={"arch": "resnet34"})
    with pytest.raises(CheckpointError, match="clf.pt") as info:
        load_classifier(path)
    assert "resnet34" in str(info.value) and "architecture" in str(info.value)


def test_wrong_number_of_classes_is_reported(tmp_path: Path) -> None:
    _, _, path = _saved(tmp_path)
    _resave(path, meta={"class_names": ["a", "b", "c"], "label_mapping": {}})
    with pytest.raises(CheckpointError, match="number of classes") as info:
        load_classifier(path)
    assert "2 outputs" in str(info.value) and "clf.pt" in str(info.value)


def test_pickled_whole_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(build_classifier("tiny_cnn", 2), path)
    with pytest.raises(CheckpointError, match="pickled") as info:
        load_classifier(path)
    assert "whole.pt" in str(info.value)


def test_corrupted_and_missing_files(tmp_path: Path) -> None:
    _, _, path = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupted") as info:
        load_classifier(path)
    assert str(path) in str(info.value)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_classifier(junk)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_classifier(tmp_path / "nope.pt")


def test_bare_state_dict_and_missing_metadata(tmp_path: Path) -> None:
    bare = tmp_path / "bare.pt"
    torch.save(build_classifier("tiny_cnn", 2).state_dict(), bare)
    with pytest.raises(CheckpointError, match="bare state dict"):
        load_classifier(bare)
    _, _, path = _saved(tmp_path)
    _resave(path, meta=None)
    with pytest.raises(CheckpointError, match="metadata"):
        read_info(path)


def test_invalid_or_unknown_metadata(tmp_path: Path) -> None:
    _, _, path = _saved(tmp_path)
    _resave(path, meta={"head": "mlp"})
    with pytest.raises(CheckpointError, match=r"meta\.head"):
        load_classifier(path)
    _, _, path = _saved(tmp_path)
    _resave(path, meta={"arch": "no_such_net"})
    with pytest.raises(CheckpointError, match="no_such_net"):
        load_classifier(path)
    _, _, path = _saved(tmp_path)
    _resave(path, format_version=99)
    with pytest.raises(CheckpointError, match="format_version"):
        load_classifier(path)


def test_save_refuses_a_class_count_mismatch(tmp_path: Path) -> None:
    model = build_classifier("tiny_cnn", 3)
    info = ClassifierInfo.for_model(model, arch="tiny_cnn", task=BINARY)
    with pytest.raises(ConfigError, match="3 outputs"):
        save_classifier(tmp_path / "x.pt", model, info)
