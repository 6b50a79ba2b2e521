"""`equipment_clearance`: per-device hazard profiles, guarded by a blocking check."""


from collections import defaultdict
from datetime import datetime, timezone

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    MaterializeResult,
    asset,
    asset_check,
)

from hub.assets.common import device_ids_of, permits_in_scope, preview
from hub.assets.sites import site_of, site_partitions
from hub.logic.clearance import build_profiles
from hub.resources import HubStoreResource, RulesResource


def invalid_records_by_device(hub_store) -> dict[str, list[str]]:
    """Quarantined work orders still count against their device: unreadable is not clear."""
    invalid: dict[str, list[str]] = defaultdict(list)
    for row in hub_store.list_quarantine():
        device = (row.get("partial") or {}).get("device_id")
        if row["system"] == "eam" and row["record_kind"] == "maintenance_record" and device:
            invalid[device].append(row["reason"])
    return invalid


@asset(
    group_name="gate",
    deps=["equipment", "maintenance_records"],
    description="Per device: what blocks work on it and when (open work orders, isolation, inspection, data age).",
    partitions_def=site_partitions,
)
def equipment_clearance(
    context: AssetExecutionContext, store: HubStoreResource, rules: RulesResource
) -> MaterializeResult:
    hub_store = store.store()
    site = site_of(context)
    device_ids = sorted(device_ids_of(permits_in_scope(hub_store, site)))
    now = datetime.now(timezone.utc)
    profiles = build_profiles(
        device_ids,
        hub_store.load_equipment(device_ids),
        # Finished work without an isolation holds no hazard: its history is not read back.
        hub_store.load_maintenance_records(device_ids, unfinished_or_isolated=True),
        hub_store.lookup_times("eam", device_ids),
        invalid_records_by_device(hub_store),
        rules.gate(),
        now,
    )
    hub_store.replace_device_clearance(
        [
            {
                "device_id": p.device_id,
                "known": p.known,
                "hazards": [h.model_dump(mode="json") for h in p.hazards],
                "data_as_of": p.data_as_of,
                "computed_at": now,
            }
            for p in profiles.values()
        ],
        devices=device_ids if site else None,
    )
    with_hazards = [p for p in profiles.values() if p.hazards]
    return MaterializeResult(
        metadata={
            "row_count": len(profiles),
            "devices_with_hazards": len(with_hazards),
            "preview": preview(
                [{"device_id": p.device_id, "hazards": ", ".join(sorted({h.code for h in p.hazards}))} for p in with_hazards]
            ),
        }
    )


@asset_check(
    asset="equipment_clearance",
    blocking=True,
    description="Every device of a permit in scope has a clearance profile; the gate must never judge on a partial picture.",
    partitions_def=site_partitions,
)
def clearance_covers_every_device(context: AssetCheckExecutionContext, store: HubStoreResource) -> AssetCheckResult:
    hub_store = store.store()
    wanted = device_ids_of(permits_in_scope(hub_store, site_of(context)))
    missing = sorted(wanted - set(hub_store.load_device_clearance(wanted)))
    return AssetCheckResult(
        passed=not missing,
        metadata={"devices_checked": len(wanted), "missing": ", ".join(missing[:50]) or "none"},
    )
