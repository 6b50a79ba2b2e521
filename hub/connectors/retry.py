"""One retry policy for every system: back off on transient faults, never on a refusal.

A 4xx validation error will fail the same way every time, so retrying it only
delays the quarantine; a 5xx, 429, timeout or dropped connection may pass later.
Backoff is capped per wait, and the whole retry loop of one request has a time
budget, so an outage costs a run a bounded delay rather than an unbounded one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

T = TypeVar("T")


class TransientError(Exception):
    """A failure worth retrying: the system may answer next time."""

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SystemUnavailable(TransientError):
    """The system's circuit is open: the call was not made, and retrying now would not make it."""


class VendorRejected(Exception):
    """The exchange cannot succeed as sent; retrying would not change the outcome.

    Mostly the system's own refusal (a 4xx); subclasses name replies the hub refuses itself.
    """

    def __init__(self, system: str, status: int | None, detail: str, *, message: str | None = None):
        super().__init__(message or f"{system} refused the request (HTTP {status}): {detail}")
        self.system = system
        self.status = status
        self.detail = detail


class ReplyTooLarge(VendorRejected):
    """A reply over the size limit: refused before it is read whole, and it would come back as big."""

    def __init__(self, system: str, status: int, limit_bytes: int):
        super().__init__(
            system,
            status,
            f"reply over {limit_bytes} bytes",
            message=f"{system} reply exceeds the {limit_bytes}-byte limit (HUB_MAX_RESPONSE_BYTES); refused unread",
        )
        self.limit_bytes = limit_bytes


class UntrustedCertificate(VendorRejected):
    """The system's TLS certificate did not verify: never retried, never sent a byte of payload."""

    def __init__(self, system: str, reason: str):
        super().__init__(
            system,
            None,
            reason,
            message=f"{system} TLS certificate not trusted ({reason}); set HUB_CA_BUNDLE to trust a private CA",
        )


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
    # No new attempt starts once waiting for it would pass this, counted from the start of the
    # first attempt: the attempts' own time counts, not only the waits between them.
    budget_s: float = 120.0

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_exponential_jitter(initial=self.initial_s, max=self.max_s, jitter=self.initial_s)(state)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after_s", None)
        # The server's own Retry-After wins, but is capped so one bad header cannot stall a run.
        return min(max(backoff, retry_after or 0.0), self.max_s)

    def call(self, fn: Callable[[], T]) -> T:
        retrying = Retrying(
            # tenacity measures `stop_before_delay` from before the first attempt to the end of
            # the last one, plus the coming wait.
            stop=stop_after_attempt(self.attempts) | stop_before_delay(self.budget_s),
            wait=self._wait,
            # An open circuit stays open for a while: stop at once rather than wait into it.
            retry=retry_if_exception_type(TransientError) & retry_if_not_exception_type(SystemUnavailable),
            reraise=True,
        )
        return retrying(fn)
