"""`equipment` and `maintenance_records`: one batched EAM pull for the devices in scope.

A device is pulled whole when it is new to the hub or its last whole pull is older than
`HUB_EAM_FULL_PULL_EVERY_H`; otherwise the EAM is asked only for its work orders changed
since its last answer. Each batch is mapped and stored as it arrives, while the next are
on their way.

A failed pull does not fail the assets: the devices keep their old fetch time, so
the gate sees them as stale or unavailable and blocks. Failing here would instead
stop the gate from running at all.
"""


from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

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
    whole, changes_only, since = _pull_plan(hub_store, device_ids, fetched_at, eam.full_pull_every_h)
    pulled = EamPull()
    error = ""
    try:
        with client:
            for ids, values in ((whole, {}), (changes_only, {"changed_since": since})):
                for page in client.pages("maintenance", ids=ids, **values) if ids else ():
                    pulled.take(hub_store, mapping, page, fetched_at)
    except (TransientError, VendorRejected, SoapFault) as exc:
        error = str(exc)
        context.log.error(f"EAM pull failed; affected permits will be blocked as EAM_UNAVAILABLE/STALE: {exc}")
    complete = not error
    if complete:
        # A full answer is the devices' whole work-order list: what it no longer holds is gone.
        hub_store.drop_maintenance_records_not_refetched(whole, fetched_at)
        failpoint("eam.before_lookups")
        hub_store.record_lookups("eam", device_ids, fetched_at)
        hub_store.record_lookups(WHOLE_PULLS, whole, fetched_at)
    common = {
        "devices_requested": len(device_ids),
        "devices_pulled_whole": len(whole),
        "devices_asked_for_changes": len(changes_only),
        "eam_calls": client.calls,
        "eam_error": error or "none",
        "quarantined_new": pulled.quarantined,
        "mapping": mapping_label(mapping),
    }
    yield Output(
        None,
        output_name="equipment",
        metadata={
            **common,
            "row_count": pulled.equipment,
            "devices_not_found": len(device_ids - pulled.found) if complete else len(device_ids),
            "preview": preview(pulled.equipment_sample),
        },
    )
    yield Output(
        None,
        output_name="maintenance_records",
        metadata={**common, "row_count": pulled.records, "preview": preview(pulled.record_sample)},
    )
    yield drift_result("equipment", pulled.unmapped["equipment"])
    yield drift_result("maintenance_records", pulled.unmapped["maintenance_record"])


#: Leeway for clocks: the EAM stamps changes by its clock, the hub asks by its own.
CLOCK_LEEWAY = timedelta(minutes=10)
#: Lookup-table name for when each device's whole work-order list was last pulled.
WHOLE_PULLS = "eam_whole"


def _pull_plan(
    hub_store, device_ids: set[str], now: datetime, full_pull_every_h: float
) -> tuple[list[str], list[str], str]:
    """Devices to pull whole (new, or not pulled whole lately), devices to ask only for changes,
    and since when: their earliest last answer less the clock leeway, so no change is missed."""
    pulled_whole = hub_store.lookup_times(WHOLE_PULLS, device_ids)
    recent = now - timedelta(hours=full_pull_every_h)
    changes_only = sorted(device for device, at in pulled_whole.items() if at > recent)
    answered = hub_store.lookup_times("eam", changes_only)
    since = min(answered.values(), default=now) - CLOCK_LEEWAY
    return sorted(device_ids - set(changes_only)), changes_only, since.isoformat()


@dataclass
class EamPull:
    """What one pull took in, batch by batch: each reply is mapped and stored as it arrives,
    while the next batches are still on their way."""

    equipment: int = 0
    records: int = 0
    quarantined: int = 0
    found: set[str] = field(default_factory=set)
    unmapped: dict[str, Counter] = field(default_factory=lambda: {"equipment": Counter(), "maintenance_record": Counter()})
    equipment_sample: list[dict] = field(default_factory=list)
    record_sample: list[dict] = field(default_factory=list)

    def take(self, hub_store, mapping, page: dict, fetched_at: datetime) -> None:
        vendor_equipment = page.get("equipment", [])
        vendor_records = page.get("maintenance_record", [])
        equipment = mapping.inbound("equipment", vendor_equipment)
        records = mapping.inbound("maintenance_record", vendor_records)
        hub_store.upsert_equipment(equipment.records, fetched_at, lineage_of(mapping))
        hub_store.upsert_maintenance_records(records.records, fetched_at, lineage_of(mapping))
        self.quarantined += quarantine_rejects(hub_store, "eam", mapping, equipment.quarantined + records.quarantined)
        self.unmapped["equipment"].update(mapping.unmapped_fields("equipment", vendor_equipment))
        self.unmapped["maintenance_record"].update(mapping.unmapped_fields("maintenance_record", vendor_records))
        self.equipment += len(equipment.records)
        self.records += len(records.records)
        self.found.update(e.device_id for e in equipment.records)
        self.equipment_sample.extend(
            {"device_id": e.device_id, "name": e.name, "site": e.site} for e in equipment.records[: 10 - len(self.equipment_sample)]
        )
        self.record_sample.extend(
            {"record_id": r.record_id, "device_id": r.device_id, "status": r.status}
            for r in records.records[: 10 - len(self.record_sample)]
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
