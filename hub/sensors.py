"""Re-gating on change: a sensor looks at each site's PTW and EAM changes and starts one run per
site that changed, so a work order opened on equipment reaches the gate within a tick.

The sensor only looks (one PTW page and the EAM's change feed per site); the run pulls,
recomputes clearance and gates only the permits and devices that changed, through the same
steps as the full sync, and writes only the holds that changed. One run per site in flight at
most: a site whose run is still queued or running is looked at again once it is done, so a
burst of changes is one run, not one per tick.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from dagster import DagsterRunStatus, DefaultSensorStatus, RunRequest, RunsFilter, SensorEvaluationContext, SensorResult, sensor
from dagster._core.storage.tags import MAX_RETRIES_TAG, PARTITION_NAME_TAG, RETRY_STRATEGY_TAG

from hub.connectors.concurrency import bounded_map
from hub.connectors.eam import SoapFault
from hub.connectors.retry import TransientError, VendorRejected
from hub.mappings.engine import load_mapping
from hub.resources import EamResource, HubStoreResource, PtwResource, SitesResource
from hub.steps.changes import SiteChanges, look

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


def regate_sensor(job, interval_s: int):
    @sensor(
        name="regate_on_change",
        job=job,
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description="Every tick: a site whose permits or work orders changed is re-gated by one run.",
    )
    def regate_on_change(
        context: SensorEvaluationContext, store: HubStoreResource, ptw: PtwResource, eam: EamResource, sites: SitesResource
    ) -> SensorResult:
        cursors = json.loads(context.cursor) if context.cursor else {}
        now = datetime.now(timezone.utc)
        hub_store = store.store()
        requests = []
        busy = sites_in_flight(context.instance, job.name)
        ptw_mapping, eam_mapping = load_mapping(ptw.mapping), load_mapping(eam.mapping)

        def look_at(site: str) -> SiteChanges | Exception:
            try:
                return look(hub_store, ptw.client(), ptw_mapping, eam.client(), eam_mapping, site, cursors.get(site, {}), now)
            except (TransientError, VendorRejected, SoapFault) as exc:
                return exc

        # A site whose run has not stored what it was started for is looked at again once it has,
        # from the same cursor, so a burst of changes becomes the next run rather than many. The
        # others are looked at side by side: a tick waits for the slowest site, not for all in turn.
        idle = [site for site in sites.configured if site not in busy]
        for site, changes in bounded_map(look_at, idle, SITES_AT_ONCE):
            if isinstance(changes, Exception):
                # Nothing learnt: the cursor stays, and the scheduled sync's staleness rule blocks.
                context.log.warning(f"{site}: could not look for changes: {changes}")
                continue
            cursors[site] = changes.cursor()
            if changes.changed:
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
                context.log.info(f"{site}: permits changed: {len(changes.permits)}, devices changed: {len(changes.devices)}")
        return SensorResult(run_requests=requests, cursor=json.dumps(cursors, sort_keys=True))

    return regate_on_change
