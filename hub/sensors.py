"""Re-gating on change: a sensor looks at each site's PTW and EAM changes and re-gates what
changed, so a work order opened on equipment in use reaches the PTW as a hold within a tick.

The sensor looks cheaply (one PTW page and the EAM's change feed per site). A small change is
re-gated in the tick itself, through the same steps as the regate run (`hub.steps.regate`),
and every decision reaches Dagster as a materialization of `permit_gate_decisions` (and of the
assets the re-gate refreshed) on the site's partition. A change too large for a tick, or one
whose re-gate hit a problem, starts a regate run for the site instead, which Dagster retries.
One run per site in flight at most: a site whose run is still queued or running is looked at
again once it is done, so a burst of changes is one run, not one per tick.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from dagster import (
    AssetMaterialization,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)
from dagster._core.storage.tags import MAX_RETRIES_TAG, PARTITION_NAME_TAG, RETRY_STRATEGY_TAG

from hub.connectors.concurrency import bounded_map
from hub.connectors.eam import SoapFault
from hub.connectors.retry import TransientError, VendorRejected
from hub.mappings.engine import load_mapping
from hub.resources import EamResource, HubStoreResource, PtwResource, RulesResource, SitesResource
from hub.steps.changes import SiteChanges, look
from hub.steps.gate import ChangeScope
from hub.steps.regate import Regated, Systems, regate_site

#: Sites looked at side by side in one tick.
SITES_AT_ONCE = 4
#: How often the daemon tries a failed re-gate run again (Dagster's run retries, on in hub's Dagster homes).
RUN_RETRIES = 3
#: When the sensor saw the changes a re-gate run was started for (how late a hold is, is measured from it).
SEEN_AT_TAG = "hub/changes_seen_at"


IN_FLIGHT = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]


def sites_in_flight(instance, job_name: str) -> set[str]:
    """Sites with a run of the job queued or running."""
    records = instance.get_run_records(RunsFilter(job_name=job_name, statuses=IN_FLIGHT), limit=100)
    return {r.dagster_run.tags.get(PARTITION_NAME_TAG) for r in records}


def materializations(regated: Regated, seen_at: str) -> list[AssetMaterialization]:
    """What a re-gate within the tick refreshed, as Dagster events on the site's partition."""
    site = regated.site
    by = {"re_gated_by": "regate_on_change sensor", "changes_seen_at": seen_at}
    decided = [d.permit_id for d in regated.decisions]
    return [
        AssetMaterialization("permits", partition=site, metadata={**by, "dagster/row_count": regated.permits.accepted,
                             "quarantined_new": regated.permits.quarantined, "cursor": regated.permits.cursor}),
        AssetMaterialization("equipment", partition=site, metadata={**by, "dagster/row_count": regated.eam.pull.equipment,
                             "devices_requested": regated.eam.requested}),
        AssetMaterialization("maintenance_records", partition=site, metadata={**by, "dagster/row_count": regated.eam.pull.records,
                             "work_orders_deleted": regated.eam.deleted}),
        AssetMaterialization("equipment_clearance", partition=site, metadata={**by, "dagster/row_count": len(regated.devices),
                             "devices": ", ".join(regated.devices[:50]) or "none"}),
        AssetMaterialization("permit_gate_decisions", partition=site, metadata={
            **by,
            "dagster/row_count": len(decided),
            "decisions_changed": regated.recorded,
            "blocked": len(regated.blocked),
            "allowed": len(decided) - len(regated.blocked),
            "holds_written": regated.written.holds_placed,
            "permit_ids": ", ".join(decided[:50]) or "none",
            "blocked_permit_ids": ", ".join(regated.blocked[:50]) or "none",
        }),
    ]


def regate_sensor(job, interval_s: int, in_tick_max: int):
    @sensor(
        name="regate_on_change",
        job=job,
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description="Every tick: what changed at a site's PTW or EAM is re-gated, within the tick or by a run.",
    )
    def regate_on_change(
        context: SensorEvaluationContext,
        store: HubStoreResource,
        ptw: PtwResource,
        eam: EamResource,
        sites: SitesResource,
        rules: RulesResource,
    ) -> SensorResult:
        cursors = json.loads(context.cursor) if context.cursor else {}
        now = datetime.now(timezone.utc)
        hub_store = store.store()
        busy = sites_in_flight(context.instance, job.name)
        ptw_mapping, eam_mapping = load_mapping(ptw.mapping), load_mapping(eam.mapping)
        systems = Systems(
            ptw.client, ptw_mapping, ptw.hold_source, eam.client, eam_mapping, eam.full_pull_every_h, eam.suspect_drop_share
        )
        gate_rules = rules.gate() if in_tick_max else None

        def look_at(site: str) -> tuple[SiteChanges, Regated | Exception | None] | Exception:
            try:
                changes = look(hub_store, ptw.client(), ptw_mapping, eam.client(), eam_mapping, site, cursors.get(site, {}), now)
            except (TransientError, VendorRejected, SoapFault) as exc:
                return exc
            if not changes.changed or len(changes.permits) + len(changes.devices) > in_tick_max:
                return changes, None
            try:
                return changes, regate_site(hub_store, systems, gate_rules, site, ChangeScope(frozenset(changes.permits), frozenset(changes.devices)))
            except Exception as exc:  # noqa: BLE001 - whatever went wrong, the regate run takes the change over
                return changes, exc

        # A site whose run has not stored what it was started for is looked at again once it has,
        # from the same cursor, so a burst of changes becomes the next run rather than many. The
        # others are looked at side by side: a tick waits for the slowest site, not for all in turn.
        idle = [site for site in sites.configured if site not in busy]
        requests, events = [], []
        for site, looked in bounded_map(look_at, idle, SITES_AT_ONCE):
            if isinstance(looked, Exception):
                # Nothing learnt: the cursor stays, and the scheduled sync's staleness rule blocks.
                context.log.warning(f"{site}: could not look for changes: {looked}")
                continue
            changes, regated = looked
            cursors[site] = changes.cursor()
            if not changes.changed:
                continue
            summary = f"{site}: permits changed: {len(changes.permits)}, devices changed: {len(changes.devices)}"
            if isinstance(regated, Regated):
                events += materializations(regated, changes.seen_at)
                if not regated.problems:
                    context.log.info(f"{summary}; re-gated in the tick, holds written: {regated.written.holds_placed}")
                    continue
                context.log.warning(f"{summary}; re-gated in the tick, not whole ({'; '.join(regated.problems[:5])}): a run takes it over")
            elif isinstance(regated, Exception):
                context.log.warning(f"{summary}; re-gate in the tick failed ({type(regated).__name__}: {regated}): a run takes it over")
            else:
                context.log.info(f"{summary}; re-gated by a run")
            requests.append(
                RunRequest(
                    run_key=changes.run_key,
                    run_config=changes.run_config(),
                    # The cursor has moved past these changes: a failed run is tried again, whole.
                    tags={
                        PARTITION_NAME_TAG: site,
                        SEEN_AT_TAG: changes.seen_at,
                        MAX_RETRIES_TAG: str(RUN_RETRIES),
                        RETRY_STRATEGY_TAG: "ALL_STEPS",
                    },
                )
            )
        return SensorResult(run_requests=requests, asset_events=events, cursor=json.dumps(cursors, sort_keys=True))

    return regate_on_change
