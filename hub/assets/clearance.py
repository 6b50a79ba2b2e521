"""`equipment_clearance`: per-device hazard profiles of each site, from the hub's copy of the EAM."""


from datetime import datetime, timezone

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    MaterializeResult,
    asset,
    asset_check,
)

from hub.assets.common import ChangeScopeConfig, column_schema, devices_in_scope, preview
from hub.assets.sites import site_partitions, sites_of
from hub.resources import HubStoreResource, RulesResource
from hub.steps.gate import refresh_clearance
from hub.store import tables


@asset(
    group_name="gate",
    deps=["equipment", "maintenance_records"],
    description="Per (site, device): what blocks work on it and when (open work orders, isolation, "
    "equipment status, inspection, data age, records in doubt).",
    metadata={"dagster/column_schema": column_schema(tables.device_clearance)},
    partitions_def=site_partitions,
)
def equipment_clearance(
    context: AssetExecutionContext, config: ChangeScopeConfig, store: HubStoreResource, rules: RulesResource
) -> MaterializeResult:
    hub_store = store.store()
    gate_rules = rules.gate()
    now = datetime.now(timezone.utc)
    with_hazards, total = [], 0
    for site in sites_of(context):
        scope = config.scope()
        device_ids = sorted(devices_in_scope(hub_store, site) if scope is None else scope.devices_touched(hub_store, site))
        profiles = refresh_clearance(hub_store, site, device_ids, gate_rules, now, scoped=scope is not None)
        total += len(profiles)
        with_hazards += [
            {"site": site, "device_id": p.device_id, "hazards": ", ".join(sorted({h.code for h in p.hazards}))}
            for p in profiles.values()
            if p.hazards
        ]
    return MaterializeResult(
        metadata={"dagster/row_count": total, "devices_with_hazards": len(with_hazards), "preview": preview(with_hazards)}
    )


@asset_check(
    asset="equipment_clearance",
    description="Every device of a permit in scope has a clearance profile. Not blocking: the gate "
    "blocks a device without one by itself, and a blocking check would stop the gate from running.",
    partitions_def=site_partitions,
)
def clearance_covers_every_device(context: AssetCheckExecutionContext, store: HubStoreResource) -> AssetCheckResult:
    hub_store = store.store()
    missing, checked = [], 0
    for site in sites_of(context):
        wanted = devices_in_scope(hub_store, site)
        checked += len(wanted)
        missing += [f"{site}/{d}" for d in sorted(wanted - set(hub_store.load_device_clearance(site, wanted)))]
    return AssetCheckResult(
        passed=not missing,
        severity=AssetCheckSeverity.ERROR,
        metadata={"devices_checked": checked, "missing": ", ".join(missing[:50]) or "none"},
    )
