"""`mes_quality_rates`: each site's monthly defect rates per workshop from the MES, for the
work-at-height analysis in `hub.assets.analytics`."""

from collections import Counter
from datetime import datetime, timezone

from dagster import AssetExecutionContext, MaterializeResult, asset

from hub.assets.common import column_schema, drift_result, drift_spec, lineage_of, mapping_label, preview, quarantine_rejects
from hub.assets.sites import site_partitions, sites_of
from hub.assets.systems import MES
from hub.mappings.engine import load_mapping
from hub.resources import HubStoreResource, MesResource
from hub.steps.records import map_inbound
from hub.store import tables


@asset(
    group_name="mes",
    deps=[MES],
    description="Monthly defect rate per workshop (the permits' area) from the MES quality records.",
    metadata={"dagster/column_schema": column_schema(tables.quality_rates)},
    check_specs=[drift_spec("mes_quality_rates", site_partitions)],
    partitions_def=site_partitions,
)
def mes_quality_rates(context: AssetExecutionContext, store: HubStoreResource, mes: MesResource) -> MaterializeResult:
    hub_store = store.store()
    mapping = load_mapping(mes.mapping)
    client = mes.client()
    vendor_records: list = []
    records, rejected = [], []
    with client:
        for site in sites_of(context):
            fetched = client.fetch("quality", site=site).get("quality_rate", [])
            result = map_inbound(mapping, client, "quality_rate", fetched)
            vendor_records += fetched
            records += result.records
            rejected += result.quarantined
    hub_store.upsert_quality_rates(records, datetime.now(timezone.utc), lineage_of(mapping))
    quarantined = quarantine_rejects(hub_store, "mes", mapping, rejected)
    return MaterializeResult(
        metadata={
            "dagster/row_count": len(records),
            "workshops": len({(r.site, r.workshop) for r in records}),
            "quarantined_new": quarantined,
            "mes_calls": client.calls,
            "mapping": mapping_label(mapping),
            "preview": preview(
                [
                    {"site": r.site, "workshop": r.workshop, "month": r.month.isoformat(),
                     "defect_rate": float(r.defect_rate), "units_inspected": r.units_inspected}
                    for r in records
                ]
            ),
        },
        check_results=[
            drift_result("mes_quality_rates", Counter(mapping.unmapped_fields("quality_rate", vendor_records)))
        ],
    )
