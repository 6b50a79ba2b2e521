"""`equipment` and `maintenance_records`: one batched EAM pull per site for the devices in scope.

What is pulled, and what a reply may delete or refresh, is decided in `hub.steps.eam`.

A failed pull does not fail the assets: the devices keep their old answer time, so the gate
sees them as stale or unavailable and blocks. Failing here would instead stop the gate from
running at all.
"""


from collections import Counter
from datetime import datetime, timezone

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetOut,
    MetadataValue,
    Output,
    asset_check,
    multi_asset,
)

from hub.assets.common import (
    ChangeScopeConfig,
    column_schema,
    devices_in_scope,
    drift_result,
    drift_spec,
    mapping_label,
    preview,
)
from hub.assets.sites import site_partitions, sites_of
from hub.assets.systems import EAM
from hub.mappings.engine import load_mapping
from hub.resources import EamResource, HubStoreResource, RulesResource
from hub.steps.eam import EamPull, pull_site
from hub.steps.gate import EAM_ANSWERED, suspect_devices
from hub.store import tables

SUSPECT_CHECK = "eam_replies_trusted"


@multi_asset(
    group_name="eam",
    deps=["permits", EAM],
    outs={
        "equipment": AssetOut(
            description="Equipment of the devices linked to permits in scope, from the EAM, by (site, device).",
            metadata={"dagster/column_schema": column_schema(tables.equipment)},
        ),
        "maintenance_records": AssetOut(
            description="Work orders of those devices, from the EAM, by (site, work order).",
            metadata={"dagster/column_schema": column_schema(tables.maintenance_records)},
        ),
    },
    check_specs=[
        drift_spec("equipment", site_partitions),
        drift_spec("maintenance_records", site_partitions),
        AssetCheckSpec(
            SUSPECT_CHECK,
            asset="maintenance_records",
            description="No EAM reply was held as suspect (empty, or dropping many open work orders at once).",
            partitions_def=site_partitions,
        ),
    ],
    partitions_def=site_partitions,
)
def eam_pull(context: AssetExecutionContext, config: ChangeScopeConfig, store: HubStoreResource, eam: EamResource):
    hub_store = store.store()
    mapping = load_mapping(eam.mapping)
    client = eam.client()
    totals: Counter = Counter()
    errors, suspect_reasons = [], []
    pulls: list[EamPull] = []
    with client:
        for site in sites_of(context):
            scope = config.scope()
            device_ids = devices_in_scope(hub_store, site) if scope is None else scope.devices_touched(hub_store, site)
            site_pull = pull_site(hub_store, client, mapping, site, device_ids, eam.full_pull_every_h, eam.suspect_drop_share)
            pulls.append(site_pull.pull)
            if site_pull.error is not None:
                errors.append(f"{site}: {site_pull.error}")
                context.log.error(
                    f"EAM pull for {site} failed; devices whose data is older than the rules allow are blocked "
                    f"(EAM_UNAVAILABLE/EAM_DATA_STALE): {site_pull.error}"
                )
            else:
                coverage = site_pull.coverage
                if coverage.reasons:
                    suspect_reasons.extend(f"{site}: {reason}" for reason in coverage.reasons)
                    context.log.error(
                        f"EAM reply for {site} held as suspect, nothing deleted, {len(coverage.suspect)} device(s) "
                        f"block as EAM_REPLY_SUSPECT: {'; '.join(coverage.reasons)}"
                    )
                totals["work_orders_deleted"] += site_pull.deleted
                totals["devices_not_found"] += len(coverage.unknown)
                totals["devices_held_suspect"] += len(coverage.suspect)
            totals["devices_requested"] += site_pull.requested
            totals["devices_pulled_whole"] += len(site_pull.whole)
            totals["devices_asked_for_changes"] += len(site_pull.changes_only)
    common = {
        **{k: totals[k] for k in ("devices_requested", "devices_pulled_whole", "devices_asked_for_changes")},
        "eam_calls": client.calls,
        "eam_error": "; ".join(errors) or "none",
        "quarantined_new": sum(p.quarantined for p in pulls),
        "records_of_other_sites_ignored": sum(p.wrong_site for p in pulls),
        "mapping": mapping_label(mapping),
    }
    yield Output(
        None,
        output_name="equipment",
        metadata={
            **common,
            "dagster/row_count": sum(p.equipment for p in pulls),
            "devices_not_found": totals["devices_not_found"],
            "preview": preview([row for p in pulls for row in p.equipment_sample][:10]),
        },
    )
    yield Output(
        None,
        output_name="maintenance_records",
        metadata={
            **common,
            "dagster/row_count": sum(p.records for p in pulls),
            "work_orders_deleted": totals["work_orders_deleted"],
            "devices_held_suspect": totals["devices_held_suspect"],
            "preview": preview([row for p in pulls for row in p.record_sample][:10]),
        },
    )
    yield drift_result("equipment", sum((p.unmapped["equipment"] for p in pulls), Counter()))
    yield drift_result("maintenance_records", sum((p.unmapped["maintenance_record"] for p in pulls), Counter()))
    yield AssetCheckResult(
        asset_key="maintenance_records",
        check_name=SUSPECT_CHECK,
        passed=not suspect_reasons,
        severity=AssetCheckSeverity.ERROR,
        metadata={"suspect_replies": "; ".join(suspect_reasons) or "none", "devices_held_suspect": totals["devices_held_suspect"]},
    )


@asset_check(
    asset="equipment",
    description="Every device linked to a permit in scope exists in the EAM at the permit's site, and none is held in doubt.",
    partitions_def=site_partitions,
)
def devices_found_in_eam(context: AssetCheckExecutionContext, store: HubStoreResource) -> AssetCheckResult:
    hub_store = store.store()
    missing, suspect, checked = [], [], 0
    for site in sites_of(context):
        wanted = devices_in_scope(hub_store, site)
        checked += len(wanted)
        missing += [f"{site}/{d}" for d in sorted(wanted - set(hub_store.load_equipment(site, wanted)))]
        suspect += [f"{site}/{d}" for d in sorted(suspect_devices(hub_store, site, wanted))]
    return AssetCheckResult(
        passed=not missing and not suspect,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "devices_checked": checked,
            "missing": ", ".join(missing) or "none",
            "held_suspect": ", ".join(suspect) or "none",
        },
    )


@asset_check(
    asset="equipment",
    description="The EAM answered for every device in scope within the gate's data-age limit (max_eam_data_age): "
    "past it the gate blocks the device's permits as EAM_DATA_STALE or EAM_UNAVAILABLE.",
    partitions_def=site_partitions,
)
def eam_data_fresh(context: AssetCheckExecutionContext, store: HubStoreResource, rules: RulesResource) -> AssetCheckResult:
    hub_store = store.store()
    limit = rules.gate().max_eam_data_age
    now = datetime.now(timezone.utc)
    stale, answer_times, checked = [], [], 0
    for site in sites_of(context):
        wanted = devices_in_scope(hub_store, site)
        answered = hub_store.lookup_times(EAM_ANSWERED, wanted, site=site)
        checked += len(wanted)
        stale += [f"{site}/{d}" for d in sorted(wanted) if d not in answered or now - answered[d] > limit]
        answer_times += answered.values()
    oldest = min(answer_times, default=None)
    return AssetCheckResult(
        passed=not stale,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "devices_checked": checked,
            "devices_stale": len(stale),
            "stale": ", ".join(stale[:50]) or "none",
            "max_eam_data_age_s": limit.total_seconds(),
            # Plotted per site: how close the oldest answer is to the limit.
            **(
                {"oldest_answer_age_s": round((now - oldest).total_seconds(), 1), "oldest_answer_at": MetadataValue.timestamp(oldest)}
                if oldest
                else {}
            ),
        },
    )
