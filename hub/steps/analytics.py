"""What the analytics read from the store for a set of sites, as canonical records.

The assets and `hub report` read through `read_analytics`, then compute with the pure
functions of `hub.analytics.kpis` and `hub.analytics.cross_system`. Each part is read on first
use and kept: one step computes every analytics asset of a site, and a subset of them reads
only the parts it needs.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from functools import cached_property

from hub.model import FAILURE_KINDS, Equipment, GateDecision, MaintenanceRecord, Permit, QualityRate


class AnalyticsData:
    def __init__(self, hub_store, sites: Collection[str]):
        self._store = hub_store
        self.sites = sorted(sites)

    @cached_property
    def permits(self) -> list[Permit]:
        return [p for site in self.sites for p in self._store.load_permits(site=site)]

    @cached_property
    def failure_records(self) -> list[MaintenanceRecord]:
        """Corrective and emergency work orders: the hazards and failures the analyses time."""
        return [r for site in self.sites for r in self._store.load_maintenance_records(site, None, kinds=FAILURE_KINDS)]

    @cached_property
    def equipment(self) -> dict[tuple[str, str], Equipment]:
        """The equipment the failure work orders name (for its area)."""
        return {
            (site, device): e
            for site in self.sites
            for device, e in self._store.load_equipment(
                site, sorted({r.device_id for r in self.failure_records if r.site == site})
            ).items()
        }

    @cached_property
    def trail(self) -> list[GateDecision]:
        """The decision trail of the permits, oldest first."""
        ids = [p.permit_id for p in self.permits]
        return [row.decision for row in self._store.load_gate_decisions(ids)] if ids else []

    @cached_property
    def holds(self) -> dict[str, tuple[str, datetime]]:
        """permit -> (decision, written_at) of the hold last written to the PTW."""
        return self._store.hold_times([p.permit_id for p in self.permits])

    @cached_property
    def records_by_id(self) -> dict[tuple[str, str], MaintenanceRecord]:
        """The work orders the trail's reasons name, by (site, work order)."""
        site_of = {p.permit_id: p.site for p in self.permits}
        named: dict[str, set[str]] = {}
        for decision in self.trail:
            for reason in decision.reasons:
                if "work_order" in reason.evidence and decision.permit_id in site_of:
                    named.setdefault(site_of[decision.permit_id], set()).add(reason.evidence["work_order"])
        return {
            (site, record_id): record
            for site, ids in sorted(named.items())
            for record_id, record in self._store.maintenance_records_by_id(site, sorted(ids)).items()
        }

    @cached_property
    def quality_rates(self) -> list[QualityRate]:
        """The MES's monthly defect rates per workshop."""
        return [r for site in self.sites for r in self._store.quality_rates(site)]


def read_analytics(hub_store, sites: Collection[str]) -> AnalyticsData:
    return AnalyticsData(hub_store, sites)
