"""The permit analytics per site: approval times, guardian response, overdue work, similar
work, hazard closure and the gate's own figures, each with a preview table and a chart.

Wiring only: the store is read by `hub.steps.analytics`, the figures come from
`hub.analytics.kpis`, the charts from `hub.analytics.charts`.
"""

from datetime import datetime, timezone
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    ConfigurableResource,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    asset,
)
from pydantic import Field

from hub.analytics import kpis
from hub.analytics.charts import bar_chart, chart_metadata, line_chart
from hub.assets.common import preview
from hub.assets.sites import site_partitions, sites_of
from hub.logic.analytics_rules import AnalyticsRules, load_analytics_rules
from hub.logic.cross_system_rules import CrossSystemRules, load_cross_system_rules
from hub.model import LIVE_PERMIT_STATUSES
from hub.resources import HubStoreResource
from hub.steps.analytics import read_analytics

RESPONSE_CHECK = "guardian_response_rate_met"


class AnalyticsRulesResource(ConfigurableResource):
    """The rule files of the KPIs and of the cross-system analyses (the packaged ones when none is
    given), read at each materialization so an edit shows in the next run."""

    analytics_rules_file: str | None = Field(
        default=None, description="KPI rule file (HUB_ANALYTICS_RULES_FILE); None: the packaged rules."
    )
    cross_system_rules_file: str | None = Field(
        default=None, description="Cross-system rule file (HUB_CROSS_SYSTEM_RULES_FILE); None: the packaged rules."
    )

    @classmethod
    def from_settings(cls, settings) -> "AnalyticsRulesResource":
        def text(path):
            return str(path) if path else None

        return cls(
            analytics_rules_file=text(settings.analytics_rules_file),
            cross_system_rules_file=text(settings.cross_system_rules_file),
        )

    def analytics(self) -> AnalyticsRules:
        return load_analytics_rules(self.analytics_rules_file)

    def cross_system(self) -> CrossSystemRules:
        return load_cross_system_rules(self.cross_system_rules_file)


def _setup(context: AssetExecutionContext, store: HubStoreResource, analytics_rules: AnalyticsRulesResource):
    return read_analytics(store.store(), sites_of(context)), analytics_rules.analytics(), datetime.now(timezone.utc)


def _result(context: AssetExecutionContext, rows: list[dict], png: bytes, rules: AnalyticsRules, check_results=(), **extra):
    """The metadata every analytics asset gives: row count, preview, chart (PNG in the instance's storage)."""
    name = context.asset_key.to_user_string()
    site = "-".join(sites_of(context))
    path = Path(context.instance.storage_directory()) / "analytics" / f"{name}-{site}.png"
    metadata = {
        "dagster/row_count": len(rows),
        "preview": preview(rows, limit=20),
        "rule_version": rules.version,
        **chart_metadata(png, path),
        **extra,
    }
    return MaterializeResult(metadata=metadata, check_results=list(check_results))


def analytics_asset(columns: str, **kwargs):
    """An analytics asset of the site partitions whose preview has these columns ("name:type ...")."""
    schema = TableSchema(columns=[TableColumn(*column.split(":")) for column in columns.split()])
    return asset(group_name="analytics", partitions_def=site_partitions, metadata={"dagster/column_schema": schema}, **kwargs)


STATS = "count:int median:float p90:float max:float"


@analytics_asset(
    "site:string area:string permit_type:string risk_level:string " + STATS, deps=["permits"], description="Submission to approval (median, p90, max minutes) per site, area, permit type and risk level.")
def permit_approval_times(context: AssetExecutionContext, store: HubStoreResource, analytics_rules: AnalyticsRulesResource) -> MaterializeResult:
    data, rules, _ = _setup(context, store, analytics_rules)
    frame = kpis.permits_frame(data.permits, rules)
    trend = kpis.approval_trend(frame)
    days, series = kpis.per_site_series(trend, "median")
    png = line_chart(days, series, title="Median approval time by day", ylabel="minutes")
    return _result(context, kpis.table_rows(kpis.approval_times(frame)), png, rules,
                   trend=MetadataValue.json(kpis.table_rows(trend)))


@analytics_asset(
    "site:string day:date permits:int effective:int rate:float below_threshold:bool",
    deps=["permits"],
    description="Share of permits whose guardian arrived within the response window of submission, per site and day.",
    check_specs=[
        AssetCheckSpec(
            RESPONSE_CHECK,
            asset="guardian_response_rates",
            description="The latest day's effective response rate is at the threshold or above; below it, the root causes.",
            partitions_def=site_partitions,
        )
    ],
)
def guardian_response_rates(context: AssetExecutionContext, store: HubStoreResource, analytics_rules: AnalyticsRulesResource) -> MaterializeResult:
    data, rules, now = _setup(context, store, analytics_rules)
    frame = kpis.permits_frame(data.permits, rules)
    rates = kpis.response_rates(frame, rules, now)
    days, series = kpis.per_site_series(rates, "rate")
    png = line_chart(days, series, title="Effective guardian response rate", ylabel="share", threshold=rules.response_rate_threshold)
    return _result(context, kpis.table_rows(rates), png, rules, check_results=[response_check(rates, frame, rules, now)])


def response_check(rates, frame, rules: AnalyticsRules, now: datetime) -> AssetCheckResult:
    """Judges each site's latest day; a day below the threshold fails with its root causes."""
    latest = rates.sort_values("day").groupby("site").tail(1)
    below = latest[latest["below_threshold"]]
    causes = [c.as_dict() for c in kpis.root_causes(frame, rules, now) if (c.site, c.day) in set(zip(below["site"], below["day"]))]
    return AssetCheckResult(
        check_name=RESPONSE_CHECK,
        passed=below.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "threshold": rules.response_rate_threshold,
            "latest_days": MetadataValue.json(kpis.table_rows(latest)),
            "root_causes": MetadataValue.json(causes),
        },
    )


@analytics_asset(
    "site:string rank:int permit_id:string permit_type:string area:string planned_end:datetime minutes_to_end:float status:string", deps=["permits"], description="The permits under way closest to or past their planned end (TOP N per site).")
def overdue_permits(context: AssetExecutionContext, store: HubStoreResource, analytics_rules: AnalyticsRulesResource) -> MaterializeResult:
    data, rules, now = _setup(context, store, analytics_rules)
    top = kpis.overdue_top(kpis.permits_frame(data.permits, rules), rules, now)
    png = bar_chart(list(top["permit_id"]), list(top["minutes_to_end"]), title="Minutes to planned end (negative: overdue)", ylabel="minutes")
    return _result(context, kpis.table_rows(top), png, rules)


@analytics_asset(
    "permit_id:string area:string permit_type:string nearby:string history:int incidents:string", deps=["permits"], description="Live permits planned close to others of their type in their area, with the area's history of the type.")
def similar_work_alerts(context: AssetExecutionContext, store: HubStoreResource, analytics_rules: AnalyticsRulesResource) -> MaterializeResult:
    data, rules, now = _setup(context, store, analytics_rules)
    found = [
        s for p in data.permits if p.status in LIVE_PERMIT_STATUSES
        if (s := kpis.similar_work(data.permits, p, now, rules)) is not None
    ]
    rows = [
        {"permit_id": s.permit_id, "area": s.area, "permit_type": s.permit_type, "nearby": ", ".join(s.nearby),
         "history": len(s.history), "incidents": ", ".join(s.incidents) or "none"}
        for s in found
    ]
    png = bar_chart([s.permit_id for s in found], [len(s.history) for s in found], title="Permits of the type in the area, 6 months", ylabel="permits")
    return _result(context, rows, png, rules, similar_work=MetadataValue.json([s.as_dict() for s in found]))


@analytics_asset(
    "site:string area:string count:int open:int median:float p90:float max:float", deps=["maintenance_records", "equipment"], description="Corrective and emergency work orders from report to completion (hours) per site and area.")
def hazard_closure_cycle(context: AssetExecutionContext, store: HubStoreResource, analytics_rules: AnalyticsRulesResource) -> MaterializeResult:
    data, rules, _ = _setup(context, store, analytics_rules)
    table = kpis.hazard_closure(data.records, data.equipment)
    png = bar_chart([f"{s} {a}" for s, a in zip(table["site"], table["area"])], list(table["median"].fillna(0)),
                    title="Median hazard closure", ylabel="hours")
    return _result(context, kpis.table_rows(table), png, rules)


@analytics_asset(
    "site:string reason:string permits:int", deps=["permit_gate_decisions"], description="The gate's figures: blocks by reason, EAM change to hold, holds lifted, approvals before their block landed.")
def gate_performance(context: AssetExecutionContext, store: HubStoreResource, analytics_rules: AnalyticsRulesResource) -> MaterializeResult:
    data, rules, _ = _setup(context, store, analytics_rules)
    figures = kpis.gate_kpis(data.permits, data.trail, data.holds, data.records_by_id)
    blocks = figures.blocks_by_reason
    png = bar_chart(list(blocks["reason"]), list(blocks["permits"]), title="Blocked permits by reason", ylabel="permits")
    return _result(
        context, kpis.table_rows(blocks), png, rules,
        **figures.summary(),
        block_lags=MetadataValue.json(kpis.table_rows(figures.block_lags)),
        too_late_permits=", ".join(figures.too_late["permit_id"]) or "none",
    )


ANALYTICS_ASSETS = [permit_approval_times, guardian_response_rates, overdue_permits, similar_work_alerts, hazard_closure_cycle, gate_performance]
