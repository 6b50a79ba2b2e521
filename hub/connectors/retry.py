"""One retry policy for every system: back off on transient faults, never on a refusal.

A 4xx validation error will fail the same way every time, so retrying it only
delays the quarantine; a 5xx, 429, timeout or dropped connection may pass later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

T = TypeVar("T")


class TransientError(Exception):
    """A failure worth retrying: the system may answer next time."""

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class VendorRejected(Exception):
    """The system refused the request itself; retrying would not change its mind."""

    def __init__(self, system: str, status: int, detail: str):
        super().__init__(f"{system} refused the request (HTTP {status}): {detail}")
        self.system = system
        self.status = status
        self.detail = detail


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date: fall back to our own backoff


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    initial_s: float = 0.5
    max_s: float = 30.0

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_exponential_jitter(initial=self.initial_s, max=self.max_s, jitter=self.initial_s)(state)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after_s", None)
        # The server's own Retry-After wins, but is capped so one bad header cannot stall a run.
        return min(max(backoff, retry_after or 0.0), self.max_s)

    def call(self, fn: Callable[[], T], retry_on: tuple[type[BaseException], ...] = ()) -> T:
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            retry=retry_if_exception_type((TransientError, *retry_on)),
            reraise=True,
        )
        return retrying(fn)
