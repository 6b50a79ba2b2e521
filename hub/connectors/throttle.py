"""A client-side request rate limit: a token bucket, so the hub never starts requests faster
than a system's description allows (`requests_per_second`), however quickly pages come back.
(A retry already waits out its own backoff.)

Requests are spaced evenly (a bucket of one token): a vendor's limit is usually per second,
and a burst at the start of each second is what trips it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if per_second <= 0:
            raise ValueError(f"a rate limit must be above 0 requests per second, got {per_second}")
        self.per_second = per_second
        self._clock = clock
        self._sleep = sleep
        self._tokens = 1.0
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Wait until one more request may go; a waiting caller's debt delays the next one too."""
        with self._lock:
            now = self._clock()
            self._tokens = min(1.0, self._tokens + (now - self._stamp) * self.per_second)
            self._stamp = now
            wait = max(0.0, (1.0 - self._tokens) / self.per_second)
            self._tokens -= 1.0
        if wait:
            self._sleep(wait)
