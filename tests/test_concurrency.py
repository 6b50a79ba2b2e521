"""Bounded concurrency: order kept, width respected, nothing that landed lost after a failure."""

import threading
import time

import pytest

from hub.connectors.concurrency import bounded_map, read_ahead


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


def test_read_ahead_yields_every_page_in_order_while_fetching_the_next():
    fetched = []

    def listing():
        for n in range(6):
            fetched.append(n)
            yield n

    pages = read_ahead(listing(), 2)
    assert next(pages) == 0
    time.sleep(0.05)  # the read-ahead thread runs on; it may be at most `depth` pages ahead
    assert len(fetched) <= 1 + 2 + 1
    assert list(pages) == [1, 2, 3, 4, 5]


def test_read_ahead_raises_the_listing_error_after_the_pages_before_it():
    def listing():
        yield "page 1"
        raise RuntimeError("page 2 failed")

    pages = read_ahead(listing(), 1)
    assert next(pages) == "page 1"
    with pytest.raises(RuntimeError, match="page 2 failed"):
        next(pages)


def test_read_ahead_stops_fetching_when_the_caller_stops_reading():
    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    pages = read_ahead(endless(), 2)
    assert [next(pages) for _ in range(3)] == [0, 1, 2]
    pages.close()
    assert closed.wait(5)
