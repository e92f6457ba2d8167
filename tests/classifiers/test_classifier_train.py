"""Training: loss goes down, best/early stopping, seeding, class weights, inputs and train_from_paths."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import samprompt.classifiers.train as train_mod
from samprompt.classifiers import (
    AugmentConfig,
    ExampleDataset,
    TaskSpec,
    TrainConfig,
    evaluate_classifier,
    examples_from_dataset,
    load_classifier,
    predict_logits,
    train_classifier,
    train_from_paths,
)
from samprompt.classifiers.inputs import Example, augment
from samprompt.errors import ConfigError, DataError
from samprompt.preprocess import Preprocessing

MakeExamples = Callable[..., list[Example]]


def _config(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = {"arch": "tiny_cnn", "epochs": 4, "batch_size": 8, "lr": 3e-3, "device": "cpu",
                            "preprocessing": Preprocessing(input_size=32)}
    return TrainConfig(**{**base, **kw})


def test_training_lowers_the_loss_and_keeps_the_best_epoch(
    tmp_path: Path, make_examples: MakeExamples, bright_task: TaskSpec
) -> None:
    seen: list[int] = []
    res = train_classifier(
        make_examples(24), make_examples(8, seed=1), task=bright_task, config=_config(epochs=3),
        checkpoint=tmp_path / "clf.pt", callback=lambda s: seen.append(s.epoch),
    )
    losses = [h.train_loss for h in res.history]
    assert seen == [1, 2, 3] and losses[-1] < losses[0]
    f1s = [h.val_macro_f1 for h in res.history]
    assert res.best_val_macro_f1 == max(f1s) and res.history[res.best_epoch - 1].val_macro_f1 == max(f1s)
    model, info = load_classifier(res.checkpoint_path)  # type: ignore[arg-type]
    assert info.metrics["best_epoch"] == res.best_epoch and info.train_config["arch"] == "tiny_cnn"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), res.model(x))
    report = evaluate_classifier(model, info, make_examples(10, seed=2))
    assert report.n == 10 and report.class_names == ("dark", "bright")
    assert predict_logits(model, [e[0] for e in make_examples(3)], info.preprocessing).shape == (3, 2)


def test_seeded_deterministic_runs_repeat(make_examples: MakeExamples, bright_task: TaskSpec) -> None:
    cfg = _config(epochs=2, deterministic=True, seed=7)
    a = train_classifier(make_examples(16), make_examples(6, seed=1), task=bright_task, config=cfg)
    b = train_classifier(make_examples(16), make_examples(6, seed=1), task=bright_task, config=cfg)
    assert [h.train_loss for h in a.history] == [h.train_loss for h in b.history]
    assert not torch.are_deterministic_algorithms_enabled()  # restored afterwards


def test_early_stopping_without_improvement(
    monkeypatch: pytest.MonkeyPatch, make_examples: MakeExamples, bright_task: TaskSpec
) -> None:
    def frozen_eval(*args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray, float]:
        return np.array([[1.0, 0.0]] * 4, np.float32), np.array([0, 1, 0, 1]), 0.7

    monkeypatch.setattr(train_mod, "run_loader", frozen_eval)
    cfg = _config(epochs=6, patience=2)
    res = train_classifier(make_examples(8), make_examples(4), task=bright_task, config=cfg)
    assert res.stopped_early and len(res.history) == 3 and res.best_epoch == 1


def test_keep_last_returns_and_saves_the_final_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_examples: MakeExamples, bright_task: TaskSpec
) -> None:
    # the validation macro-F1 is best after epoch 1 (1.0) and worse after every later epoch (0.33)
    scores = iter([np.array([[0.0, 1.0], [1.0, 0.0]] * 2, np.float32)] + [np.array([[1.0, 0.0]] * 4, np.float32)] * 9)

    def falling_eval(*args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray, float]:
        return next(scores), np.array([1, 0, 1, 0]), 0.7

    monkeypatch.setattr(train_mod, "run_loader", falling_eval)
    train, val = make_examples(8), make_examples(4)
    last = train_classifier(train, val, task=bright_task, config=_config(epochs=3, keep="last", patience=None, seed=3),
                            checkpoint=tmp_path / "last.pt")
    assert last.best_epoch == 3 and [round(h.val_macro_f1 or 0, 2) for h in last.history] == [1.0, 0.33, 0.33]
    assert last.best_val_macro_f1 == pytest.approx(1 / 3)
    model, info = load_classifier(tmp_path / "last.pt")
    assert info.metrics["best_epoch"] == 3 and info.train_config["keep"] == "last"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), last.model(x))
    # the same training keeping the best epoch returns other (epoch-1) weights
    scores = iter([np.array([[0.0, 1.0], [1.0, 0.0]] * 2, np.float32)] + [np.array([[1.0, 0.0]] * 4, np.float32)] * 9)
    best = train_classifier(train, val, task=bright_task, config=_config(epochs=3, patience=None, seed=3))
    assert best.best_epoch == 1
    with torch.no_grad():
        assert not torch.allclose(best.model(x), last.model(x))
    # patience still ends the training; the weights of the epoch it stopped after are kept
    scores = iter([np.array([[0.0, 1.0], [1.0, 0.0]] * 2, np.float32)] + [np.array([[1.0, 0.0]] * 4, np.float32)] * 9)
    early = train_classifier(train, val, task=bright_task, config=_config(epochs=6, keep="last", patience=2))
    assert early.stopped_early and len(early.history) == 3 and early.best_epoch == 3


def test_without_validation_the_last_epoch_is_kept(
    make_examples: MakeExamples, bright_task: TaskSpec
) -> None:
    res = train_classifier(
        make_examples(9), None, task=bright_task, config=_config(epochs=2, batch_size=4), progress=True
    )
    assert res.best_epoch == 2 and res.best_val_macro_f1 is None and res.history[0].val_loss is None


def test_class_weights(bright_task: TaskSpec) -> None:
    w = train_mod._class_weights("auto", [0, 0, 0, 1], bright_task)
    assert w is not None
    torch.testing.assert_close(w, torch.tensor([4 / 6, 2.0]))
    assert train_mod._class_weights(None, [0, 1], bright_task) is None
    with pytest.raises(ConfigError, match="class_weights"):
        train_mod._class_weights([1.0, 2.0, 3.0], [0, 1], bright_task)
    with pytest.raises(DataError, match="bright"):
        train_mod._class_weights("auto", [0, 0], bright_task)


def test_bad_inputs_are_reported(make_examples: MakeExamples, bright_task: TaskSpec) -> None:
    bad = [*make_examples(4), (np.zeros((8, 8), np.uint8), "grey")]
    with pytest.raises(DataError, match="example 4"):
        train_classifier(bad, None, task=bright_task, config=_config(epochs=1))
    with pytest.raises(DataError, match="at least one"):
        train_classifier([], None, task=bright_task, config=_config(epochs=1))
    with pytest.raises(ConfigError, match=r"train\.lr"):
        TrainConfig.parse({"lr": -1})
    with pytest.raises(ConfigError, match=r"train\.epoch"):
        TrainConfig.parse({"epoch": 3})
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            train_classifier(make_examples(4), None, task=bright_task, config=_config(device="cuda"))


def test_augmentation_keeps_geometry_and_range() -> None:
    torch.manual_seed(0)
    x = torch.rand(3, 20, 24)
    y = augment(x, AugmentConfig())
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert torch.equal(augment(x, AugmentConfig(enabled=False)), x)
    flip_only = AugmentConfig(
        hflip=1.0, rotation=0.0, scale=(1.0, 1.0), translate=0.0, brightness=0.0, contrast=0.0
    )
    assert torch.equal(augment(x, flip_only), torch.flip(x, dims=[-1]))


def test_example_dataset_loads_paths_arrays_and_callables(tmp_path: Path) -> None:
    img = np.zeros((10, 14, 3), np.uint8)
    img[:, :7] = 255
    Image.fromarray(img).save(tmp_path / "a.png")
    pre = Preprocessing(input_size=16, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    ds = ExampleDataset([str(tmp_path / "a.png"), img, lambda: img], [0, 1, 0], pre)
    xs = [ds[i][0] for i in range(3)]
    assert all(x.shape == (3, 16, 16) for x in xs) and ds[1][1] == 1
    torch.testing.assert_close(xs[0], xs[1], atol=1 / 255, rtol=0)
    assert float(xs[0][:, :, :6].mean()) > 0.9 and float(xs[0][:, :, 10:].mean()) < 0.1
    missing = ExampleDataset([str(tmp_path / "gone.png")], [0], pre)
    with pytest.raises(DataError, match="gone.png"):
        missing[0]


def _class_folders(root: Path, per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for label, bright in (("normal", False), ("benign", True), ("malignant", True)):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            img = (rng.random((30, 34)) * 80).astype(np.uint8)
            if bright:
                y, x = rng.integers(2, 16, size=2)
                img[y : y + 10, x : x + 10] = 230 if label == "benign" else 160
            Image.fromarray(img).save(root / label / f"{label} ({i + 1}).png")
    return root


def test_train_from_paths_binary(tmp_path: Path) -> None:
    data = _class_folders(tmp_path / "data")
    res = train_from_paths(data, None, tmp_path / "out", _config(epochs=2), task="binary")
    assert res.info.class_names == ("normal", "abnormal")
    assert res.info.label_mapping == {"benign": "abnormal", "malignant": "abnormal", "normal": "normal"}
    assert set(res.reports) == {"val", "test"}
    for name in ("classifier.pt", "split.json", "train_result.json"):
        assert (tmp_path / "out" / name).is_file()
    summary = json.loads((tmp_path / "out" / "train_result.json").read_text())
    assert summary["best_epoch"] == res.best_epoch and "test" in summary["reports"]
    # the saved split can be reused, and examples_from_dataset accepts ids and indices alike
    res2 = train_from_paths(data, tmp_path / "out" / "split.json", tmp_path / "out2", _config(epochs=1))
    assert res2.info.class_names == ("benign", "malignant", "normal")
    from samprompt.data import open_dataset

    ds = open_dataset(data)
    by_id, by_index = examples_from_dataset(ds, [ds.ids[3]]), examples_from_dataset(ds, [3])
    assert by_id[0][1] == by_index[0][1] == ds[3].label
    assert np.array_equal(by_id[0][0](), by_index[0][0]())  # type: ignore[operator]
    with pytest.raises(DataError, match="nope"):
        examples_from_dataset(ds, ["nope"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_on_cuda(make_examples: MakeExamples, bright_task: TaskSpec) -> None:
    res = train_classifier(make_examples(16), make_examples(6, seed=1), task=bright_task,
                           config=_config(epochs=1, device="cuda"))
    assert res.device.startswith("cuda") and next(res.model.parameters()).is_cuda
