"""Replaying quarantined records after a fix, so they flow on like any fetched record.

A vendor record is mapped again with the mapping file that rejected it (now fixed);
a cost line is recomputed with the current cost rules; an entry the ERP refused is
queued again under its original message UUID. Replayed records keep the time they
were received, so an old EAM answer can never look fresh.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any
from datetime import datetime, timezone

from hub.logic.costs import CostError, cost_entries, message_uuid
from hub.logic.rules import CostRules
from hub.mappings.engine import Mapping, load_mapping
from hub.model import Permit
from hub.steps.records import lookup_tables, requests_tables
from hub.store.repository import HubStore


@dataclass
class ReplayOutcome:
    replayed: list[str] = field(default_factory=list)
    still_failing: list[tuple[str, str]] = field(default_factory=list)  # (record, current reason)


def _upsert_for(store: HubStore, kind: str) -> Callable:
    return {
        "permit": store.upsert_permits,
        "equipment": store.upsert_equipment,
        "maintenance_record": store.upsert_maintenance_records,
        "process_parameter": store.upsert_process_parameters,
        "quality_rate": store.upsert_quality_rates,
    }[kind]


def _label(row: dict) -> str:
    return f"#{row['id']} {row['system']}/{row['record_kind']} {row['source_key'] or '(no key)'}"


def _tables(mapping: Mapping, system: str, client_of: Callable[[str], Any] | None) -> dict | None:
    """The look-up tables the mapping requests, fetched now through the system's client, so a
    record is mapped again as it would be if pulled now (None: no client given, none fetched)."""
    if client_of is None or not requests_tables(mapping):
        return None
    with client_of(system) as client:
        return lookup_tables(mapping, client)


def _replay_vendor_records(
    store: HubStore, rows: list[dict], outcome: ReplayOutcome, client_of: Callable[[str], Any] | None
) -> None:
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["source_file"] or row["system"], row["record_kind"], row["system"])].append(row)
    for (source, kind, system), members in groups.items():
        mapping = load_mapping(source)
        tables = _tables(mapping, system, client_of)
        upsert = _upsert_for(store, kind)
        for row in members:
            result = mapping.inbound(kind, [row["payload"]], tables=tables)
            if result.quarantined:
                outcome.still_failing.append((_label(row), result.quarantined[0].reason))
                continue
            upsert(result.records, row["created_at"], (mapping.name, mapping.sha256))
            store.resolve_quarantine([row["id"]], replayed_at=datetime.now(timezone.utc))
            outcome.replayed.append(_label(row))


def _replay_cost_lines(store: HubStore, rows: list[dict], rules: CostRules, outcome: ReplayOutcome) -> None:
    for row in rows:
        try:
            entries = cost_entries(Permit.model_validate(row["payload"]), rules)
        except CostError as exc:
            outcome.still_failing.append((_label(row), str(exc)))
            continue
        store.enqueue_entries(entries, {e.entry_key: str(message_uuid(e.entry_key)) for e in entries})
        store.resolve_quarantine([row["id"]], replayed_at=datetime.now(timezone.utc))
        outcome.replayed.append(_label(row))


def replay(
    store: HubStore,
    cost_rules: CostRules,
    ids: Collection[int] | None = None,
    client_of: Callable[[str], Any] | None = None,
) -> ReplayOutcome:
    """Replay open quarantine rows (all, or those with the given ids). `client_of(system)` gives
    a system's client, through which look-up tables a mapping requests are fetched."""
    rows = [r for r in store.list_quarantine() if ids is None or r["id"] in set(ids)]
    outcome = ReplayOutcome()
    _replay_vendor_records(store, [r for r in rows if r["system"] in ("ptw", "eam", "mes")], outcome, client_of)
    _replay_cost_lines(store, [r for r in rows if r["system"] == "hub"], cost_rules, outcome)
    refused = [r for r in rows if r["system"] == "erp"]
    store.requeue_rejected([r["source_key"] for r in refused])
    store.resolve_quarantine([r["id"] for r in refused], replayed_at=datetime.now(timezone.utc))
    outcome.replayed.extend(_label(r) for r in refused)
    return outcome
