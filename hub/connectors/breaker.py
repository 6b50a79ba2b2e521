"""One circuit breaker per plant system per process: stop calling a system that keeps failing.

After `failures` consecutive transient failures the circuit opens, and for `reset_s` every call
fails fast with `SystemUnavailable` without touching the network. Then one trial call goes
through (half-open): success closes the circuit, failure opens it again. Refusals (4xx, SOAP
client faults, oversize replies, untrusted certificates) show the system is up, so they count as
successes. Breakers are keyed by system and server (scheme, host and port), so the REST and SOAP
clients of one system share its breaker, since they share its outage.

pybreaker holds the breaker's lock for the length of a call, so calls to one system from several
threads of one process take turns; the hub calls each system from one step at a time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pybreaker

from hub.connectors.retry import SystemUnavailable, TransientError

T = TypeVar("T")

log = logging.getLogger(__name__)

DEFAULT_FAILURES = 5
DEFAULT_RESET_S = 30.0


class _LogTransitions(pybreaker.CircuitBreakerListener):
    """Say so when a system's circuit opens or closes; the name is the system, never its URL."""

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state, new_state) -> None:
        if new_state.name == pybreaker.STATE_OPEN:
            log.warning("%s circuit opened: calls fail fast for %g s", cb.name, cb.reset_timeout)
        elif new_state.name == pybreaker.STATE_CLOSED and old_state is not None:
            log.info("%s circuit closed: calls go through again", cb.name)


def _not_transient(exc: BaseException) -> bool:
    return not isinstance(exc, TransientError)


class SystemBreaker:
    """A system's circuit: `call` runs one network attempt through it."""

    def __init__(self, system: str, *, failures: int, reset_s: float):
        self.system = system
        self._storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=failures,
            reset_timeout=reset_s,
            exclude=[_not_transient],
            listeners=[_LogTransitions()],
            state_storage=self._storage,
            name=system,
            # The failure that trips the circuit is reported as itself; later calls fail fast.
            throw_new_error_on_trip=False,
        )

    def configure(self, *, failures: int | None, reset_s: float | None) -> None:
        if failures is not None:
            self._breaker.fail_max = failures
        if reset_s is not None:
            self._breaker.reset_timeout = reset_s

    @property
    def state(self) -> str:
        return self._breaker.current_state

    def open_until(self) -> datetime:
        opened_at = self._storage.opened_at or datetime.now(timezone.utc)
        return opened_at + timedelta(seconds=self._breaker.reset_timeout)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return self._breaker.call(fn, *args, **kwargs)
        except pybreaker.CircuitBreakerError:
            until = self.open_until().isoformat(timespec="seconds").replace("+00:00", "Z")
            raise SystemUnavailable(f"{self.system} circuit open until {until}") from None


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
