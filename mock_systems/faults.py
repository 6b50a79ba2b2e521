"""Fault plan: whether a request to a mock is delayed, refused, garbled or cut off.

One implementation for every mock (applied by the middleware in `base.py`), so that a fault
means the same thing on every system and the hub's retry and crash-safety logic can be tested
against each.

Plan JSON (see docs/protocols.md):

    {"latency_ms": 50,
     "rules": [{"kind": "status", "status": 503, "times": 1, "path_prefix": "/api/v1/permits"},
               {"kind": "rate_limit", "retry_after_s": 1, "times": 1},
               {"kind": "timeout", "delay_s": 30, "probability": 0.1, "seed": 7},
               {"kind": "commit_then_drop", "times": 1, "method": "POST"}]}

Kinds in `REFUSING_KINDS` answer before the system sees the request; kinds in `COMMITTING_KINDS`
let the system handle it (its changes commit) and then spoil or withhold the answer.

Rules are tried in order; the first one that fires decides the request. A rule with `times`
fires on the first `times` requests it is asked about; with `probability` it fires at random
from its own seeded generator (with both, at random but at most `times` times); with neither it
fires on every matching request.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any

REFUSING_KINDS = ("status", "rate_limit", "reset", "malformed", "soap_fault")
COMMITTING_KINDS = ("timeout", "truncate", "commit_then_drop", "commit_then_status")
KINDS = REFUSING_KINDS + COMMITTING_KINDS
DEFAULT_SOAP_FAULT_MESSAGE = "EAM backend unavailable"
_RULE_KEYS = {
    "kind",
    "status",
    "retry_after_s",
    "delay_s",
    "message",
    "times",
    "probability",
    "seed",
    "path_prefix",
    "method",
}
_KIND_KEYS = {
    "status": {"status"},
    "commit_then_status": {"status"},
    "rate_limit": {"retry_after_s"},
    "timeout": {"delay_s"},
    "soap_fault": {"message"},
}
_KIND_SPECIFIC_KEYS = set().union(*_KIND_KEYS.values())


class FaultPlanError(ValueError):
    """A fault plan that does not follow the documented shape."""


def _number(raw: dict[str, Any], key: str, default: float, *, minimum: float = 0) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise FaultPlanError(f"{key} must be a number >= {minimum}, got {value!r}")
    return float(value)


@dataclass
class FaultRule:
    kind: str
    status: int = 503
    retry_after_s: float = 1.0
    delay_s: float = 30.0
    message: str = DEFAULT_SOAP_FAULT_MESSAGE
    times: int | None = None
    probability: float | None = None
    seed: int | None = None
    path_prefix: str = ""
    method: str | None = None
    fired: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def from_dict(cls, raw: Any) -> FaultRule:
        if not isinstance(raw, dict):
            raise FaultPlanError(f"a rule must be an object, got {raw!r}")
        unknown = set(raw) - _RULE_KEYS
        if unknown:
            raise FaultPlanError(f"unknown rule keys: {sorted(unknown)}")
        kind = raw.get("kind")
        if kind not in KINDS:
            raise FaultPlanError(f"kind must be one of {list(KINDS)}, got {kind!r}")
        misplaced = (_KIND_SPECIFIC_KEYS - _KIND_KEYS.get(kind, set())) & set(raw)
        if misplaced:
            raise FaultPlanError(f"keys {sorted(misplaced)} do not apply to kind {kind!r}")
        status = raw.get("status", 503)
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise FaultPlanError(f"status must be an HTTP status code, got {status!r}")
        times = raw.get("times")
        if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 0):
            raise FaultPlanError(f"times must be a non-negative integer, got {times!r}")
        probability = raw.get("probability")
        if probability is not None:
            probability = _number(raw, "probability", 0)
            if probability > 1:
                raise FaultPlanError(f"probability must be between 0 and 1, got {probability!r}")
        seed = raw.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise FaultPlanError(f"seed must be an integer, got {seed!r}")
        path_prefix = raw.get("path_prefix", "")
        if not isinstance(path_prefix, str):
            raise FaultPlanError(f"path_prefix must be a string, got {path_prefix!r}")
        method = raw.get("method")
        if method is not None and not isinstance(method, str):
            raise FaultPlanError(f"method must be a string, got {method!r}")
        message = raw.get("message", DEFAULT_SOAP_FAULT_MESSAGE)
        if not isinstance(message, str):
            raise FaultPlanError(f"message must be a string, got {message!r}")
        return cls(
            kind=kind,
            status=status,
            retry_after_s=_number(raw, "retry_after_s", 1.0),
            delay_s=_number(raw, "delay_s", 30.0),
            message=message,
            times=times,
            probability=probability,
            seed=seed,
            path_prefix=path_prefix,
            method=method.upper() if method else None,
            _rng=random.Random(seed),
        )

    def matches(self, method: str, path: str) -> bool:
        return path.startswith(self.path_prefix) and (self.method is None or self.method == method.upper())

    def fire(self) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.probability is not None and self._rng.random() >= self.probability:
            return False
        self.fired += 1
        return True

    @property
    def retry_after_header(self) -> str:
        """Retry-After carries whole seconds."""
        return str(math.ceil(self.retry_after_s))


@dataclass(frozen=True)
class FaultDecision:
    """What to do to one request: wait `latency_s`, then apply `rule` (None: answer normally)."""

    latency_s: float
    rule: FaultRule | None


class FaultPlan:
    """A parsed, stateful fault plan (rule counters and random generators live here)."""

    def __init__(self, latency_ms: float = 0, rules: list[FaultRule] | None = None):
        self.latency_ms = latency_ms
        self.rules = rules or []
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, raw: Any) -> FaultPlan:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise FaultPlanError(f"a fault plan must be an object, got {raw!r}")
        unknown = set(raw) - {"latency_ms", "rules"}
        if unknown:
            raise FaultPlanError(f"unknown fault plan keys: {sorted(unknown)}")
        rules = raw.get("rules", [])
        if not isinstance(rules, list):
            raise FaultPlanError("rules must be a list")
        return cls(_number(raw, "latency_ms", 0), [FaultRule.from_dict(r) for r in rules])

    def decide(self, method: str, path: str) -> FaultDecision:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path) and rule.fire():
                    return FaultDecision(self.latency_ms / 1000, rule)
            return FaultDecision(self.latency_ms / 1000, None)


def split_by_system(raw: Any, system_names: tuple[str, ...]) -> dict[str, dict]:
    """Fault configuration per system from a start-time config.

    Either keyed by system name (`{"ptw": PLAN, "erp": PLAN}`), or one plan (an object with
    `rules` and/or `latency_ms`) that applies to every system.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise FaultPlanError("fault configuration must be an object")
    if set(raw) & {"rules", "latency_ms"}:
        FaultPlan.parse(raw)
        return {name: raw for name in system_names}
    unknown = set(raw) - set(system_names)
    if unknown:
        raise FaultPlanError(f"unknown systems in fault configuration: {sorted(unknown)}")
    for plan in raw.values():
        FaultPlan.parse(plan)
    return dict(raw)
