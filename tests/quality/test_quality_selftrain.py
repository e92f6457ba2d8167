"""Self-training (``samprompt.classifiers.selftrain``) and its agreement term in the ``candidates`` strategy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from samprompt.classifiers import selftrain
from samprompt.classifiers.selftrain import (
    SelfTrainNet,
    confident,
    load_selftrain_net,
    make_pseudo_masks,
    net_box,
    predict_map,
    save_selftrain_net,
    self_train,
    train_selftrain_net,
)
from samprompt.errors import CheckpointError
from samprompt.prompts.candidates import CandidatePromptStrategy
from samprompt.regions import box_iou, mask_to_box
from samprompt.testing import save_tiny_classifier_checkpoint


def _scene(seed: int, H: int = 120, W: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """Bright speckle with one dark elliptic lesion at a seeded place."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    cy, cx = rng.uniform(35, H - 35), rng.uniform(40, W - 40)
    lesion = ((xx - cx) / 25) ** 2 + ((yy - cy) / 18) ** 2 <= 1
    img = 160 + 20 * rng.standard_normal((H, W))
    img[lesion] = 50 + 12 * rng.standard_normal(lesion.sum())
    return np.clip(img, 0, 255).astype(np.uint8), lesion


def test_net_shapes_and_save_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = SelfTrainNet().eval()
    assert net(torch.zeros(2, 3, 64, 64)).shape == (2, 1, 64, 64)
    net.input_size = 64  # type: ignore[assignment]
    img, _ = _scene(0)
    prob = predict_map(net, img)
    assert prob.shape == img.shape and prob.dtype == np.float32 and 0 <= prob.min() <= prob.max() <= 1
    path = save_selftrain_net(net, tmp_path / "st.pt")
    again = load_selftrain_net(path)
    assert again.input_size == 64  # type: ignore[attr-defined]
    np.testing.assert_array_equal(predict_map(again, img), prob)


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="missing.pt.*does not exist"):
        load_selftrain_net(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt.*(corrupted|not a PyTorch file|cut short)"):
        load_selftrain_net(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="other.pt.*not a samprompt self-training net"):
        load_selftrain_net(other)
    bad = tmp_path / "bad.pt"
    torch.save({"format": "samprompt-selftrain", "version": 1, "input_size": 32,
                "state_dict": {"head.0.weight": torch.zeros(1)}}, bad)
    with pytest.raises(CheckpointError, match="bad.pt.*do not fit"):
        load_selftrain_net(bad)


def test_training_learns_the_masks() -> None:
    """A few epochs on 12 scenes: the net's box finds the lesion of a scene it has not seen."""
    scenes = [_scene(k) for k in range(12)]
    images, masks = [s[0] for s in scenes], [s[1] for s in scenes]
    masks[-1] = None  # an image without a lesion (empty target)
    net = train_selftrain_net(images, masks, init=torchvision.models.resnet18(weights=None), size=64,
                              epochs=15, batch_size=6, lr=3e-3)
    assert net.input_size == 64 and not net.training  # type: ignore[attr-defined]
    img, lesion = _scene(99)
    box = net_box(predict_map(net, img))
    assert box is not None and box_iou(box, mask_to_box(lesion)) > 0.5


def test_training_input_errors(tmp_path: Path) -> None:
    img, lesion = _scene(0)
    with pytest.raises(ValueError, match="2 images but 1 masks"):
        train_selftrain_net([img, img], [lesion])
    with pytest.raises(ValueError, match="no training images"):
        train_selftrain_net([], [])
    with pytest.raises(ValueError, match=r"masks\[0\] is \(5, 5\)"):
        train_selftrain_net([img], [np.zeros((5, 5), bool)], epochs=1)
    ckpt = save_tiny_classifier_checkpoint(tmp_path / "tiny.pt")
    with pytest.raises(TypeError, match="torchvision-style ResNet"):
        train_selftrain_net([img], [lesion], init=ckpt, epochs=1)


def test_pseudo_masks_and_confidence() -> None:
    scenes = [_scene(k) for k in range(3)]
    pseudo = make_pseudo_masks(CandidatePromptStrategy(), [s[0] for s in scenes])
    for (mask, score), (_, lesion) in zip(pseudo, scenes):
        assert mask is not None and np.isfinite(score)
        assert np.count_nonzero(mask & lesion) / np.count_nonzero(mask | lesion) > 0.6
    keep = confident(pseudo, keep=2 / 3)
    assert sum(keep) == 2 and not keep[int(np.argmin([s for _, s in pseudo]))]
    with pytest.raises(ValueError, match="keep"):
        confident(pseudo, keep=0.0)
    assert confident([(None, 1.0)]) == [False]


def test_agreement_moves_the_choice_to_the_net_box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two similar dark blobs: the net's box (here a stand-in map) decides between them."""
    rng = np.random.default_rng(5)
    H, W = 140, 220
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    left = ((xx - 55) / 24) ** 2 + ((yy - 70) / 17) ** 2 <= 1
    right = ((xx - 165) / 22) ** 2 + ((yy - 70) / 16) ** 2 <= 1
    img = 165 + 15 * rng.standard_normal((H, W))
    img[left | right] = 50 + 10 * rng.standard_normal((left | right).sum())
    img = np.clip(img, 0, 255).astype(np.uint8)
    zeros = (np.zeros((H, W), bool), np.zeros((H, W), np.float32))

    base = CandidatePromptStrategy()(*zeros, image=img)
    chosen = left if box_iou(base.box, mask_to_box(left)) > 0.5 else right
    other = right if chosen is left else left
    assert box_iou(base.box, mask_to_box(chosen)) > 0.5

    path = save_selftrain_net(SelfTrainNet(), tmp_path / "net.pt", size=32)
    monkeypatch.setattr(selftrain, "predict_map", lambda net, image: other.astype(np.float32))
    voted = CandidatePromptStrategy(agreement_net=path)(*zeros, image=img)
    assert box_iou(voted.box, mask_to_box(other)) > 0.5
    off = CandidatePromptStrategy(agreement_net=path, agreement_weight=0.0)(*zeros, image=img)
    np.testing.assert_array_equal(off.box, base.box)
    assert CandidatePromptStrategy(agreement_net=path).to_config()["params"]["agreement_net"] == str(path)


def test_self_train_runs_the_recipe() -> None:
    """``self_train`` = pseudo masks, the confident ones + empty images, training (steps reported)."""
    scenes = [_scene(k) for k in range(5)]
    steps: dict[str, int] = {}
    net, pseudo = self_train([s[0] for s in scenes], [_scene(9)[0]], keep=0.6, size=32, epochs=2, batch_size=3,
                             init=torchvision.models.resnet18(weights=None),
                             progress=lambda step, done, total: steps.__setitem__(step, done))
    assert len(pseudo) == 5 and all(m is not None for m, _ in pseudo)
    assert steps == {"pseudo masks": 5, "self-training": 2}
    assert isinstance(net, SelfTrainNet) and net.input_size == 32  # type: ignore[attr-defined]


def test_old_module_path_re_exports_the_moved_module() -> None:
    import samprompt.prompts.selftrain as old

    assert old.self_train is selftrain.self_train and old.SelfTrainNet is selftrain.SelfTrainNet
