"""A few requests in flight per system, never more than its description allows (`concurrency`).

Round trips then overlap with the hub's own work on earlier replies. Each request still
passes the system's token bucket before it starts, so the rate limit holds however wide.
Results come back in the order of the items, so callers see the same sequence as sequential
code; after a failure, the requests already in flight finish and their results are still
handed out before the first error is raised, so nothing that landed goes unrecorded.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def bounded_map(
    fn: Callable[[Item], Result], items: Iterable[Item], width: int
) -> Iterator[tuple[Item, Result]]:
    """(item, fn(item)) pairs in item order, with at most `width` calls running at once."""
    if width <= 1:
        for item in items:
            yield item, fn(item)
        return
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="hub-request") as pool:
        in_flight: deque[tuple[Item, Future[Result]]] = deque()
        pending = iter(items)
        for item in pending:
            in_flight.append((item, pool.submit(fn, item)))
            if len(in_flight) >= width:
                break
        while in_flight:
            item, future = in_flight.popleft()
            error = future.exception()
            if error is not None:
                yield from _finished(in_flight)
                raise error
            yield item, future.result()
            for following in pending:
                in_flight.append((following, pool.submit(fn, following)))
                break


def _finished(in_flight: deque) -> Iterator[tuple]:
    """What the other requests in flight brought back, once they are done; their errors are dropped
    because the first error is the one raised."""
    for item, future in in_flight:
        if future.exception() is None:
            yield item, future.result()


_END = object()


def read_ahead(pages: Generator[Result, None, None], depth: int) -> Iterator[Result]:
    """The pages of a listing whose every page names the next: up to `depth` of them are fetched
    while the caller works on the current one. Errors arrive where the page would have."""
    if depth < 1:
        yield from pages
        return
    ready: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item: Any, error: BaseException | None = None) -> bool:
        while not stop.is_set():
            try:
                ready.put((item, error), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            for page in pages:
                if not hand_over(page):
                    break
            else:
                hand_over(_END)
        except BaseException as exc:  # handed to the caller, who raises it
            hand_over(_END, exc)
        finally:
            pages.close()

    worker = threading.Thread(target=pump, name="hub-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            page, error = ready.get()
            if error is not None:
                raise error
            if page is _END:
                return
            yield page
    finally:
        stop.set()
        worker.join()
