"""One circuit breaker per plant system per process: stop calling a system that keeps failing.

After `failures` consecutive transient failures the circuit opens, and for `reset_s` every call
fails fast with `SystemUnavailable` without touching the network. Then one trial call goes
through (half-open; calls meanwhile fail fast): success closes the circuit, failure opens it
again. Refusals (4xx, SOAP client faults, oversize replies, untrusted certificates) show the
system is up, so they count as successes. Breakers are keyed by system and server (scheme, host
and port), so the REST and SOAP clients of one system share its breaker, since they share its
outage.

The lock guards the circuit's state only, never a call: the requests a flavor lets be in flight
at once (`concurrency`), and the gate-check service's concurrent checks, reach the system side
by side instead of taking turns behind one slow reply.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import urlsplit

from hub.connectors.retry import SystemUnavailable, TransientError

T = TypeVar("T")

log = logging.getLogger(__name__)

DEFAULT_FAILURES = 5
DEFAULT_RESET_S = 30.0
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class SystemBreaker:
    """A system's circuit: `call` runs one network attempt through it."""

    def __init__(self, system: str, *, failures: int, reset_s: float):
        self.system = system
        self.failures = failures
        self.reset_s = reset_s
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures_in_a_row = 0
        self._opened_at: datetime | None = None
        self._trial_running = False

    def configure(self, *, failures: int | None, reset_s: float | None) -> None:
        with self._lock:
            if failures is not None:
                self.failures = failures
            if reset_s is not None:
                self.reset_s = reset_s

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == OPEN and self._reset_passed():
                return HALF_OPEN
            return self._state

    @property
    def failures_in_a_row(self) -> int:
        return self._failures_in_a_row

    def open_until(self) -> datetime:
        opened_at = self._opened_at or datetime.now(timezone.utc)
        return opened_at + timedelta(seconds=self.reset_s)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        trial = self._admit()
        try:
            result = fn(*args, **kwargs)
        except TransientError:
            self._failed(trial)
            raise  # the failure that trips the circuit is reported as itself; later calls fail fast
        except Exception:
            self._succeeded(trial)  # a refusal shows the system is up
            raise
        except BaseException:
            self._interrupted(trial)  # an interrupt says nothing about the system
            raise
        self._succeeded(trial)
        return result

    def _reset_passed(self) -> bool:
        return datetime.now(timezone.utc) >= self.open_until()

    def _admit(self) -> bool:
        """Let a call through, or fail fast; True for the one trial call of a half-open circuit."""
        with self._lock:
            if self._state == CLOSED:
                return False
            if self._state == OPEN and self._reset_passed() and not self._trial_running:
                self._state, self._trial_running = HALF_OPEN, True
                return True
        until = self.open_until().isoformat(timespec="seconds").replace("+00:00", "Z")
        raise SystemUnavailable(f"{self.system} circuit open until {until}")

    def _failed(self, trial: bool) -> None:
        with self._lock:
            self._trial_running = self._trial_running and not trial
            self._failures_in_a_row += 1
            if trial or (self._state == CLOSED and self._failures_in_a_row >= self.failures):
                self._state, self._opened_at = OPEN, datetime.now(timezone.utc)
                log.warning("%s circuit opened: calls fail fast for %g s", self.system, self.reset_s)

    def _interrupted(self, trial: bool) -> None:
        if trial:
            with self._lock:
                self._state, self._trial_running = OPEN, False  # the next call may try again

    def _succeeded(self, trial: bool) -> None:
        with self._lock:
            self._trial_running = self._trial_running and not trial
            self._failures_in_a_row = 0
            if trial:
                self._state = CLOSED
                log.info("%s circuit closed: calls go through again", self.system)


_breakers: dict[tuple[str, str], SystemBreaker] = {}
_registry_lock = threading.Lock()


def breaker_for(system: str, url: str, *, failures: int | None = None, reset_s: float | None = None) -> SystemBreaker:
    """The process's breaker for `system` on the server of `url`.

    Thresholds given here replace the breaker's; omitted ones keep its own (for a new breaker:
    5 failures, 30 s).
    """
    parts = urlsplit(url)
    key = (system, f"{parts.scheme}://{parts.hostname}:{parts.port}")
    with _registry_lock:
        breaker = _breakers.get(key)
        if breaker is None:
            breaker = _breakers[key] = SystemBreaker(system, failures=DEFAULT_FAILURES, reset_s=DEFAULT_RESET_S)
        breaker.configure(failures=failures, reset_s=reset_s)
    return breaker


def close_all_breakers() -> None:
    """Forget every circuit's state, e.g. between independent test cases in one process."""
    with _registry_lock:
        _breakers.clear()
