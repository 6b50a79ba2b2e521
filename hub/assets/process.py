"""`process_parameters`: MES parameters for the materials of permits in scope, when due (hub.steps.mes)."""


from datetime import timedelta

from dagster import AssetExecutionContext, MaterializeResult, asset

from hub.assets.common import column_schema, drift_result, drift_spec, mapping_label, permits_in_scope, preview
from hub.assets.sites import site_of, site_partitions
from hub.assets.systems import MES
from hub.mappings.engine import load_mapping
from hub.resources import HubStoreResource, MesResource
from hub.steps.mes import pull_parameters
from hub.store import tables


@asset(
    group_name="mes",
    deps=["permits", MES],
    description="Process parameters (flash point, LEL, ...) from the MES, for materials not asked for within "
    "HUB_MES_REFRESH_EVERY_MIN.",
    metadata={"dagster/column_schema": column_schema(tables.process_parameters)},
    check_specs=[drift_spec("process_parameters", site_partitions)],
    partitions_def=site_partitions,
)
def process_parameters(context: AssetExecutionContext, store: HubStoreResource, mes: MesResource) -> MaterializeResult:
    hub_store = store.store()
    names = {name for permit in permits_in_scope(hub_store, site_of(context)) for name in permit.material_names}
    mapping = load_mapping(mes.mapping)
    client = mes.client()
    pulled = pull_parameters(hub_store, client, mapping, names, timedelta(minutes=mes.refresh_every_min))
    if pulled.unknown:
        context.log.warning(f"MES does not know {len(pulled.unknown)} materials: {', '.join(pulled.unknown)}")
    return MaterializeResult(
        metadata={
            "materials_in_scope": pulled.in_scope,
            "materials_requested": len(pulled.asked),
            "materials_unknown": ", ".join(pulled.unknown) or "none",
            "dagster/row_count": len(pulled.records),
            "quarantined_new": pulled.quarantined,
            "mes_calls": client.calls,
            "mapping": mapping_label(mapping),
            "preview": preview(
                [
                    {"material": p.material_name, "parameter": p.parameter_id, "value": p.value, "unit": p.unit}
                    for p in pulled.records
                ]
            ),
        },
        check_results=[drift_result("process_parameters", pulled.unmapped)],
    )
