"""MES quality data, and the two cross-system analyses that need it or the EAM's failure history.

`mes_quality_rates` pulls each site's monthly defect rates per workshop from the MES.
`work_at_height_quality` sets them beside the site's work-at-height permits;
`lifting_failure_intervals` times the failures of the devices lifting permits name. Wiring only:
the figures come from `hub.analytics.cross_system`, the charts from `hub.analytics.charts`.
"""

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from dagster import AssetExecutionContext, MaterializeResult, asset

from hub.analytics import cross_system
from hub.analytics.charts import chart_metadata
from hub.assets.analytics import AnalyticsRulesResource, analytics_asset
from hub.assets.common import column_schema, drift_result, drift_spec, lineage_of, mapping_label, preview, quarantine_rejects
from hub.assets.sites import site_partitions, sites_of
from hub.assets.systems import MES
from hub.logic.cross_system_rules import CrossSystemRules
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


def _analysis_result(context: AssetExecutionContext, found: cross_system.Findings, rules: CrossSystemRules) -> MaterializeResult:
    """What both analyses show: the table, what they flag, the rule version and the chart."""
    name = context.asset_key.to_user_string()
    path = Path(context.instance.storage_directory()) / "analytics" / f"{name}-{'-'.join(sites_of(context))}.png"
    rows = cross_system.records(found.table)
    return MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "preview": preview(rows, limit=20),
            "flagged": ", ".join(found.flagged) or "none",
            "flagged_count": len(found.flagged),
            "rule_version": rules.version,
            **chart_metadata(found.chart, path),
        }
    )


@analytics_asset(
    "site:string workshop:string months:int height_permits:int correlation:float permit_slope:float "
    "rate_slope:float rising_together:bool",
    deps=["permits", "mes_quality_rates"],
    description="Work-at-height permits per workshop and month against the MES defect rate: correlation, "
    "months compared, and workshops where both rise together.",
)
def work_at_height_quality(
    context: AssetExecutionContext, store: HubStoreResource, analytics_rules: AnalyticsRulesResource
) -> MaterializeResult:
    hub_store, rules = store.store(), analytics_rules.cross_system()
    sites = sites_of(context)
    permits = [p for site in sites for p in hub_store.load_permits(site=site)]
    rates = [r for site in sites for r in hub_store.quality_rates(site)]
    result = cross_system.height_against_quality(permits, rates, rules)
    return _analysis_result(context, cross_system.height_findings(result), rules)


@analytics_asset(
    "site:string device_id:string failures:int earlier_mean_days:float recent_mean_days:float shortening:float "
    "failing_faster:bool",
    deps=["permits", "maintenance_records"],
    description="Days between successive failure work orders (corrective, emergency) of the devices lifting "
    "permits name, and devices whose recent failures come much sooner than before.",
)
def lifting_failure_intervals(
    context: AssetExecutionContext, store: HubStoreResource, analytics_rules: AnalyticsRulesResource
) -> MaterializeResult:
    hub_store, rules = store.store(), analytics_rules.cross_system()
    sites = sites_of(context)
    permits = [p for site in sites for p in hub_store.load_permits(site=site)]
    lifted = {(p.site, d) for p in permits if p.permit_type == cross_system.LIFTING for d in p.device_ids}
    records = [
        r for site in sites for r in hub_store.load_maintenance_records(site, sorted(d for s, d in lifted if s == site))
    ]
    result = cross_system.lifting_failure_intervals(permits, records, rules)
    return _analysis_result(context, cross_system.failure_findings(result), rules)


CROSS_SYSTEM_ASSETS = [mes_quality_rates, work_at_height_quality, lifting_failure_intervals]
