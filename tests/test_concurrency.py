"""Bounded concurrency: order kept, width respected, nothing that landed lost after a failure."""

import threading
import time

import pytest

from hub.connectors.concurrency import bounded_map


def test_results_come_back_in_item_order_with_at_most_width_running():
    running, most = 0, 0
    lock = threading.Lock()

    def slow_square(n: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.01 * (5 - n % 5))  # later items finish first
        with lock:
            running -= 1
        return n * n

    assert list(bounded_map(slow_square, range(12), 3)) == [(n, n * n) for n in range(12)]
    assert most == 3


def test_width_one_runs_in_the_callers_thread():
    threads = {item: threading.get_ident() for item, _ in bounded_map(lambda n: n, range(3), 1)}
    assert set(threads.values()) == {threading.get_ident()}


def test_after_a_failure_the_calls_in_flight_are_handed_out_then_the_error_is_raised():
    started = []
    release = threading.Event()

    def call(n: int) -> int:
        started.append(n)
        if n == 1:
            release.wait(5)
            raise RuntimeError("batch 1 failed")
        if n == 2:
            release.set()
        return n

    seen = []
    with pytest.raises(RuntimeError, match="batch 1 failed"):
        for item, result in bounded_map(call, range(10), 3):
            seen.append((item, result))
    # Item 3 entered the window when item 0 was handed out; nothing started after the failure.
    assert seen == [(0, 0), (2, 2), (3, 3)]
    assert sorted(started) == [0, 1, 2, 3]
