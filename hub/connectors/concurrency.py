"""A few requests in flight per system, never more than its description allows.

Round trips then overlap with the hub's own work on earlier replies. Each request still
passes the system's token bucket before it starts, so the rate limit holds however wide.
Results come back in the order of the items, so callers see the same sequence as sequential
code; after a failure, the requests already in flight finish and their results are still
handed out before the first error is raised, so nothing that landed goes unrecorded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

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
