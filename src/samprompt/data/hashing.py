"""Image hashes for duplicate search: exact (decoded pixels) and perceptual (64-bit DCT pHash)."""

from __future__ import annotations

import hashlib

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from scipy.fft import dctn

__all__ = ["hamming_distance", "near_pairs", "perceptual_hash", "pixel_hash"]

_POPCOUNT8 = np.array([i.bit_count() for i in range(256)], dtype=np.uint8)


def pixel_hash(image: NDArray[np.uint8]) -> str:
    """SHA-256 hex digest of an image's decoded pixels and shape.

    Two files with equal digests hold the same pixels whatever their format or encoding (a greyscale
    PNG and an RGB PNG with three equal channels give the same (H, W, 3) array and the same digest).

    Args:
        image: (H, W, 3) uint8 RGB, as from :func:`~samprompt.data.io.load_image`.
    """
    arr = np.ascontiguousarray(image, dtype=np.uint8)
    h = hashlib.sha256(f"{arr.shape}".encode())
    h.update(arr.data)
    return h.hexdigest()


def perceptual_hash(image: NDArray[np.uint8]) -> int:
    """64-bit DCT perceptual hash (pHash) of an image.

    The image is converted to luminance (ITU-R 601, PIL's ``"L"``), resized to 32 x 32 with a Lanczos
    filter, transformed with an orthonormal 2-D DCT-II, and the 8 x 8 lowest frequencies
    ``coef[v, u]`` (``v, u`` in 0..7) are compared with their median: bit ``8 * v + u`` is 1 where the
    coefficient is above it. This is the classic pHash (as in the ``imagehash`` package): re-encoding,
    small resizes, mild noise or brightness changes move a few bits; different images differ in ~32.

    Args:
        image: (H, W, 3) uint8 RGB or (H, W) uint8 greyscale.

    Returns:
        The hash as a Python int in ``[0, 2**64)``.
    """
    arr = np.asarray(image, dtype=np.uint8)
    pil = Image.fromarray(arr)
    grey = pil.convert("L") if pil.mode != "L" else pil
    small = np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS, reducing_gap=2.0), dtype=np.float64)
    low = dctn(small, type=2, norm="ortho")[:8, :8].ravel()
    bits = low > np.median(low)
    weights = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))
    return int(np.bitwise_or.reduce(np.where(bits, weights, np.uint64(0))))


def hamming_distance(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit hashes."""
    return (int(a) ^ int(b)).bit_count()


def _popcount(x: NDArray[np.uint64]) -> NDArray[np.uint8]:
    """Bit count of every element of a uint64 array (same shape, uint8)."""
    counter = getattr(np, "bitwise_count", None)  # numpy >= 2.0
    if counter is not None:
        return np.asarray(counter(x), dtype=np.uint8)
    as_bytes = np.ascontiguousarray(x).view(np.uint8).reshape(*x.shape, 8)
    counts: NDArray[np.uint8] = _POPCOUNT8[as_bytes].sum(axis=-1, dtype=np.uint8)
    return counts


def near_pairs(hashes: NDArray[np.uint64], max_distance: int, *, block: int = 512) -> NDArray[np.intp]:
    """All index pairs ``(i, j)``, ``i < j``, whose hashes differ in at most ``max_distance`` bits.

    Compares every pair with a vectorised XOR + popcount, ``block`` rows at a time, so memory stays at
    ``block * N`` bytes (``N`` = number of hashes). 1 000 hashes take a few milliseconds.

    Args:
        hashes: (N,) uint64.
        max_distance: Hamming distance threshold, 0..64.
        block: Rows compared per step.

    Returns:
        (P, 2) intp array of pairs, sorted by ``i`` then ``j``.

    Raises:
        ValueError: If ``max_distance`` is outside 0..64 or ``hashes`` is not one-dimensional.
    """
    if not 0 <= int(max_distance) <= 64:
        raise ValueError(f"max_distance must be in 0..64, got {max_distance}")
    h = np.asarray(hashes, dtype=np.uint64)
    if h.ndim != 1:
        raise ValueError(f"hashes must be a (N,) array, got shape {h.shape}")
    found: list[NDArray[np.intp]] = []
    for start in range(0, h.size, max(1, int(block))):
        rows = h[start : start + block]
        dist = _popcount(rows[:, None] ^ h[None, :])
        ii, jj = np.nonzero(dist <= max_distance)
        ii = ii + start
        keep = jj > ii
        if np.any(keep):
            found.append(np.stack([ii[keep], jj[keep]], axis=1).astype(np.intp))
    if not found:
        return np.zeros((0, 2), dtype=np.intp)
    return np.concatenate(found, axis=0)
