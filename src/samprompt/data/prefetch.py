"""Read ahead: apply a loading function to a sequence in worker threads, yield results in order.

Decoding a PNG or JPEG (Pillow) and most NumPy work release the GIL, so a few threads keep the next
images ready while the main thread runs the classifier and the segmenter; at most ``ahead`` results are
pending or buffered at any time, so memory stays bounded however long the sequence is.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["prefetch"]

_T = TypeVar("_T")
_R = TypeVar("_R")


def prefetch(items: Iterable[_T], load: Callable[[_T], _R], *, workers: int = 2, ahead: int = 16) -> Iterator[_R]:
    """Yield ``load(item)`` for every item, in order, computed up to ``ahead`` items in advance.

    Args:
        items: What to load (e.g. image ids); consumed lazily.
        load: Called once per item in a worker thread; an exception it raises is re-raised by the
            iterator at that item's position (catch it inside ``load`` to record per-item failures).
        workers: Worker threads; 0 = call ``load`` in the caller's thread, one item at a time.
        ahead: Most items submitted but not yet yielded (at least 1).

    Raises:
        ValueError: If ``workers`` < 0 or ``ahead`` < 1.

    Example:
        >>> from samprompt.data import prefetch
        >>> list(prefetch(range(5), lambda i: i * i, workers=2, ahead=3))
        [0, 1, 4, 9, 16]
    """
    if workers < 0:
        raise ValueError(f"prefetch: workers must be >= 0, got {workers}")
    if ahead < 1:
        raise ValueError(f"prefetch: ahead must be >= 1, got {ahead}")
    if workers == 0:
        for item in items:
            yield load(item)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="samprompt-prefetch")
    pending: deque[Future[_R]] = deque()
    source = iter(items)
    try:
        for item in source:
            pending.append(pool.submit(load, item))
            if len(pending) >= ahead:
                break
        while pending:
            result = pending.popleft().result()
            for item in source:
                pending.append(pool.submit(load, item))
                break
            yield result
    finally:  # also on an exception or when the consumer stops early: drop what was not started
        pool.shutdown(wait=True, cancel_futures=True)
