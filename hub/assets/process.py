"""`process_parameters`: MES parameters for the distinct materials of permits in scope."""


from collections import Counter
from datetime import datetime, timezone

from dagster import AssetExecutionContext, MaterializeResult, asset

from hub.assets.common import (
    column_schema,
    drift_result,
    drift_spec,
    lineage_of,
    mapping_label,
    permits_in_scope,
    preview,
    quarantine_rejects,
)
from hub.assets.sites import site_of, site_partitions
from hub.assets.systems import MES
from hub.mappings.engine import load_mapping
from hub.resources import HubStoreResource, MesResource
from hub.steps.records import map_inbound
from hub.store import tables


@asset(
    group_name="mes",
    deps=["permits", MES],
    description="Process parameters (flash point, LEL, ...) from the MES.",
    metadata={"dagster/column_schema": column_schema(tables.process_parameters)},
    check_specs=[drift_spec("process_parameters", site_partitions)],
    partitions_def=site_partitions,
)
def process_parameters(context: AssetExecutionContext, store: HubStoreResource, mes: MesResource) -> MaterializeResult:
    hub_store = store.store()
    names = {name for permit in permits_in_scope(hub_store, site_of(context)) for name in permit.material_names}
    mapping = load_mapping(mes.mapping)
    client = mes.client()
    with client:
        vendor_records = client.fetch("parameters", ids=names).get("process_parameter", [])
        result = map_inbound(mapping, client, "process_parameter", vendor_records)
    hub_store.upsert_process_parameters(result.records, datetime.now(timezone.utc), lineage_of(mapping))
    quarantined = quarantine_rejects(hub_store, "mes", mapping, result.quarantined)
    # A name the MES does not know simply has no parameters, in every flavor.
    answered = {p.material_name for p in result.records} | {
        r.partial["material_name"] for r in result.quarantined if "material_name" in r.partial
    }
    unknown = sorted(names - answered)
    if unknown:
        context.log.warning(f"MES does not know {len(unknown)} materials: {', '.join(unknown)}")
    return MaterializeResult(
        metadata={
            "materials_requested": len(names),
            "materials_unknown": ", ".join(unknown) or "none",
            "dagster/row_count": len(result.records),
            "quarantined_new": quarantined,
            "mes_calls": client.calls,
            "mapping": mapping_label(mapping),
            "preview": preview(
                [
                    {"material": p.material_name, "parameter": p.parameter_id, "value": p.value, "unit": p.unit}
                    for p in result.records
                ]
            ),
        },
        check_results=[
            drift_result("process_parameters", Counter(mapping.unmapped_fields("process_parameter", vendor_records)))
        ],
    )
