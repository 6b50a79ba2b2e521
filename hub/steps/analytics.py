"""What the analytics read from the store for a set of sites, as canonical records.

The assets and `hub report` read through `read_analytics`, then compute with the pure
functions of `hub.analytics.kpis` (and, in the report, `hub.analytics.cross_system`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from hub.model import Equipment, GateDecision, MaintenanceRecord, Permit, QualityRate


@dataclass(frozen=True)
class AnalyticsData:
    permits: list[Permit]
    equipment: dict[tuple[str, str], Equipment]
    records: list[MaintenanceRecord]
    # The decision trail of those permits, oldest first.
    trail: list[GateDecision]
    # permit -> (decision, written_at) of the hold last written to the PTW.
    holds: dict[str, tuple[str, datetime]]
    # The MES's monthly defect rates per workshop, for the report's work-at-height analysis.
    quality_rates: list[QualityRate]

    @property
    def records_by_id(self) -> dict[tuple[str, str], MaintenanceRecord]:
        return {(r.site, r.record_id): r for r in self.records}


def read_analytics(hub_store, sites: Collection[str]) -> AnalyticsData:
    permits = [p for site in sorted(sites) for p in hub_store.load_permits(site=site)]
    ids = [p.permit_id for p in permits]
    equipment = {(site, device): e for site in sorted(sites) for device, e in hub_store.load_equipment(site, None).items()}
    return AnalyticsData(
        permits=permits,
        equipment=equipment,
        records=[r for site in sorted(sites) for r in hub_store.load_maintenance_records(site, None)],
        trail=[row.decision for row in hub_store.load_gate_decisions(ids)] if ids else [],
        holds=hub_store.hold_times(ids),
        quality_rates=[r for site in sorted(sites) for r in hub_store.quality_rates(site)],
    )
