"""`permits`: pull a site's changed permits from the PTW by cursor, map, store, quarantine the bad."""


from dagster import AssetExecutionContext, MaterializeResult, asset

from hub.assets.common import column_schema, drift_result, drift_spec, mapping_label, preview
from hub.assets.sites import site_of, site_partitions
from hub.assets.systems import PTW
from hub.mappings.engine import load_mapping
from hub.resources import HubStoreResource, PtwResource
from hub.steps.ptw import CURSOR, ingest_permits
from hub.store import tables


@asset(
    group_name="ptw",
    deps=[PTW],
    description="Permits from the PTW, pulled incrementally by an updated-since cursor.",
    metadata={"dagster/column_schema": column_schema(tables.permits)},
    check_specs=[drift_spec("permits", site_partitions)],
    partitions_def=site_partitions,
)
def permits(context: AssetExecutionContext, store: HubStoreResource, ptw: PtwResource) -> MaterializeResult:
    hub_store = store.store()
    mapping = load_mapping(ptw.mapping)
    site = site_of(context)
    client = ptw.client()
    pulled = ingest_permits(hub_store, client, mapping, f"{CURSOR}.{site}" if site else CURSOR, site=site)
    context.log.info(f"PTW: {pulled.fetched} fetched, {pulled.accepted} accepted, {pulled.quarantined} newly quarantined")
    return MaterializeResult(
        metadata={
            "fetched": pulled.fetched,
            "dagster/row_count": pulled.accepted,
            "quarantined_new": pulled.quarantined,
            "cursor": pulled.cursor,
            "ptw_calls": client.calls,
            "mapping": mapping_label(mapping),
            "preview": preview(pulled.samples),
        },
        check_results=[drift_result("permits", pulled.unmapped)],
    )
