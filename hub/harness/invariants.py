"""What must hold once the hub has recovered from any crash or fault, checked against the plant.

The expectations are derived from the fixture files through the packaged mappings and the pure
decision logic (`hub.logic`), never from what the hub stored: a hub that lost or doubled work
cannot vouch for itself. What is observed is read from the mock systems' admin surface (the
ERP's ledger, the PTW's holds) and from the store only for the hub's own bookkeeping (outbox,
quarantine).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from hub.logic.clearance import SiteEam, build_profiles
from hub.logic.costs import CostError, cost_entries
from hub.logic.gate import decide_all
from hub.logic.rules import load_cost_rules, load_gate_rules
from hub.mappings.engine import load_mapping
from hub.model import ErpDocument
from hub.steps.gate import SYNC_SCOPE_STATUSES, evaluate_unconfigured
from hub.store.repository import HubStore, SchemaNotReadyError

LEDGER, OUTBOX, BLOCKED, NO_STRAY_BLOCK, REASONS, QUARANTINE = (
    "ledger", "outbox", "blocked", "no-stray-block", "reasons", "quarantine"
)
INVARIANTS = {
    LEDGER: "the ERP ledger holds every expected entry once, and nothing else",
    OUTBOX: "every outbox entry is posted under a document the ERP holds",
    BLOCKED: "every permit the gate must block carries the hub's BLOCK",
    NO_STRAY_BLOCK: "no permit the gate allows carries the hub's BLOCK",
    REASONS: "every BLOCK carries the current reasons",
    QUARANTINE: "every rejected record is quarantined with a reason, no valid one is",
}

#: The sites of the fixture plant the hub is configured for (HUB_SITES' default).
FIXTURE_SITES = ("NJ01", "HZ02")
LedgerLine = tuple[Decimal, str, str]  # amount, cost center, GL account
ReasonKey = tuple[str, str | None]  # reason code, device


@dataclass(frozen=True)
class Expected:
    """The plant's correct end state after the hub has synced the fixtures."""

    ledger: dict[str, LedgerLine]  # entry key (the document's reference) -> line
    blocks: dict[str, frozenset[ReasonKey]]  # permit -> reasons of its block
    quarantined: frozenset[tuple[str, str, str]]  # (system, record_kind, source_key)
    allowed: frozenset[str] = frozenset()  # gated permits the gate allows: none may carry the hub's hold


@dataclass(frozen=True)
class Observed:
    """What the plant and the hub's bookkeeping hold after a run."""

    documents: list[ErpDocument]  # the ERP's journal entries
    holds: dict[str, list[dict[str, Any]]]  # PTW permit -> holds of every source
    outbox: list[dict[str, Any]]
    quarantine: list[dict[str, Any]]  # resolved rows included


@dataclass(frozen=True)
class Verdict:
    invariant: str
    problems: tuple[str, ...] = ()

    @property
    def held(self) -> bool:
        return not self.problems


def _fixture(fixtures: Path, name: str) -> list[dict[str, Any]]:
    return json.loads((fixtures / name).read_text(encoding="utf-8"))


def expected_outcome(fixtures: Path, now: datetime, sites: Collection[str] = FIXTURE_SITES) -> Expected:
    """Map the fixture records as the hub would receive them and run the pure logic over them."""
    ptw, eam, mes = load_mapping("ptw"), load_mapping("eam"), load_mapping("mes")
    gate_rules, cost_rules = load_gate_rules(), load_cost_rules()
    permits = ptw.inbound("permit", _fixture(fixtures, "ptw/permits.json"))
    in_scope = [p for p in permits.records if p.status in SYNC_SCOPE_STATUSES and p.site in sites]
    materials = {m for p in in_scope for m in p.material_names}
    equipment = eam.inbound("equipment", _fixture(fixtures, "eam/assets.json"))
    work_orders = eam.inbound("maintenance_record", _fixture(fixtures, "eam/workorders.json"))
    parameters = mes.inbound("process_parameter", _fixture(fixtures, "mes/materials.json"))
    quality = mes.inbound("quality_rate", _fixture(fixtures, "mes/quality.json"))

    # The EAM answers for every device asked, so each was looked up now; a device is (site, number).
    decisions = []
    for site in sorted({p.site for p in permits.records}):
        site_permits = [p for p in permits.records if p.site == site]
        if site not in sites:
            decisions += evaluate_unconfigured(site_permits, gate_rules, now)
            continue
        site_devices = {d for p in in_scope if p.site == site for d in p.device_ids}
        unreadable: dict[str, list[str]] = defaultdict(list)
        for rejected in work_orders.quarantined + equipment.quarantined:
            partial = rejected.partial or {}
            if partial.get("device_id") and partial.get("site", site) == site:
                unreadable[partial["device_id"]].append(rejected.reason)
        eam_view = SiteEam(
            site,
            {e.device_id: e for e in equipment.records if e.site == site and e.device_id in site_devices},
            work_orders.records,
            {d: now for d in site_devices},
            unreadable,
        )
        profiles = build_profiles(site_devices, eam_view, gate_rules, now)
        decisions += decide_all(site_permits, profiles, gate_rules, now)
    blocks = {d.permit_id: frozenset((r.code, r.device_id) for r in d.reasons) for d in decisions if d.decision == "block"}
    allowed = frozenset(d.permit_id for d in decisions if d.decision == "allow")
    # Fail closed: an unreadable permit is blocked unless what could be read shows it is not gated.
    for rejected in permits.quarantined:
        status, kind = rejected.partial.get("status"), rejected.partial.get("permit_type")
        if (status is None or status in gate_rules.gated_statuses) and (
            kind is None or kind in gate_rules.gated_permit_types
        ):
            blocks[rejected.source_key] = frozenset({("PERMIT_RECORD_INVALID", None)})

    ledger: dict[str, LedgerLine] = {}
    uncostable = set()
    for permit in permits.records:
        try:
            entries = cost_entries(permit, cost_rules)
        except CostError:
            uncostable.add(("hub", "safety_cost_entry", permit.permit_id))
            continue
        ledger.update({e.entry_key: (e.amount, e.cost_center, e.gl_account) for e in entries})

    site_device_pairs = {(p.site, d) for p in in_scope for d in p.device_ids}
    asked = {
        "eam": lambda r: (r.partial.get("site"), r.partial.get("device_id")) in site_device_pairs,
        "mes": lambda r: r.partial.get("material_name") in materials,
        "ptw": lambda r: True,
    }
    quarantined = {
        (system, r.kind, r.source_key)
        for system, rejects in (
            ("ptw", permits.quarantined),
            ("eam", equipment.quarantined + work_orders.quarantined),
            ("mes", parameters.quarantined),
        )
        for r in rejects
        if asked[system](r)
    } | {
        # The MES is asked for the quality rates of each configured site.
        ("mes", r.kind, r.source_key) for r in quality.quarantined if (r.partial or {}).get("site") in sites
    }
    return Expected(
        ledger=ledger, blocks=blocks, quarantined=frozenset(quarantined | uncostable), allowed=allowed - blocks.keys()
    )


def observe(admin_urls: dict[str, str], database_url: str) -> Observed:
    """Read the ERP ledger and PTW holds from the mocks' admin surface, and the hub's bookkeeping."""
    with httpx.Client(timeout=30) as http:
        raw = http.get(f"{admin_urls['erp']}/_admin/state").raise_for_status().json()["documents"]
        holds = http.get(f"{admin_urls['ptw']}/_admin/state").raise_for_status().json()["holds"]
    # The mock's ledger is written as its REST face lists documents: the REST flavor reads it.
    mapped = load_mapping("erp").inbound("erp_document", raw)
    if mapped.quarantined:
        raise ValueError(f"the ERP's ledger holds a document the hub cannot read: {mapped.quarantined[0].reason}")
    documents = mapped.records
    try:
        store = HubStore(database_url)
    except SchemaNotReadyError:  # killed before it created its store: it has booked nothing yet
        return Observed(documents, holds, [], [])
    with store:
        return Observed(documents, holds, store.load_outbox(), store.list_quarantine(include_resolved=True))


def _twice(counts: Counter) -> list[str]:
    return sorted(key for key, n in counts.items() if n > 1)


def _ledger(expected: Expected, observed: Observed) -> Verdict:
    problems = [f"reference {ref} booked twice" for ref in _twice(Counter(d.reference for d in observed.documents))]
    problems += [f"message UUID {uuid} booked twice" for uuid in _twice(Counter(d.message_uuid for d in observed.documents))]
    booked = {d.reference: d for d in observed.documents}
    problems += [f"{ref} missing from the ledger" for ref in sorted(expected.ledger.keys() - booked.keys())]
    problems += [f"{ref} booked but not expected" for ref in sorted(booked.keys() - expected.ledger.keys())]
    for ref in sorted(expected.ledger.keys() & booked.keys()):
        doc = booked[ref]
        line = (doc.amount, doc.cost_center, doc.gl_account)
        if line != expected.ledger[ref]:
            problems.append(f"{ref} booked as {line}, expected {expected.ledger[ref]}")
    return Verdict(LEDGER, tuple(problems))


def _outbox(observed: Observed) -> Verdict:
    documents: dict[str, set[str]] = defaultdict(set)
    for doc in observed.documents:
        documents[doc.reference].add(doc.accounting_document)
    problems = []
    for row in observed.outbox:
        key, document = row["entry_key"], row["accounting_document"]
        if row["status"] != "posted":
            problems.append(f"{key} is {row['status']} in the outbox")
        elif document not in documents[key]:
            problems.append(f"{key} recorded as document {document}, the ERP holds {sorted(documents[key]) or 'none'}")
    return Verdict(OUTBOX, tuple(problems))


def _hub_holds(observed: Observed, hold_source: str) -> dict[str, dict[str, Any]]:
    return {
        permit: hold
        for permit, holds in observed.holds.items()
        for hold in holds
        if hold["source"] == hold_source and hold["action"] == "BLOCK"
    }


def _gate(expected: Expected, observed: Observed, hold_source: str) -> list[Verdict]:
    blocks = _hub_holds(observed, hold_source)
    unblocked = [f"{p} has no BLOCK hold from {hold_source}" for p in sorted(expected.blocks.keys() - blocks.keys())]
    stray = [f"{p} is blocked though the gate allows it" for p in sorted(blocks.keys() - expected.blocks.keys())]
    stale = []
    for permit in sorted(expected.blocks.keys() & blocks.keys()):
        found = frozenset((r["code"], r.get("deviceId")) for r in blocks[permit]["reasons"])
        if found != expected.blocks[permit]:
            stale.append(f"{permit} held for {sorted(found, key=str)}, expected {sorted(expected.blocks[permit], key=str)}")
    return [Verdict(BLOCKED, tuple(unblocked)), Verdict(NO_STRAY_BLOCK, tuple(stray)), Verdict(REASONS, tuple(stale))]


def _quarantine(expected: Expected, observed: Observed) -> Verdict:
    problems = [
        f"quarantine row {row['id']} ({row['source_key']}) has no reason"
        for row in observed.quarantine
        if not (row["reason"] or "").strip()
    ]
    held = {(r["system"], r["record_kind"], r["source_key"]) for r in observed.quarantine if not r["resolved"]}
    problems += [f"{key} was rejected but is not in quarantine" for key in sorted(expected.quarantined - held)]
    problems += [f"{key} is quarantined though its record is valid" for key in sorted(held - expected.quarantined)]
    return Verdict(QUARANTINE, tuple(problems))


def check(expected: Expected, observed: Observed, hold_source: str = "integration-hub") -> list[Verdict]:
    """One verdict per invariant, in the order of `INVARIANTS`."""
    return [
        _ledger(expected, observed),
        _outbox(observed),
        *_gate(expected, observed, hold_source),
        _quarantine(expected, observed),
    ]
