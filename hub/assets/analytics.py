"""The permit analytics per site: approval times, guardian response, overdue work, similar
work, hazard closure, the gate's own figures and the two cross-system analyses, each an asset
with a preview table and a chart.

All of them are one step per site (`permit_analytics`, a subsettable multi-asset): they read
the same permits, and a step per asset would read them and pay Dagster's step overhead eight
times. Wiring only: the store is read by `hub.steps.analytics`, the figures come from
`hub.analytics.kpis` and `hub.analytics.cross_system`, the charts from `hub.analytics.charts`.
"""

import base64
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSpec,
    ConfigurableResource,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    multi_asset,
)
from pydantic import Field

from hub.analytics import cross_system, kpis
from hub.analytics.charts import Drawing, aside, bar_chart, line_chart
from hub.assets.common import preview
from hub.assets.sites import site_partitions, sites_of
from hub.logic.analytics_rules import AnalyticsRules, load_analytics_rules
from hub.logic.cross_system_rules import CrossSystemRules, load_cross_system_rules
from hub.resources import HubStoreResource
from hub.steps.analytics import AnalyticsData, read_analytics

RESPONSE_CHECK = "guardian_response_rate_met"
#: Alerts that go into the asset's metadata, and the newest history entries of each shown there
#: (six months of one kind of work in one area can be hundreds of permits).
SIMILAR_SHOWN = 20
SIMILAR_HISTORY_SHOWN = 10


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


@dataclass
class _Pending:
    """An asset's figures whose chart may still be drawing beside the step (`charts.aside`)."""

    name: str
    rows: list[dict]
    chart: Drawing | bytes
    version: str
    check_results: list[AssetCheckResult]
    extra: dict

    def result(self, context: AssetExecutionContext) -> MaterializeResult:
        """The metadata every analytics asset gives: row count, preview, chart (PNG in the instance's storage)."""
        site = "-".join(sites_of(context))
        path = Path(context.instance.storage_directory()) / "analytics" / f"{self.name}-{site}.png"
        png = self.chart if isinstance(self.chart, bytes) else self.chart.png()
        metadata = {
            "dagster/row_count": len(self.rows),
            "preview": preview(self.rows, limit=20),
            "rule_version": self.version,
            **chart_metadata(png, path),
            **self.extra,
        }
        return MaterializeResult(asset_key=self.name, metadata=metadata, check_results=self.check_results)


def chart_metadata(png: bytes, path: Path) -> dict[str, MetadataValue]:
    """Writes the PNG and returns the metadata that shows it in the Dagster UI (embedded) and names its file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    embedded = base64.b64encode(png).decode("ascii")
    return {
        "chart": MetadataValue.md(f"![{path.stem}](data:image/png;base64,{embedded})"),
        "chart_file": MetadataValue.path(str(path)),
    }


def _result(name: str, rows: list[dict], chart: Drawing | bytes, version: str, check_results=(), **extra) -> _Pending:
    return _Pending(name, rows, chart, version, list(check_results), extra)


class Inputs:
    """What one step's assets compute from: the store's records, the rule files and one `now`.
    Each is read on first use, so a bad cross-system rule file fails only the assets that read it."""

    def __init__(self, data: AnalyticsData, resource: AnalyticsRulesResource, now: datetime):
        self.data, self._resource, self.now = data, resource, now

    @cached_property
    def rules(self) -> AnalyticsRules:
        return self._resource.analytics()

    @cached_property
    def cross(self) -> CrossSystemRules:
        return self._resource.cross_system()

    @cached_property
    def frame(self):
        return kpis.permits_frame(self.data.permits, self.rules)


def approval_times(context, i: Inputs) -> _Pending:
    trend = kpis.approval_trend(i.frame)
    png = aside(line_chart, *kpis.per_site_series(trend, "median"), title="Median approval time by day", ylabel="minutes")
    return _result("permit_approval_times", kpis.table_rows(kpis.approval_times(i.frame)), png, i.rules.version,
                   trend=MetadataValue.json(kpis.table_rows(trend)))


def response_rates(context, i: Inputs) -> _Pending:
    rates = kpis.response_rates(i.frame, i.rules, i.now)
    png = aside(line_chart, *kpis.per_site_series(rates, "rate"), title="Effective guardian response rate", ylabel="share",
                     threshold=i.rules.response_rate_threshold)
    checks = [response_check(rates, i.frame, i.rules, i.now)] if _check_selected(context) else []
    return _result("guardian_response_rates", kpis.table_rows(rates), png, i.rules.version, check_results=checks)


def response_check(rates, frame, rules: AnalyticsRules, now: datetime) -> AssetCheckResult:
    """Judges each site's latest day; a day below the threshold fails with its root causes."""
    latest = rates.sort_values("day").groupby("site").tail(1)
    below = latest.loc[latest["below_threshold"].astype(bool)]  # an empty column is object-typed
    days = set(zip(below["site"], below["day"]))
    since = min((day for _, day in days), default=None)
    causes = [c.as_dict() for c in kpis.root_causes(frame, rules, now, since=since) if (c.site, c.day) in days] if days else []
    return AssetCheckResult(
        check_name=RESPONSE_CHECK,
        asset_key="guardian_response_rates",
        passed=below.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "threshold": rules.response_rate_threshold,
            "latest_days": MetadataValue.json(kpis.table_rows(latest)),
            "root_causes": MetadataValue.json(causes),
        },
    )


def overdue(context, i: Inputs) -> _Pending:
    top = kpis.overdue_top(i.frame, i.rules, i.now)
    png = aside(bar_chart, list(top["permit_id"]), list(top["minutes_to_end"]), title="Minutes to planned end (negative: overdue)", ylabel="minutes")
    return _result("overdue_permits", kpis.table_rows(top), png, i.rules.version)


def similar(context, i: Inputs) -> _Pending:
    # The longest histories first: the chart shows the first bars only.
    found = sorted(kpis.similar_work_alerts(i.data.permits, i.now, i.rules), key=lambda s: (-len(s.history), s.permit_id))
    rows = [
        {"permit_id": s.permit_id, "area": s.area, "permit_type": s.permit_type, "nearby": ", ".join(s.nearby),
         "history": len(s.history), "incidents": ", ".join(s.incidents) or "none"}
        for s in found
    ]
    png = aside(bar_chart, [s.permit_id for s in found], [len(s.history) for s in found], title="Permits of the type in the area, 6 months", ylabel="permits")
    return _result("similar_work_alerts", rows, png, i.rules.version,
                   similar_work=MetadataValue.json([s.as_dict(history_limit=SIMILAR_HISTORY_SHOWN) for s in found[:SIMILAR_SHOWN]]))


def hazard_closure(context, i: Inputs) -> _Pending:
    table = kpis.hazard_closure(i.data.failure_records, i.data.equipment)
    png = aside(bar_chart, [f"{s} {a}" for s, a in zip(table["site"], table["area"])], list(table["median"].fillna(0)),
                    title="Median hazard closure", ylabel="hours")
    return _result("hazard_closure_cycle", kpis.table_rows(table), png, i.rules.version)


def gate_performance(context, i: Inputs) -> _Pending:
    figures = kpis.gate_kpis(i.data.permits, i.data.trail, i.data.holds, i.data.records_by_id)
    blocks = figures.blocks_by_reason
    png = aside(bar_chart, list(blocks["reason"]), list(blocks["permits"]), title="Blocked permits by reason", ylabel="permits")
    return _result(
        "gate_performance", kpis.table_rows(blocks), png, i.rules.version,
        **figures.summary(),
        block_lags=MetadataValue.json(kpis.table_rows(figures.block_lags)),
        too_late_permits=", ".join(figures.too_late["permit_id"]) or "none",
    )


def _findings(name: str, found: cross_system.Findings, version: str) -> _Pending:
    """What both cross-system analyses show: the table, what they flag, the rule version and the chart."""
    return _result(name, cross_system.records(found.table), found.chart, version,
                   flagged=", ".join(found.flagged) or "none", flagged_count=len(found.flagged))


def height_quality(context, i: Inputs) -> _Pending:
    result = cross_system.height_against_quality(i.data.permits, i.data.quality_rates, i.cross)
    return _findings("work_at_height_quality", cross_system.height_findings(result, draw=aside), i.cross.version)


def lifting_failures(context, i: Inputs) -> _Pending:
    result = cross_system.lifting_failure_intervals(i.data.permits, i.data.failure_records, i.cross)
    return _findings("lifting_failure_intervals", cross_system.failure_findings(result, draw=aside), i.cross.version)


STATS = "count:int median:float p90:float max:float"

# name: (columns of its preview, upstream assets, description, the function that materializes it)
OUTPUTS = {
    "permit_approval_times": (
        "site:string area:string permit_type:string risk_level:string " + STATS, ["permits"],
        "Submission to approval (median, p90, max minutes) per site, area, permit type and risk level.", approval_times),
    "guardian_response_rates": (
        "site:string day:date permits:int effective:int rate:float below_threshold:bool", ["permits"],
        "Share of permits whose guardian arrived within the response window of submission, per site and day.", response_rates),
    "overdue_permits": (
        "site:string rank:int permit_id:string permit_type:string area:string planned_end:datetime minutes_to_end:float status:string",
        ["permits"], "The permits under way closest to or past their planned end (TOP N per site).", overdue),
    "similar_work_alerts": (
        "permit_id:string area:string permit_type:string nearby:string history:int incidents:string", ["permits"],
        "Live permits planned close to others of their type in their area, with the area's history of the type.", similar),
    "hazard_closure_cycle": (
        "site:string area:string count:int open:int median:float p90:float max:float", ["maintenance_records", "equipment"],
        "Corrective and emergency work orders from report to completion (hours) per site and area.", hazard_closure),
    "gate_performance": (
        "site:string reason:string permits:int", ["permit_gate_decisions"],
        "The gate's figures: blocks by reason, EAM change to hold, holds lifted, approvals before their block landed.",
        gate_performance),
    "work_at_height_quality": (
        "site:string workshop:string months:int height_permits:int correlation:float permit_slope:float "
        "rate_slope:float rising_together:bool", ["permits", "mes_quality_rates"],
        "Work-at-height permits per workshop and month against the MES defect rate: correlation, "
        "months compared, and workshops where both rise together.", height_quality),
    "lifting_failure_intervals": (
        "site:string device_id:string failures:int earlier_mean_days:float recent_mean_days:float shortening:float "
        "failing_faster:bool", ["permits", "maintenance_records"],
        "Days between successive failure work orders (corrective, emergency) of the devices lifting "
        "permits name, and devices whose recent failures come much sooner than before.", lifting_failures),
}
#: The KPIs, read by the analytics rule file; the other two by the cross-system one.
KPI_KEYS = list(OUTPUTS)[:6]
CROSS_SYSTEM_KEYS = list(OUTPUTS)[6:]


def _schema(columns: str) -> TableSchema:
    return TableSchema(columns=[TableColumn(*column.split(":")) for column in columns.split()])


def _check_selected(context: AssetExecutionContext) -> bool:
    return any(key.name == RESPONSE_CHECK for key in context.selected_asset_check_keys)


@multi_asset(
    specs=[
        AssetSpec(name, deps=deps, description=description, group_name="analytics", skippable=True,
                  metadata={"dagster/column_schema": _schema(columns)})
        for name, (columns, deps, description, _) in OUTPUTS.items()
    ],
    check_specs=[
        AssetCheckSpec(
            RESPONSE_CHECK,
            asset="guardian_response_rates",
            description="The latest day's effective response rate is at the threshold or above; below it, the root causes.",
            partitions_def=site_partitions,
        )
    ],
    partitions_def=site_partitions,
    can_subset=True,
)
def permit_analytics(context: AssetExecutionContext, store: HubStoreResource, analytics_rules: AnalyticsRulesResource):
    selected = {key.to_user_string() for key in context.selected_asset_keys}
    inputs = Inputs(read_analytics(store.store(), sites_of(context)), analytics_rules, datetime.now(timezone.utc))
    # Every chart is asked for before the first is awaited, so they draw while the next figures
    # compute. An output that fails stops the step there, as it would were each yielded at once:
    # the ones before it are still materialized.
    pending, failure = [], None
    for name, (_, _, _, materialize) in OUTPUTS.items():
        if name in selected:
            try:
                pending.append(materialize(context, inputs))
            except Exception as exc:
                failure = exc
                break
    for figures in pending:
        yield figures.result(context)
    if failure is not None:
        raise failure


ANALYTICS_ASSETS = [permit_analytics]
