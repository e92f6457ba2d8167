"""Bounded number types shared by every config model (seeds, sizes, counts), so that an out-of-range value
is a config error naming its key, never an internal error deep inside NumPy or PyTorch."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

__all__ = ["MAX_BATCH", "MAX_COUNT", "MAX_SIDE", "Batch", "Count", "Seed", "Side", "Workers"]

#: Largest batch of images in one step.
MAX_BATCH = 4096
#: Largest count of epochs, panels, images and the like.
MAX_COUNT = 1_000_000
#: Largest side, in pixels, of a network input.
MAX_SIDE = 8192

#: A random seed: NumPy and PyTorch accept 0 <= seed < 2**32.
Seed = Annotated[int, Field(ge=0, lt=2**32)]
#: A batch size.
Batch = Annotated[int, Field(ge=1, le=MAX_BATCH)]
#: A positive count (epochs, panels, images, ...).
Count = Annotated[int, Field(ge=1, le=MAX_COUNT)]
#: A number of worker threads or processes (0 = none).
Workers = Annotated[int, Field(ge=0, le=256)]
#: A network input side in pixels.
Side = Annotated[int, Field(ge=8, le=MAX_SIDE)]
