"""`process_parameters`: MES parameters for the distinct materials of permits in scope."""


from datetime import datetime, timezone

from dagster import AssetExecutionContext, MaterializeResult, asset

from hub.assets.common import lineage_of, mapping_label, permits_in_scope, preview, quarantine_rejects
from hub.mappings.engine import load_mapping
from hub.resources import HubStoreResource, MesResource


@asset(group_name="mes", deps=["permits"], description="Process parameters (flash point, LEL, ...) from the MES.")
def process_parameters(context: AssetExecutionContext, store: HubStoreResource, mes: MesResource) -> MaterializeResult:
    hub_store = store.store()
    names = {name for permit in permits_in_scope(hub_store) for name in permit.material_names}
    mapping = load_mapping(mes.mapping)
    client = mes.client()
    with client.rest:
        reply = client.parameters_for(names)
    result = mapping.inbound("process_parameter", reply.material_definitions)
    hub_store.upsert_process_parameters(result.records, datetime.now(timezone.utc), lineage_of(mapping))
    quarantined = quarantine_rejects(hub_store, "mes", mapping, result.quarantined)
    if reply.unknown:
        context.log.warning(f"MES does not know {len(reply.unknown)} materials: {', '.join(sorted(reply.unknown))}")
    return MaterializeResult(
        metadata={
            "materials_requested": len(names),
            "materials_unknown": ", ".join(sorted(reply.unknown)) or "none",
            "row_count": len(result.records),
            "quarantined_new": quarantined,
            "mes_calls": client.rest.calls,
            "mapping": mapping_label(mapping),
            "preview": preview(
                [
                    {"material": p.material_name, "parameter": p.parameter_id, "value": p.value, "unit": p.unit}
                    for p in result.records
                ]
            ),
        }
    )
