"""Fault plan: whether a request to a mock is delayed, refused, garbled or cut off.

One implementation for every mock (applied by the middleware in `base.py`), so that a fault
means the same thing on every system and the hub's retry and crash-safety logic can be tested
against each.

Plan JSON (see docs/protocols.md):

    {"latency_ms": 50,
     "rules": [{"kind": "status", "status": 503, "times": 1, "path_prefix": "/api/v1/permits"},
               {"kind": "rate_limit", "retry_after_s": 1, "times": 1},
               {"kind": "timeout", "delay_s": 30, "probability": 0.1, "seed": 7},
               {"kind": "commit_then_drop", "times": 1, "method": "POST"},
               {"kind": "shrink", "keep": 0.5, "seed": 3, "path_prefix": "/eam/soap"}]}

Kinds in `REFUSING_KINDS` answer before the system sees the request; kinds in `COMMITTING_KINDS`
let the system handle it (its changes commit) and then spoil or withhold the answer. `empty`
and `shrink` rewrite the system's own well-formed answer (`empty_reply`, `shrink_reply`) so it
stays well-formed but lists no records, or only a share of them.

Rules are tried in order; the first one that fires decides the request. A rule with `times`
fires on the first `times` requests it is asked about; with `probability` it fires at random
from its own seeded generator (with both, at random but at most `times` times); with neither it
fires on every matching request.
"""

from __future__ import annotations

import json
import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from .xmlsafe import hardened_parser

REFUSING_KINDS = ("status", "rate_limit", "reset", "malformed", "soap_fault")
COMMITTING_KINDS = ("timeout", "truncate", "commit_then_drop", "commit_then_status", "empty", "shrink")
KINDS = REFUSING_KINDS + COMMITTING_KINDS
DEFAULT_SOAP_FAULT_MESSAGE = "EAM backend unavailable"
_RULE_KEYS = {
    "kind",
    "status",
    "retry_after_s",
    "delay_s",
    "message",
    "keep",
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
    "shrink": {"keep"},
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
    keep: float = 0.5
    times: int | None = None
    probability: float | None = None
    seed: int | None = None
    path_prefix: str = ""
    method: str | None = None
    fired: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _pick_rng: random.Random = field(default_factory=random.Random, repr=False)  # which records `shrink` keeps

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
        keep = _number(raw, "keep", 0.5)
        if keep > 1:
            raise FaultPlanError(f"keep must be between 0 and 1, got {keep!r}")
        return cls(
            kind=kind,
            status=status,
            retry_after_s=_number(raw, "retry_after_s", 1.0),
            delay_s=_number(raw, "delay_s", 30.0),
            message=message,
            keep=keep,
            times=times,
            probability=probability,
            seed=seed,
            path_prefix=path_prefix,
            method=method.upper() if method else None,
            _rng=random.Random(seed),
            _pick_rng=random.Random(seed),
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


    def kept(self, count: int) -> list[int]:
        """Which of `count` records a `shrink` keeps: floor(keep * count) of them, in order."""
        wanted = math.floor(count * self.keep + 1e-9)
        return sorted(self._pick_rng.sample(range(count), wanted))


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


# ---------------------------------------------------------------------------- rewriting a real answer

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
# Keys that say more records follow: an empty answer says none do.
_NEXT_NULLED = ("next_page_token",)  # PTW: documented as present, null on the last page
_NEXT_DROPPED = ("nextPage", "__next", "@odata.nextLink")  # OSLC responseInfo.nextPage, OData v2/v4
# Keys that count the records: an empty answer counts none.
_COUNTS = ("totalCount", "__count", "@odata.count", "total")
_XML_NOT_RECORDS = ("MessageHeader", "Log")


def _record_lists(value: Any) -> list[list]:
    """The answer's record lists: the shallowest non-empty lists of objects (all of that depth)."""
    level = [value]
    while level:
        found = [v for v in level if isinstance(v, list) and v and all(isinstance(i, dict) for i in v)]
        if found:
            return found
        deeper: list[Any] = []
        for v in level:
            if isinstance(v, dict):
                deeper.extend(v.values())
        level = deeper
    return []


def _say_nothing_follows(value: Any) -> None:
    if isinstance(value, dict):
        for key in _NEXT_DROPPED:
            value.pop(key, None)
        for key in _NEXT_NULLED:
            if key in value:
                value[key] = None
        for key in _COUNTS:
            if key in value and not isinstance(value[key], bool):
                if isinstance(value[key], int):
                    value[key] = 0
                elif isinstance(value[key], str):
                    value[key] = "0"
        for item in value.values():
            _say_nothing_follows(item)
    elif isinstance(value, list):
        for item in value:
            _say_nothing_follows(item)


def _json_dumps(value: Any) -> bytes:
    # As the mocks' JSONResponse renders it.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode("utf-8")


def _soap_records(body: bytes) -> tuple[etree._Element, etree._Element] | None:
    """(envelope, the Body's answer element) of a SOAP answer that is not a Fault, else None."""
    try:
        root = etree.fromstring(body, hardened_parser())
    except etree.XMLSyntaxError:
        return None
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        return None  # e.g. the WSDL
    soap_body = root.find(f"{{{SOAP_ENV}}}Body")
    answer = next(iter(soap_body), None) if soap_body is not None else None
    if answer is None or not isinstance(answer.tag, str) or answer.tag == f"{{{SOAP_ENV}}}Fault":
        return None
    return root, answer


def _xml_records(answer: etree._Element) -> list[etree._Element]:
    """The records of a SOAP answer: its children, but not the message's own header and log
    (SAP's `MessageHeader` and `Log`), which say what the message is, not what it lists."""
    return [child for child in answer if etree.QName(child).localname not in _XML_NOT_RECORDS]


def _rewrite(body: bytes, content_type: str, drop_json, drop_xml) -> bytes:
    kind = content_type.lower()
    if "json" in kind:
        try:
            value = json.loads(body)
        except ValueError:
            return body
        drop_json(value)
        return _json_dumps(value)
    if "xml" in kind:
        found = _soap_records(body)
        if found is None:
            return body
        root, answer = found
        drop_xml(answer)
        return etree.tostring(root, xml_declaration=True, encoding="utf-8")
    return body


def empty_reply(body: bytes, content_type: str) -> bytes:
    """The answer with no records, in the system's own format; a body it cannot read is kept.

    JSON: every record list emptied (`items: []`, `member: []`, `d.results: []`,
    `MaterialDefinition: []`, ...), counts zeroed and next-page pointers removed (the PTW's
    `next_page_token` set to null). SOAP: the answer element (e.g. `GetAssetMaintenanceResponse`)
    without children; a Fault or a WSDL is kept.
    """

    def drop_json(value: Any) -> None:
        for records in _record_lists(value):
            records.clear()
        _say_nothing_follows(value)

    def drop_xml(answer: etree._Element) -> None:
        for child in _xml_records(answer):
            answer.remove(child)

    return _rewrite(body, content_type, drop_json, drop_xml)


def shrink_reply(body: bytes, content_type: str, rule: FaultRule) -> bytes:
    """The answer keeping only floor(`rule.keep` x n) of each list's n records, chosen by the
    rule's seeded generator, in their order; everything else (counts, next-page pointers) as
    the system gave it. SOAP: records are the answer element's children, by element name."""

    def drop_json(value: Any) -> None:
        for records in _record_lists(value):
            records[:] = [records[i] for i in rule.kept(len(records))]

    def drop_xml(answer: etree._Element) -> None:
        groups: dict[str, list[etree._Element]] = {}
        for child in _xml_records(answer):
            groups.setdefault(str(child.tag), []).append(child)
        for children in groups.values():
            kept = set(rule.kept(len(children)))
            for index, child in enumerate(children):
                if index not in kept:
                    answer.remove(child)

    return _rewrite(body, content_type, drop_json, drop_xml)
