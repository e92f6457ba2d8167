"""Training recipes: knobs and their validation, dilation/pooling, border erasing, the CAM loss terms,
checkpoints that record and rebuild the recipe, and a CAM that finds a known lesion despite a shortcut."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from samprompt.cams import CAM_EXTRACTORS
from samprompt.classifiers import TaskSpec, TrainConfig, build_classifier, load_classifier, train_classifier
from samprompt.classifiers.inputs import Example, ExampleDataset, erase_borders
from samprompt.classifiers.recipes import (
    RECIPES,
    LSEPool,
    RecipeKnobs,
    TopKPool,
    TrainObjective,
    adapt_architecture,
    architecture_of,
    erase_top,
)
from samprompt.errors import ConfigError
from samprompt.preprocess import Preprocessing

SIDE = 48


def _layer4_side(model: nn.Module, side: int = 64) -> int:
    seen: list[torch.Tensor] = []
    hook = model.get_submodule("layer4").register_forward_hook(lambda _m, _i, o: seen.append(o))
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, side, side))
    hook.remove()
    return int(seen[0].shape[-1])


def test_knobs_follow_the_recipe_and_explicit_values_win() -> None:
    assert TrainConfig().knobs() == RecipeKnobs() == RECIPES["plain"]
    loc = TrainConfig(recipe="localise").knobs()
    assert loc.output_stride == 16 and loc.border_erase == 0.15 and loc.cam_border_weight == 1.0
    mixed = TrainConfig(recipe="localise", output_stride=8, cam_border_weight=0.0).knobs()
    assert (mixed.output_stride, mixed.cam_border_weight, mixed.border_erase) == (8, 0.0, 0.15)
    resolved = TrainConfig(recipe="localise", pooling="topk").resolved()
    assert (resolved.output_stride, resolved.pooling, resolved.flip_consistency) == (16, "topk", 0.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("recipe", "sharp"), ("output_stride", 4), ("pooling", "max"), ("border_erase", 0.6),
     ("cam_border_weight", -1.0), ("flip_consistency", float("nan")), ("adversarial_erase", -0.5),
     ("erase_threshold", 1.0)],
)
def test_bad_knobs_are_config_errors_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"classifier\.train\.{field}"):
        TrainConfig.parse({field: value}, "classifier.train")


@pytest.mark.parametrize(("stride", "side"), [(32, 2), (16, 4), (8, 8)])
def test_output_stride_dilates_resnet_and_keeps_its_weights(stride: int, side: int) -> None:
    torch.manual_seed(0)
    model = build_classifier("resnet18", 3)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    adapt_architecture(model, stride, "avg")
    assert _layer4_side(model) == side
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes
    assert model.cam_target_layer == "layer4"  # type: ignore[comparison-overlap]


def test_output_stride_of_a_small_net_drops_its_last_downsamplings() -> None:
    assert _layer4_side(build_classifier("tiny_cnn", 2)) == 8  # stride 8 as built
    assert _layer4_side(adapt_architecture(build_classifier("tiny_cnn", 2), 16, "avg")) == 16
    assert _layer4_side(adapt_architecture(build_classifier("tiny_cnn", 2), 8, "avg")) == 32


def test_pooling_modules_lie_between_mean_and_max() -> None:
    x = torch.randn(2, 5, 4, 6)
    mean, peak = x.mean((2, 3)), x.amax((2, 3))
    lse, top = LSEPool()(x)[:, :, 0, 0], TopKPool()(x)[:, :, 0, 0]
    assert lse.shape == top.shape == (2, 5)
    assert bool((lse >= mean - 1e-5).all() and (lse <= peak + 1e-5).all() and (top > mean).all())
    torch.testing.assert_close(TopKPool(fraction=1.0)(x)[:, :, 0, 0], mean)
    model = adapt_architecture(build_classifier("tiny_cnn", 2), None, "lse")
    assert isinstance(model.avgpool, LSEPool) and model(torch.randn(2, 3, 32, 32)).shape == (2, 2)


def test_architecture_knobs_on_a_model_without_stages_are_config_errors() -> None:
    flat = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ConfigError, match=r"train\.output_stride"):
        adapt_architecture(flat, 16, "avg")
    with pytest.raises(ConfigError, match=r"train\.pooling"):
        adapt_architecture(flat, None, "topk")


def test_erase_borders_covers_at_most_the_fraction_with_the_fill() -> None:
    torch.manual_seed(0)
    covered = []
    for _ in range(50):
        x = erase_borders(torch.full((3, 40, 40), 0.5), 0.25, fill=0.0)
        rows, cols = (x == 0).all(0).all(1), (x == 0).all(0).all(0)
        assert bool(((x == 0) | (x == 0.5)).all())
        assert int(rows[:20].sum()) <= 10 and int(rows[20:].sum()) <= 10 and int(cols[:20].sum()) <= 10
        covered.append(int((x == 0).sum()))
    assert 0 < sum(c > 0 for c in covered) < 50
    x = torch.rand(3, 10, 10)
    torch.testing.assert_close(erase_borders(x.clone(), 0.0, fill=0.0), x)


def test_dataset_erases_borders_only_when_asked() -> None:
    img = np.full((20, 20, 3), 128, np.uint8)
    pre = Preprocessing(input_size=20, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    torch.manual_seed(3)
    plain = ExampleDataset([img] * 8, [0] * 8, pre)
    assert all(bool((plain[i][0] > 0.4).all()) for i in range(8))
    erased = ExampleDataset([img] * 8, [0] * 8, pre, border_erase=0.3)
    assert any(bool((erased[i][0] == 0).any()) for i in range(8))


def test_plain_objective_is_the_cross_entropy() -> None:
    torch.manual_seed(0)
    model = build_classifier("tiny_cnn", 2).train()
    loss_fn = nn.CrossEntropyLoss()
    obj = TrainObjective(model, loss_fn, RECIPES["plain"])
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 0, 1])
    loss, logits = obj(x, y)
    torch.testing.assert_close(loss, loss_fn(model(x), y))
    assert logits.shape == (4, 2) and obj._hook is None


def test_cam_border_term_adds_the_border_share_of_the_cam() -> None:
    torch.manual_seed(0)
    model = build_classifier("tiny_cnn", 2).train()
    loss_fn = nn.CrossEntropyLoss()
    obj = TrainObjective(model, loss_fn, RecipeKnobs(cam_border_weight=2.0))
    x, y = torch.randn(3, 3, 64, 64), torch.tensor([0, 1, 1])
    loss, _ = obj(x, y)
    acts: list[torch.Tensor] = []
    h = model.layer4.register_forward_hook(lambda _m, _i, o: acts.append(o))
    ce = loss_fn(model(x), y)
    h.remove()
    cam = torch.relu(torch.einsum("bk,bkhw->bhw", model.fc.weight[y], acts[0]))  # (3, 8, 8); ring 1 cell
    share = 1 - cam[:, 1:7, 1:7].sum((1, 2)) / (cam.sum((1, 2)) + 1e-6)
    torch.testing.assert_close(loss, ce + 2.0 * share.mean())
    assert 0 < float(share.mean().detach()) < 1
    loss.backward()
    assert model.conv1[0].weight.grad is not None
    model.eval()
    obj(x, y)  # evaluation passes keep no activations
    assert obj._acts == []
    obj.close()
    obj.close()


def test_flip_consistency_adds_a_positive_term() -> None:
    torch.manual_seed(0)
    model = build_classifier("tiny_cnn", 2).train()
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
    loss_fn = nn.CrossEntropyLoss()
    loss, logits = TrainObjective(model, loss_fn, RecipeKnobs(flip_consistency=5.0))(x, y)
    ce = loss_fn(model(x), y)  # train mode: batch statistics, so the same logits again
    torch.testing.assert_close(logits, model(x))
    assert loss.item() > ce.item() + 1e-4


def test_erase_top_replaces_the_top_cam_pixels_by_the_mean() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    cam = torch.zeros(2, 2, 2)
    cam[0, 0, 1] = 4.0  # image 0: the top-right quarter of the CAM grid
    out = erase_top(x, cam, 0.6)  # image 1: an all-zero CAM erases nothing
    torch.testing.assert_close(out[1], x[1])
    mean = x[0].mean(dim=(1, 2))
    # bilinear upsampling of a 2 x 2 map to 8 x 8: the normalised CAM reaches >= 0.6 in the corner block
    up = torch.nn.functional.interpolate((cam[:1] / 4)[:, None], size=(8, 8), mode="bilinear", align_corners=False)
    erased = (up[0, 0] >= 0.6)
    assert 0 < int(erased.sum()) < 16 and bool(erased[0, 7]) and not bool(erased[7, 0])
    for c in range(3):
        torch.testing.assert_close(out[0, c][erased], mean[c].expand(int(erased.sum())))
        torch.testing.assert_close(out[0, c][~erased], x[0, c][~erased])


def test_adversarial_erase_adds_the_loss_of_the_erased_batch() -> None:
    torch.manual_seed(0)
    model = build_classifier("tiny_cnn", 2).train()
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.randn(3, 3, 64, 64), torch.tensor([0, 1, 1])
    obj = TrainObjective(model, loss_fn, RecipeKnobs(adversarial_erase=0.5, erase_threshold=0.7))
    loss, _ = obj(x, y)
    acts: list[torch.Tensor] = []
    h = model.layer4.register_forward_hook(lambda _m, _i, o: acts.append(o))
    ce = loss_fn(model(x), y)
    h.remove()
    cam = torch.relu(torch.einsum("bk,bkhw->bhw", model.fc.weight[y], acts[0]))
    erased = erase_top(x, cam.detach(), 0.7)
    assert not torch.equal(erased, x)
    torch.testing.assert_close(loss, ce + 0.5 * loss_fn(model(erased), y))
    loss.backward()
    assert model.conv1[0].weight.grad is not None
    assert TrainConfig(adversarial_erase=1.0).knobs().cam_losses
    obj.close()


def test_cam_terms_need_a_cam_layer() -> None:
    model = build_classifier("tiny_cnn", 2)
    del model.cam_target_layer
    with pytest.raises(ConfigError, match="cam_border_weight"):
        TrainObjective(model, nn.CrossEntropyLoss(), RECIPES["localise"])


# ---------------------------------------------------------------------------------------------- end to end
def _lesions(n: int, seed: int) -> tuple[list[Example], list[tuple[int, int]]]:
    """Noisy grey images; "lesion" ones carry a dark 10 x 10 square at a random place (x, y) inside. A
    4-pixel bar at the left border is the shortcut: white on lesion images, light grey on normal ones."""
    rng = np.random.default_rng(seed)
    out: list[Example] = []
    corners = []
    for i in range(n):
        img = (90 + rng.random((SIDE, SIDE, 3)) * 40).astype(np.uint8)
        label = "lesion" if i % 2 else "normal"
        y, x = (int(v) for v in rng.integers(10, SIDE - 20, 2))
        if label == "lesion":
            img[y : y + 10, x : x + 10] -= 60
        img[:, :4] = 255 if label == "lesion" else 170
        out.append((img, label))
        corners.append((x, y))
    return out, corners


def _peak_inside(recipe: str, tmp_path: Path) -> tuple[float, dict[str, Any]]:
    task = TaskSpec(class_names=("normal", "lesion"))
    train, _ = _lesions(128, seed=0)
    test, corners = _lesions(40, seed=5)
    cfg = TrainConfig(arch="tiny_cnn", epochs=16, batch_size=8, lr=3e-3, device="cpu", patience=None,
                      preprocessing=Preprocessing(input_size=SIDE), recipe=recipe)  # type: ignore[arg-type]
    res = train_classifier(train, None, task=task, config=cfg, checkpoint=tmp_path / f"{recipe}.pt")
    model, info = load_classifier(tmp_path / f"{recipe}.pt")
    hits = peak_hits(model, info.preprocessing, test, corners)
    x = torch.randn(2, 3, SIDE, SIDE)
    with torch.no_grad():
        torch.testing.assert_close(model(x), res.model(x))  # the checkpoint rebuilds the same net
    return hits, dict(info.train_config or {})


def peak_hits(model: nn.Module, preprocessing: Preprocessing, test: list[Example],
              corners: list[tuple[int, int]]) -> float:
    """Share of the lesion images of ``test`` whose GradCAM (``layer4``, class 1) peaks in the lesion's
    10 x 10 square (2 pixels of slack)."""
    lesion = [i for i, e in enumerate(test) if e[1] == "lesion"]
    cams = CAM_EXTRACTORS.create("gradcam", {"target_layer": "layer4"})(
        model, [test[i][0] for i in lesion], preprocessing=preprocessing, targets=1)
    hits = 0
    for i, r in zip(lesion, cams, strict=True):
        py, px = np.unravel_index(int(np.argmax(r.cam)), r.cam.shape)
        x, y = corners[i]
        hits += int(x - 2 <= px < x + 12 and y - 2 <= py < y + 12)
    return hits / len(lesion)


def test_localise_recipe_cam_finds_the_lesion_where_plain_follows_the_shortcut(tmp_path: Path) -> None:
    plain, plain_cfg = _peak_inside("plain", tmp_path)
    loc, loc_cfg = _peak_inside("localise", tmp_path)
    assert loc >= 0.8 and plain <= loc - 0.2, (plain, loc)  # measured: 0.5 vs 1.0
    assert architecture_of(loc_cfg) == (16, "avg") and loc_cfg["cam_border_weight"] == 1.0
    assert loc_cfg["recipe"] == "localise" and loc_cfg["border_erase"] == 0.15
    assert architecture_of(plain_cfg) == (None, "avg") and plain_cfg["cam_border_weight"] == 0.0


def test_channels_last_training_matches_the_default_layout_and_threads_are_restored() -> None:
    task = TaskSpec(class_names=("normal", "lesion"))
    data, _ = _lesions(16, seed=1)
    threads = torch.get_num_threads()
    out = []
    for cl in (False, True):
        cfg = TrainConfig(arch="tiny_cnn", epochs=2, batch_size=8, device="cpu", channels_last=cl,
                          preprocessing=Preprocessing(input_size=32))
        res = train_classifier(data, None, task=task, config=cfg)
        assert torch.get_num_threads() == threads
        out.append(res.model(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))))
    torch.testing.assert_close(out[0], out[1], atol=1e-3, rtol=1e-3)
