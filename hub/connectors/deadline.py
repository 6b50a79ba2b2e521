"""A total deadline per request: connect, send, every byte and the whole reply.

Socket timeouts bound each wait on its own, so a server that sends one byte just inside the
read timeout, again and again, would hold a request for as long as it likes. A `Deadline`
starts when a request does; every timeout of that request is cut to the time left, and the
body is given up on as soon as the deadline passes between two chunks.
"""

from __future__ import annotations

import time

from hub.connectors.retry import TransientError

DEFAULT_REQUEST_DEADLINE_S = 60.0


class DeadlineExceeded(TransientError):
    """No whole reply within the request deadline; another attempt may be quicker."""

    def __init__(self, where: str, deadline_s: float):
        super().__init__(
            f"{where}: no whole reply within the {deadline_s:g} s request deadline (HUB_REQUEST_DEADLINE_S); cut off"
        )
        self.deadline_s = deadline_s


class Deadline:
    """The end of one request's time; `where` names the system (and the call) in the error."""

    def __init__(self, where: str, seconds: float):
        if seconds <= 0:
            raise ValueError("a request deadline must be positive")
        self.where = where
        self.seconds = seconds
        self._ends = time.monotonic() + seconds

    def remaining(self) -> float:
        return self._ends - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def cap(self, timeout_s: float) -> float:
        """A socket timeout cut to the time left, never zero (zero means non-blocking)."""
        return max(min(timeout_s, self.remaining()), 0.001)

    def check(self) -> None:
        if self.expired():
            raise self.exceeded()

    def exceeded(self) -> DeadlineExceeded:
        return DeadlineExceeded(self.where, self.seconds)
