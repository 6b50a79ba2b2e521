"""Pulling changed permits from the PTW by cursor: page, map, store, quarantine the bad."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from hub.failpoints import failpoint
from hub.steps.records import lineage_of, map_inbound, quarantine_rejects

CURSOR = "ptw.permits.updated_since"


@dataclass
class PermitIngest:
    fetched: int = 0
    accepted: int = 0
    quarantined: int = 0
    cursor: str = ""
    samples: list[dict] = field(default_factory=list)
    unmapped: Counter = field(default_factory=Counter)


def ingest_permits(hub_store, client, mapping, cursor_name: str, **query) -> PermitIngest:
    """Every permit changed since the named cursor (and matching `query`), stored or quarantined;
    the cursor then moves to the newest permit taken."""
    out = PermitIngest()
    newest = None
    with client:
        for page in client.pages("permits_changed", since=hub_store.get_cursor(cursor_name), **query):
            vendor_permits = page.get("permit", [])
            out.fetched += len(vendor_permits)
            result = map_inbound(mapping, client, "permit", vendor_permits)
            out.unmapped.update(mapping.unmapped_fields("permit", vendor_permits))
            hub_store.upsert_permits(result.records, datetime.now(timezone.utc), lineage_of(mapping))
            failpoint("permits.before_cursor")
            hub_store.resolve_quarantine_for("ptw", "permit", [p.permit_id for p in result.records])
            out.quarantined += quarantine_rejects(hub_store, "ptw", mapping, result.quarantined)
            out.accepted += len(result.records)
            for permit in result.records:
                newest = permit.updated_at if newest is None or permit.updated_at > newest else newest
            out.samples.extend(
                {"permit_id": p.permit_id, "site": p.site, "type": p.permit_type, "status": p.status, "devices": ", ".join(p.device_ids)}
                for p in result.records[: 10 - len(out.samples)]
            )
    if newest is not None:
        # Inclusive cursor: the newest record is fetched again next time, and upserts make that harmless.
        hub_store.set_cursor(cursor_name, newest.isoformat())
    out.cursor = hub_store.get_cursor(cursor_name) or ""
    return out
