"""``samprompt.data.prefetch``: order, bounded read-ahead, errors, early stop."""

from __future__ import annotations

import threading
import time

import pytest

from samprompt.data import prefetch


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_results_in_input_order(workers: int) -> None:
    def slow_square(i: int) -> int:
        time.sleep(0.002 * ((7 * i) % 5))  # finish out of order
        return i * i

    assert list(prefetch(range(20), slow_square, workers=workers, ahead=4)) == [i * i for i in range(20)]


def test_read_ahead_is_bounded_and_runs_in_worker_threads() -> None:
    started: list[int] = []
    names: set[str] = set()
    lock = threading.Lock()

    def load(i: int) -> int:
        with lock:
            started.append(i)
            names.add(threading.current_thread().name)
        return i

    it = prefetch(range(100), load, workers=2, ahead=5)
    assert next(it) == 0
    time.sleep(0.05)
    assert len(started) <= 6  # 5 in flight, one refilled after the first was taken
    assert list(it) == list(range(1, 100))
    assert all(n.startswith("samprompt-prefetch") for n in names)


def test_error_is_raised_at_its_position_and_stops_the_pool() -> None:
    def load(i: int) -> int:
        if i == 3:
            raise OSError("disk gone")
        return i

    it = prefetch(range(10), load, workers=2, ahead=4)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(OSError, match="disk gone"):
        next(it)


def test_stopping_early_cancels_what_was_not_started() -> None:
    calls: list[int] = []

    def load(i: int) -> int:
        calls.append(i)
        time.sleep(0.01)
        return i

    it = prefetch(range(1000), load, workers=1, ahead=3)
    assert next(it) == 0
    it.close()
    assert len(calls) <= 5


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="workers must be >= 0"):
        list(prefetch([1], lambda i: i, workers=-1))
    with pytest.raises(ValueError, match="ahead must be >= 1"):
        list(prefetch([1], lambda i: i, ahead=0))
