"""`permits`: pull changed permits from the PTW by cursor, map, store, quarantine the bad."""


from collections import Counter
from datetime import datetime, timezone

from dagster import AssetExecutionContext, MaterializeResult, asset

from hub.assets.common import drift_result, drift_spec, lineage_of, mapping_label, preview, quarantine_rejects
from hub.assets.sites import site_of, site_partitions
from hub.failpoints import failpoint
from hub.mappings.engine import load_mapping
from hub.resources import HubStoreResource, PtwResource

CURSOR = "ptw.permits.updated_since"


@asset(
    group_name="ptw",
    description="Permits from the PTW, pulled incrementally by an updated-since cursor.",
    check_specs=[drift_spec("permits")],
    partitions_def=site_partitions,
)
def permits(context: AssetExecutionContext, store: HubStoreResource, ptw: PtwResource) -> MaterializeResult:
    hub_store = store.store()
    mapping = load_mapping(ptw.mapping)
    site = site_of(context)
    cursor_name = f"{CURSOR}.{site}" if site else CURSOR
    cursor = hub_store.get_cursor(cursor_name)
    client = ptw.client()
    fetched = accepted = quarantined = 0
    newest = None
    samples: list[dict] = []
    unmapped: Counter[str] = Counter()
    with client:
        for page in client.pages("permits_changed", since=cursor, site=site):
            vendor_permits = page.get("permit", [])
            fetched += len(vendor_permits)
            result = mapping.inbound("permit", vendor_permits)
            unmapped.update(mapping.unmapped_fields("permit", vendor_permits))
            hub_store.upsert_permits(result.records, datetime.now(timezone.utc), lineage_of(mapping))
            failpoint("permits.before_cursor")
            hub_store.resolve_quarantine_for("ptw", "permit", [p.permit_id for p in result.records])
            quarantined += quarantine_rejects(hub_store, "ptw", mapping, result.quarantined)
            accepted += len(result.records)
            for permit in result.records:
                newest = permit.updated_at if newest is None or permit.updated_at > newest else newest
            samples.extend(
                {"permit_id": p.permit_id, "type": p.permit_type, "status": p.status, "devices": ", ".join(p.device_ids)}
                for p in result.records[: 10 - len(samples)]
            )
    if newest is not None:
        # Inclusive cursor: the newest record is fetched again next time, and upserts make that harmless.
        hub_store.set_cursor(cursor_name, newest.isoformat())
    context.log.info(f"PTW: {fetched} fetched, {accepted} accepted, {quarantined} newly quarantined")
    return MaterializeResult(
        metadata={
            "fetched": fetched,
            "row_count": accepted,
            "quarantined_new": quarantined,
            "cursor": hub_store.get_cursor(cursor_name) or "",
            "ptw_calls": client.calls,
            "mapping": mapping_label(mapping),
            "preview": preview(samples),
        },
        check_results=[drift_result("permits", unmapped)],
    )
