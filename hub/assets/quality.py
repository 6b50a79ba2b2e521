"""`mes_quality_rates`: each site's monthly defect rates per workshop from the MES, for the
work-at-height analysis in `hub.assets.analytics`; asked for when due (hub.steps.mes)."""

from datetime import timedelta

from dagster import AssetExecutionContext, MaterializeResult, asset

from hub.assets.common import column_schema, drift_result, drift_spec, mapping_label, preview
from hub.assets.sites import site_partitions, sites_of
from hub.assets.systems import MES
from hub.mappings.engine import load_mapping
from hub.resources import HubStoreResource, MesResource
from hub.steps.mes import pull_quality_rates
from hub.store import tables


@asset(
    group_name="mes",
    deps=[MES],
    description="Monthly defect rate per workshop (the permits' area) from the MES quality records, asked for "
    "once older than HUB_MES_REFRESH_EVERY_MIN.",
    metadata={"dagster/column_schema": column_schema(tables.quality_rates)},
    check_specs=[drift_spec("mes_quality_rates", site_partitions)],
    partitions_def=site_partitions,
)
def mes_quality_rates(context: AssetExecutionContext, store: HubStoreResource, mes: MesResource) -> MaterializeResult:
    hub_store = store.store()
    mapping = load_mapping(mes.mapping)
    client = mes.client()
    pulled = pull_quality_rates(hub_store, client, mapping, sites_of(context), timedelta(minutes=mes.refresh_every_min))
    records = pulled.records
    return MaterializeResult(
        metadata={
            "sites_asked": ", ".join(pulled.asked) or "none (not due)",
            "dagster/row_count": len(records),
            "workshops": len({(r.site, r.workshop) for r in records}),
            "quarantined_new": pulled.quarantined,
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
        check_results=[drift_result("mes_quality_rates", pulled.unmapped)],
    )
