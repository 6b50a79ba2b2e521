"""`equipment` and `maintenance_records`: one batched EAM pull for the devices in scope.

A failed pull does not fail the assets: the devices keep their old fetch time, so
the gate sees them as stale or unavailable and blocks. Failing here would instead
stop the gate from running at all.
"""


from collections import Counter
from datetime import datetime, timezone

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetOut,
    Output,
    asset_check,
    multi_asset,
)

from hub.assets.common import (
    device_ids_of,
    drift_result,
    drift_spec,
    lineage_of,
    mapping_label,
    permits_in_scope,
    preview,
    quarantine_rejects,
)
from hub.assets.sites import site_of, site_partitions
from hub.connectors.eam import SoapFault
from hub.connectors.retry import TransientError, VendorRejected
from hub.failpoints import failpoint
from hub.mappings.engine import load_mapping
from hub.resources import EamResource, HubStoreResource


@multi_asset(
    group_name="eam",
    deps=["permits"],
    outs={
        "equipment": AssetOut(description="Equipment of the devices linked to permits in scope, from the EAM."),
        "maintenance_records": AssetOut(description="Work orders of those devices, from the EAM."),
    },
    check_specs=[drift_spec("equipment"), drift_spec("maintenance_records")],
    partitions_def=site_partitions,
)
def eam_pull(context: AssetExecutionContext, store: HubStoreResource, eam: EamResource):
    hub_store = store.store()
    device_ids = device_ids_of(permits_in_scope(hub_store, site_of(context)))
    mapping = load_mapping(eam.mapping)
    client = eam.client()
    fetched_at = datetime.now(timezone.utc)
    error = ""
    try:
        with client:
            reply = client.fetch("maintenance", ids=device_ids)
    except (TransientError, VendorRejected, SoapFault) as exc:
        error = str(exc)
        context.log.error(f"EAM pull failed; affected permits will be blocked as EAM_UNAVAILABLE/STALE: {exc}")
        reply = None
    pulled = reply is not None
    vendor_equipment = reply.get("equipment", []) if pulled else []
    vendor_records = reply.get("maintenance_record", []) if pulled else []
    equipment = mapping.inbound("equipment", vendor_equipment)
    records = mapping.inbound("maintenance_record", vendor_records)
    hub_store.upsert_equipment(equipment.records, fetched_at, lineage_of(mapping))
    # A full answer is the devices' whole work-order list: what it no longer holds is gone.
    hub_store.upsert_maintenance_records(
        records.records, fetched_at, complete_for=device_ids if pulled else (), lineage=lineage_of(mapping)
    )
    failpoint("eam.before_lookups")
    if pulled:
        hub_store.record_lookups("eam", device_ids, fetched_at)
    quarantined = quarantine_rejects(hub_store, "eam", mapping, equipment.quarantined + records.quarantined)
    found = {e.device_id for e in equipment.records}
    common = {
        "devices_requested": len(device_ids),
        "eam_calls": client.calls,
        "eam_error": error or "none",
        "quarantined_new": quarantined,
        "mapping": mapping_label(mapping),
    }
    yield Output(
        None,
        output_name="equipment",
        metadata={
            **common,
            "row_count": len(equipment.records),
            "devices_not_found": len(device_ids - found) if pulled else len(device_ids),
            "preview": preview([{"device_id": e.device_id, "name": e.name, "site": e.site} for e in equipment.records]),
        },
    )
    yield Output(
        None,
        output_name="maintenance_records",
        metadata={
            **common,
            "row_count": len(records.records),
            "preview": preview(
                [{"record_id": r.record_id, "device_id": r.device_id, "status": r.status} for r in records.records]
            ),
        },
    )
    yield drift_result("equipment", Counter(mapping.unmapped_fields("equipment", vendor_equipment)))
    yield drift_result(
        "maintenance_records", Counter(mapping.unmapped_fields("maintenance_record", vendor_records))
    )


@asset_check(
    asset="equipment",
    description="Every device linked to a permit in scope exists in the EAM.",
    partitions_def=site_partitions,
)
def devices_found_in_eam(context: AssetCheckExecutionContext, store: HubStoreResource) -> AssetCheckResult:
    hub_store = store.store()
    wanted = device_ids_of(permits_in_scope(hub_store, site_of(context)))
    missing = sorted(wanted - set(hub_store.load_equipment(wanted)))
    return AssetCheckResult(
        passed=not missing,
        severity=AssetCheckSeverity.WARN,
        metadata={"devices_checked": len(wanted), "missing": ", ".join(missing) or "none"},
    )
