"""Small value types the store hands in and out (besides the canonical models)."""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Mapping

from hub.model import GateDecision, SafetyCostEntry


@dataclass(frozen=True)
class QuarantineItem:
    """A record that failed validation, kept with its reason so it can be replayed."""

    system: str  # "ptw" | "eam" | "mes" | "erp" ...
    record_kind: str  # "permit" | "equipment" | "maintenance_record" ...
    source_key: str | None  # the record's id in the source system, if it had one
    payload: Mapping[str, Any]  # the raw record as received (JSON-able)
    field: str | None  # the offending field, if one
    reason: str
    source_file: str | None = None
    partial: Mapping[str, Any] = field(default_factory=dict)  # canonical fields that could be read


@dataclass(frozen=True)
class OutboxRow:
    entry_key: str
    message_uuid: str
    entry: SafetyCostEntry
    status: str
    attempts: int


@dataclass(frozen=True)
class GateDecisionRow:
    id: int
    fingerprint: str
    decision: GateDecision = field(repr=False)


@dataclass(frozen=True)
class AuditBatch:
    """Audit entries to chain in the same transaction as the change they record."""

    kind: str
    entries: Sequence[tuple[str, Mapping[str, Any]]]
    recorded_at: datetime
