"""Self-training for the ``candidates`` strategy: a small segmentation net learnt from its own pseudo masks.

(Moved here from ``samprompt.prompts.selftrain``, which re-exports it: a training loop lives with the
classifiers. The strategy reaches the net as a plain callable, :func:`agreement_from_net`.)

Weakly supervised segmentation often ends with a second network trained on the pseudo masks of the first
stage. Here that network does not replace the ``candidates`` strategy; it VOTES: the strategy adds
``agreement_weight`` x (box IoU of each refined region with the net's box) to its second-stage scores
(parameter ``agreement_net``). Everything stays label-only: the pseudo masks come from the strategy itself
(image labels say which images have a lesion; normal images teach "nothing here").

Recipe (measured on BUSI: box IoU 0.517 → 0.556 and Dice 0.601 → 0.648 on the ablation test split of
``docs/quality.md``, but no gain on the ``best`` run's split, ``docs/busi_run.md``; a run config's
``selftrain`` section does all of it, see :class:`~samprompt.runner.config.SelfTrainSpec`)::

    net, pseudo = self_train(train_lesion_images, train_normal_images, init=classifier_ckpt)
    save_selftrain_net(net, "selftrain.pt")
    strategy = CandidatePromptStrategy(agreement_net="selftrain.pt")     # weight 8 (chosen on BUSI val)

:func:`self_train` is :func:`make_pseudo_masks`, :func:`confident` (the measured recipe trains on the 60 %
best-scored lesion images plus all normal ones) and :func:`train_selftrain_net` in turn.

Conventions: images are (H, W) or (H, W, 3) uint8 at any size; the net sees the grey image resized (not
letterboxed) to ``size`` x ``size`` and normalised with the ImageNet mean / std; maps and masks come back at
the original (H, W); boxes are pixel edges ``(x0, y0, x1, y1)``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from scipy import ndimage as ndi
from skimage.transform import resize
from torch import nn

from samprompt._arrays import as_grey, as_image
from samprompt._torch import safe_load
from samprompt.errors import CheckpointError
from samprompt.prompts.base import Prompt
from samprompt.regions import mask_to_box

__all__ = [
    "SelfTrainNet",
    "agreement_from_net",
    "confident",
    "load_selftrain_net",
    "make_pseudo_masks",
    "net_box",
    "predict_map",
    "save_selftrain_net",
    "self_train",
    "train_selftrain_net",
]

log = logging.getLogger(__name__)

_FORMAT = "samprompt-selftrain"
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
_STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]


class SelfTrainNet(nn.Module):
    """ResNet18 encoder + a light FPN decoder: (B, 3, S, S) → (B, 1, S, S) logits.

    Args:
        encoder: A torchvision-style ResNet (``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1..4``),
            e.g. the run's classifier (its weights are the starting point); default a fresh ResNet18.
    """

    def __init__(self, encoder: nn.Module | None = None) -> None:
        super().__init__()
        if encoder is None:
            import torchvision

            encoder = torchvision.models.resnet18(weights=None)
        resnet: Any = encoder  # attributes checked at run time (below)
        try:
            self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
            self.layers = nn.ModuleList([resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4])
        except AttributeError as exc:
            raise TypeError(f"the encoder must be a torchvision-style ResNet: {exc}") from exc
        widths = [int(layer[-1].conv1.in_channels) for layer in self.layers]  # type: ignore[index]
        self.lateral = nn.ModuleList([nn.Conv2d(c, 64, 1) for c in widths])
        self.head = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.Conv2d(64, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised images → (B, 1, S, S) lesion logits."""
        feats, y = [], self.stem(x)
        for layer in self.layers:
            y = layer(y)
            feats.append(y)
        y = self.lateral[3](feats[3])
        for f, lateral in zip(feats[2::-1], self.lateral[2::-1]):
            y = F.interpolate(y, size=f.shape[-2:], mode="bilinear", align_corners=False) + lateral(f)
        return F.interpolate(self.head(y), size=x.shape[-2:], mode="bilinear", align_corners=False)


def _grey_input(image: Any, size: int) -> NDArray[np.float32]:
    """(H, W[, 3]) uint8 → (size, size) grey in [0, 1]."""
    grey = as_grey(as_image(image))  # the channels' mean / 255 (float32)
    small: NDArray[np.float32] = resize(grey, (size, size), order=1, anti_aliasing=True).astype(np.float32)
    return small


def _normalise(grey: NDArray[np.float32]) -> NDArray[np.float32]:
    """(..., S, S) grey → (..., 3, S, S) normalised with the ImageNet mean / std."""
    g = np.repeat(np.expand_dims(grey, -3), 3, axis=-3)
    return np.ascontiguousarray((g - _MEAN) / _STD)


def make_pseudo_masks(
    strategy: Any, images: Sequence[Any], segmenter: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[NDArray[np.bool_] | None, float]]:
    """The ``candidates`` strategy's region of each image, decoded from its box: the pseudo masks.

    Args:
        strategy: Anything with ``choose(image, cam) -> (region or None, score)``: a
            :class:`~samprompt.proposals.select.ProposalSelector` or the ``candidates`` strategy.
        images: Lesion images, (H, W[, 3]) uint8.
        segmenter: Decodes the chosen box (default: ``classical``).
        progress: ``progress(done, total)`` after each image.

    Returns:
        ``(mask (H, W) bool or None when nothing was chosen, score)`` per image.
    """
    if segmenter is None:
        from samprompt.segmenters.classical import ClassicalSegmenter

        segmenter = ClassicalSegmenter()
    out: list[tuple[NDArray[np.bool_] | None, float]] = []
    for k, image in enumerate(images):
        img = as_image(image)
        region, score = strategy.choose(img, np.zeros(img.shape[:2], np.float32))
        box = mask_to_box(region) if region is not None else None
        if box is None:
            out.append((None, float("-inf")))
        else:
            mask = segmenter.decode(segmenter.embed(img), [Prompt(box=box)]).masks[0]
            out.append((np.asarray(mask, bool), float(score)))
        if progress is not None:
            progress(k + 1, len(images))
    return out


def confident(pseudo: Sequence[tuple[NDArray[np.bool_] | None, float]], keep: float = 0.6) -> list[bool]:
    """Which pseudo masks to train on: the ``keep`` fraction with the highest scores (never ``None`` ones).

    Example:
        >>> confident([(None, -1.0), (np.ones((2, 2), bool), 0.5), (np.ones((2, 2), bool), 2.0)], keep=0.5)
        [False, False, True]
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    scores = np.array([s for m, s in pseudo if m is not None])
    if not scores.size:
        return [False] * len(pseudo)
    threshold = np.quantile(scores, 1.0 - keep) if keep < 1.0 else -np.inf
    return [bool(m is not None and s >= threshold) for m, s in pseudo]


def train_selftrain_net(
    images: Sequence[Any],
    masks: Sequence[NDArray[np.bool_] | None],
    *,
    init: str | os.PathLike[str] | nn.Module | None = None,
    size: int = 128,
    epochs: int = 20,
    batch_size: int = 16,
    lr: float = 5e-4,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> SelfTrainNet:
    """Train a :class:`SelfTrainNet` on images and their (pseudo) masks.

    Loss: BCE + soft Dice (Dice on images with a mask only); AdamW, one-cycle LR, horizontal flips and
    brightness / contrast jitter. The settings are the ones measured in ``docs/quality.md``.

    Args:
        images: (H, W[, 3]) uint8 images.
        masks: (H, W) bool per image; ``None`` = no lesion (an empty target, e.g. normal images).
        init: Classifier checkpoint (or a torchvision-style ResNet module) whose backbone starts the
            encoder; ``None`` = random.
        size: Square input side.
        epochs: Passes over the data.
        batch_size: Images per step.
        lr: Peak learning rate.
        seed: Seeds the initialisation of the decoder, the order and the augmentation.
        device: Where to train.
        progress: ``progress(epoch, epochs)`` after each epoch.

    Returns:
        The trained net (eval mode, on ``device``).

    Raises:
        ValueError: On mismatched lengths, no images, or a mask whose size differs from its image.
        CheckpointError: If ``init`` cannot be loaded.
    """
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    if not images:
        raise ValueError("no training images")
    torch.manual_seed(seed)
    encoder: nn.Module | None
    if init is None or isinstance(init, nn.Module):
        encoder = init
    else:
        from samprompt.classifiers.checkpoint import load_classifier

        encoder = load_classifier(init)[0]
    net = SelfTrainNet(encoder).to(device)
    xs, ys = [], []
    for k, (image, mask) in enumerate(zip(images, masks)):
        img = as_image(image)
        xs.append(_grey_input(img, size))  # normalised per batch: a third of the memory
        if mask is None:
            ys.append(np.zeros((size, size), np.float32))
            continue
        m = np.asarray(mask, bool)
        if m.shape != img.shape[:2]:
            raise ValueError(f"masks[{k}] is {m.shape} but its image is {img.shape[:2]}")
        ys.append(resize(m.astype(np.float32), (size, size), order=1).astype(np.float32))
    X = np.stack(xs)
    Y = torch.from_numpy(np.stack(ys))[:, None]
    steps = int(np.ceil(len(X) / batch_size))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps, pct_start=0.1)
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        net.train()
        for b in np.array_split(rng.permutation(len(X)), steps):
            x, y = torch.from_numpy(_normalise(X[b])), Y[b].clone()
            flip = torch.from_numpy(rng.random(len(b)) < 0.5)
            x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
            gain = torch.from_numpy(rng.uniform(0.8, 1.2, (len(b), 1, 1, 1)).astype(np.float32))
            shift = torch.from_numpy(rng.uniform(-0.2, 0.2, (len(b), 1, 1, 1)).astype(np.float32))
            x, y = (x * gain + shift).to(device), y.to(device)
            logit = net(x)
            p = torch.sigmoid(logit)
            has = y.sum((1, 2, 3)) > 0
            soft_dice = 1 - (2 * (p * y).sum((1, 2, 3)) + 1) / (p.sum((1, 2, 3)) + y.sum((1, 2, 3)) + 1)
            loss = F.binary_cross_entropy_with_logits(logit, y)
            if bool(has.any()):
                loss = loss + soft_dice[has].mean()
            opt.zero_grad()
            torch.autograd.backward(loss)
            opt.step()
            sched.step()
        if progress is not None:
            progress(epoch + 1, epochs)
    net.input_size = size  # type: ignore[assignment]
    return net.eval()


class _Pick(Sequence[Any]):
    """``seq[indices[k]]`` for each part ``(seq, indices)`` in turn, read when indexed (lazy sequences
    such as a data set's images stay lazy)."""

    def __init__(self, parts: Sequence[tuple[Sequence[Any], Sequence[int]]]) -> None:
        self.items = [(seq, i) for seq, idx in parts for i in idx]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> Any:  # type: ignore[override]
        seq, i = self.items[k]
        return seq[i]


def self_train(
    lesion_images: Sequence[Any],
    empty_images: Sequence[Any] = (),
    *,
    strategy: Any = None,
    keep: float = 0.6,
    progress: Callable[[str, int, int], None] | None = None,
    **train: Any,
) -> tuple[SelfTrainNet, list[tuple[NDArray[np.bool_] | None, float]]]:
    """The whole recipe: pseudo masks of ``lesion_images`` (:func:`make_pseudo_masks`), the ``keep`` most
    confident of them (:func:`confident`) plus ``empty_images`` as empty targets, a net trained on them
    (:func:`train_selftrain_net`).

    Args:
        lesion_images: Images with a lesion, (H, W[, 3]) uint8 (any sequence; read once per pass).
        empty_images: Images without one (e.g. normal images).
        strategy: Makes the pseudo masks (``choose(image, cam)``); default a
            :class:`~samprompt.proposals.select.ProposalSelector` with the ``busi-v1`` scorer (what the
            ``candidates`` strategy does with its default parameters).
        keep: Fraction of the pseudo masks trained on.
        progress: ``progress(step, done, total)`` with step ``"pseudo masks"`` or ``"self-training"``.
        **train: Passed to :func:`train_selftrain_net` (``init``, ``size``, ``epochs``, ``seed``, ...).

    Returns:
        ``(net, pseudo masks with their scores)``.
    """
    if strategy is None:
        from samprompt.proposals.select import selector_from_scorer

        strategy = selector_from_scorer("busi-v1")

    def step(name: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda done, total: progress(name, done, total))

    pseudo = make_pseudo_masks(strategy, lesion_images, progress=step("pseudo masks"))
    kept = [k for k, use in enumerate(confident(pseudo, keep)) if use]
    log.info("self-training on %d images: %d of %d pseudo masks, %d empty", len(kept) + len(empty_images),
             len(kept), len(pseudo), len(empty_images))
    images = _Pick([(lesion_images, kept), (empty_images, range(len(empty_images)))])
    masks = [pseudo[k][0] for k in kept] + [None] * len(empty_images)
    net = train_selftrain_net(images, masks, progress=step("self-training"), **train)
    return net, pseudo


def save_selftrain_net(net: SelfTrainNet, path: str | os.PathLike[str], size: int | None = None) -> Path:
    """Save ``net`` (state dict + its input size; loadable with ``weights_only=True``)."""
    side = int(size if size is not None else getattr(net, "input_size", 128))
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    torch.save({"format": _FORMAT, "version": 1, "input_size": side, "state_dict": state}, p)
    return p


def load_selftrain_net(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> SelfTrainNet:
    """Load a net saved by :func:`save_selftrain_net` (eval mode; its ``input_size`` attribute is set).

    Raises:
        CheckpointError: Naming the file when it is missing, unreadable, or not a self-training net.
    """
    p = str(path)
    blob = safe_load(p, "self-training net", "or use save_selftrain_net()")
    if not isinstance(blob, dict) or blob.get("format") != _FORMAT or "state_dict" not in blob:
        raise CheckpointError(f"self-training net {p!r}: not a samprompt self-training net "
                              f"(write it with save_selftrain_net)")
    net = SelfTrainNet()
    try:
        net.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"self-training net {p!r}: weights do not fit: {exc}") from exc
    net.input_size = int(blob.get("input_size", 128))  # type: ignore[assignment]
    return net.to(device).eval()


def predict_map(net: SelfTrainNet, image: Any) -> NDArray[np.float32]:
    """(H, W) lesion probability of one image, averaged with its horizontal flip, at the original size."""
    img = as_image(image)
    size = int(getattr(net, "input_size", 128))
    device = next(net.parameters()).device
    x = torch.from_numpy(_normalise(_grey_input(img, size)))[None].to(device)
    with torch.inference_mode():
        p = (torch.sigmoid(net(x)) + torch.sigmoid(net(x.flip(-1))).flip(-1)) / 2
    full: NDArray[np.float64] = resize(p[0, 0].float().cpu().numpy(), img.shape[:2], order=1)
    return full.astype(np.float32)


def net_box(prob: NDArray[np.float32], threshold: float = 0.5) -> NDArray[np.float32] | None:
    """Box of the connected component of ``prob > threshold`` with the most probability mass (or ``None``).

    Example:
        >>> p = np.zeros((10, 10), np.float32); p[2:4, 2:4] = 0.6; p[5:9, 5:8] = 0.9
        >>> net_box(p).tolist()
        [5.0, 5.0, 8.0, 9.0]
    """
    lab, n = ndi.label(prob > threshold)
    if n == 0:
        return None
    mass = ndi.sum(prob, lab, np.arange(1, n + 1))
    return mask_to_box(lab == 1 + int(np.argmax(mass)))


def agreement_from_net(net: SelfTrainNet) -> Callable[[Any], NDArray[np.float32] | None]:
    """The net as a plain callable ``image -> box or None`` (:func:`net_box` of :func:`predict_map`): the
    ``agreement`` of :class:`~samprompt.proposals.select.ProposalSelector`."""

    def agree(image: Any) -> NDArray[np.float32] | None:
        return net_box(predict_map(net, image))

    return agree
