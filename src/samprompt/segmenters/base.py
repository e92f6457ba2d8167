"""The :class:`Segmenter` base class: embed an image once, decode many prompts on it.

A promptable segmenter separates the expensive per-image work (:meth:`Segmenter.embed`, e.g. SAM's
image encoder) from the cheap per-prompt work (:meth:`Segmenter.decode`), so ONE embedding serves every
prompt set of an image. :meth:`Segmenter.embed_batch` is the batched path (the default loops; backends
override it to stack images), :meth:`Segmenter.decode_batch` its counterpart for prompts (the default
loops over :meth:`Segmenter.decode`), and :meth:`Segmenter.segment` is the one-call convenience.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from samprompt._arrays import as_image
from samprompt.component import Component, P_co
from samprompt.prompts.base import Prompt

__all__ = ["ImageEmbedding", "Segmentation", "Segmenter"]


@dataclass(frozen=True, eq=False)
class ImageEmbedding:
    """What a segmenter keeps about one image between :meth:`~Segmenter.embed` and decoding.

    Attributes:
        original_size: ``(H, W)`` of the original image.
        data: Backend-specific payload (SAM: the (1, 256, 64, 64) feature tensor and its input size;
            the weight-free segmenter: the preprocessed image).
    """

    original_size: tuple[int, int]
    data: Any


@dataclass(frozen=True, eq=False)
class Segmentation:
    """Masks decoded for K prompts on one image.

    Attributes:
        masks: (K, H, W) bool at the original image size, one mask per prompt, in prompt order.
        scores: (K,) float32 quality the segmenter predicts for each mask, higher is better (SAM: its raw
            predicted IoU, which can fall slightly outside [0, 1]; the weight-free segmenter: a value in
            [0, 1]).
    """

    masks: NDArray[np.bool_]
    scores: NDArray[np.float32]

    def __post_init__(self) -> None:
        if self.masks.ndim != 3:
            raise ValueError(f"Segmentation.masks must be (K, H, W), got shape {self.masks.shape}")
        if self.scores.shape != (self.masks.shape[0],):
            raise ValueError(
                f"Segmentation.scores must be ({self.masks.shape[0]},), got shape {self.scores.shape}"
            )


class Segmenter(Component[P_co], abc.ABC):
    """A promptable segmenter.

    Subclasses implement the two halves of ONE contract, :meth:`embed` (the per-image work) and
    :meth:`decode` (the per-prompt work on an embedding); they may override :meth:`embed_batch` and
    :meth:`decode_batch` with truly batched paths. Their parameters are a
    :class:`~samprompt.component.ComponentParams` model given as the generic argument
    (``class MySeg(Segmenter[MySegParams])``). All prompt coordinates are in original-image pixels
    (see :class:`Prompt`).
    """

    @abc.abstractmethod
    def embed(self, image: NDArray[np.uint8]) -> ImageEmbedding:
        """Compute the reusable representation of one image.

        Args:
            image: (H, W) or (H, W, 3) uint8 RGB in original size.
        """

    def embed_batch(self, images: Sequence[NDArray[np.uint8]]) -> list[ImageEmbedding]:
        """Embed several images (default: one by one). Returns one embedding per image, in order."""
        return [self.embed(image) for image in images]

    @abc.abstractmethod
    def decode(self, embedding: ImageEmbedding, prompts: Sequence[Prompt]) -> Segmentation:
        """Decode all ``prompts`` of one image on its embedding (backends do it in one call).

        Returns:
            A :class:`Segmentation` with K = ``len(prompts)`` masks at ``embedding.original_size``.
        """

    def decode_batch(
        self, embeddings: Sequence[ImageEmbedding], prompts: Sequence[Sequence[Prompt]]
    ) -> list[Segmentation]:
        """Decode the prompts of several images: ``prompts[i]`` on ``embeddings[i]``.

        The default decodes image by image; backends whose decoder can take the prompts of many images
        at once (the ``sam`` segmenter) override it, which is what the pipeline calls for a batch.

        Args:
            embeddings: One embedding per image.
            prompts: One prompt list per image (may be empty), original-image pixels.

        Returns:
            One :class:`Segmentation` per image, in order, with ``len(prompts[i])`` masks at
            ``embeddings[i].original_size``.

        Raises:
            ValueError: If the two sequences differ in length.
        """
        if len(embeddings) != len(prompts):
            raise ValueError(f"decode_batch got {len(embeddings)} embeddings but {len(prompts)} prompt lists")
        return [self.decode(e, ps) for e, ps in zip(embeddings, prompts)]

    def segment(self, image: NDArray[np.uint8], prompts: Sequence[Prompt]) -> Segmentation:
        """Embed ``image`` once and decode ``prompts`` on it.

        Raises:
            ValueError: If a prompt lies outside the image (see :meth:`Prompt.check_within`).
        """
        img = as_image(image)
        for i, prompt in enumerate(prompts):
            prompt.check_within(img.shape[0], img.shape[1], name=f"prompts[{i}]")
        return self.decode(self.embed(img), prompts)

    @staticmethod
    def empty(embedding: ImageEmbedding) -> Segmentation:
        """A zero-prompt :class:`Segmentation` at the embedding's size (for images without prompts)."""
        H, W = embedding.original_size
        return Segmentation(np.zeros((0, H, W), dtype=bool), np.zeros((0,), dtype=np.float32))
