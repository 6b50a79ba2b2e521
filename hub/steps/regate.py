"""Re-gating one site's change in one call: the regate run's steps (changed permits, the EAM for
the devices touched, their clearance, the decisions, the changed holds) without a run.

The regate_on_change sensor calls it on the change it just saw, so a hold lands within a tick
instead of after a run's launch; the decisions are the same ones the run would make, through
the same steps. A change too large for a tick, or one whose re-gate hit a problem, goes to the
regate run instead, which Dagster retries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from hub.logic.rules import GateRules
from hub.model import GateDecision
from hub.steps.eam import SitePull, pull_site
from hub.steps.gate import ChangeScope, evaluate_site, record_decisions, refresh_clearance
from hub.steps.ptw import CURSOR, PermitIngest, ingest_permits
from hub.writers.ptw_holds import WriteBack, write_holds


@dataclass(frozen=True)
class Systems:
    """What a re-gate talks to: the PTW (permits in, holds out) and the EAM, with their mappings.
    Clients are made per step, as each step closes the one it used."""

    ptw_client: Callable[[], object]
    ptw_mapping: object
    hold_source: str
    eam_client: Callable[[], object]
    eam_mapping: object
    full_pull_every_h: float
    suspect_drop_share: float


@dataclass(frozen=True)
class Regated:
    site: str
    permits: PermitIngest
    eam: SitePull
    devices: list[str]
    decisions: list[GateDecision]
    recorded: int
    written: WriteBack

    @property
    def problems(self) -> list[str]:
        """What kept this re-gate from being whole: an EAM reply missing, holds not written."""
        eam = [f"EAM: {self.eam.error}"] if self.eam.error else []
        return eam + [f"PTW write-back: {failure}" for failure in self.written.failed]

    @property
    def blocked(self) -> list[str]:
        return [d.permit_id for d in self.decisions if d.decision == "block"]


def regate_site(hub_store, systems: Systems, rules: GateRules, site: str, scope: ChangeScope) -> Regated:
    """Take the site's changed permits, pull the devices `scope` touches, decide every permit on
    them, and write the holds whose decision changed (no reconciliation: that is the sync's)."""
    permits = ingest_permits(hub_store, systems.ptw_client(), systems.ptw_mapping, f"{CURSOR}.{site}", site=site)
    devices = scope.devices_touched(hub_store, site)
    with systems.eam_client() as client:
        pulled = pull_site(
            hub_store, client, systems.eam_mapping, site, devices, systems.full_pull_every_h, systems.suspect_drop_share
        )
    now = datetime.now(timezone.utc)
    refresh_clearance(hub_store, site, devices, rules, now, scoped=True)
    decisions = evaluate_site(hub_store, site, rules, now, stored=True, scope=scope)
    recorded = record_decisions(hub_store, decisions, now)
    written = write_holds(
        hub_store, systems.ptw_client(), systems.ptw_mapping, systems.hold_source, decisions, reconcile=False, site=site
    )
    return Regated(site, permits, pulled, sorted(devices), decisions, recorded, written)
