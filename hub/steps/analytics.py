"""What the analytics read from the store for a set of sites, as canonical records.

The assets and `hub report` read through `read_analytics`, then compute with the pure
functions of `hub.analytics.kpis`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from hub.model import Equipment, GateDecision, MaintenanceRecord, Permit
from hub.store import tables


@dataclass(frozen=True)
class AnalyticsData:
    permits: list[Permit]
    equipment: dict[tuple[str, str], Equipment]
    records: list[MaintenanceRecord]
    # The decision trail of those permits, oldest first.
    trail: list[GateDecision]
    # permit -> (decision, written_at) of the hold last written to the PTW.
    holds: dict[str, tuple[str, datetime]]

    @property
    def records_by_id(self) -> dict[tuple[str, str], MaintenanceRecord]:
        return {(r.site, r.record_id): r for r in self.records}


def hold_times(hub_store, permit_ids: Collection[str]) -> dict[str, tuple[str, datetime]]:
    """When each permit's hold was last written back, read from the holds table (the store's
    `load_holds` leaves the time out)."""
    holds = tables.ptw_holds
    query = select(holds.c.permit_id, holds.c.decision, holds.c.written_at)
    with hub_store.engine.connect() as conn:
        rows = conn.execute(query).all()
    wanted = set(permit_ids)
    return {r.permit_id: (r.decision, r.written_at) for r in rows if r.permit_id in wanted}


def read_analytics(hub_store, sites: Collection[str]) -> AnalyticsData:
    permits = [p for site in sorted(sites) for p in hub_store.load_permits(site=site)]
    ids = [p.permit_id for p in permits]
    equipment = {(site, device): e for site in sorted(sites) for device, e in hub_store.load_equipment(site, None).items()}
    return AnalyticsData(
        permits=permits,
        equipment=equipment,
        records=[r for site in sorted(sites) for r in hub_store.load_maintenance_records(site, None)],
        trail=[row.decision for row in hub_store.load_gate_decisions(ids)] if ids else [],
        holds=hold_times(hub_store, ids),
    )
