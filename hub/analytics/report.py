"""The static analytics report: sections of tables and charts, rendered to one HTML page.

Pure: `build_report` returns the page and the chart PNGs by file name; `hub report` writes them.
Every value from the records is HTML-escaped (permit fields are typed by people at the PTW).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape

from hub.analytics import cross_system, kpis
from hub.analytics.charts import bar_chart, line_chart
from hub.logic.analytics_rules import AnalyticsRules
from hub.logic.cross_system_rules import CrossSystemRules
from hub.steps.analytics import AnalyticsData


@dataclass
class Section:
    id: str
    title: str
    tables: list[tuple[str, list[dict]]] = field(default_factory=list)
    chart: str | None = None  # file name of its PNG
    note: str = ""


def build_report(
    data: AnalyticsData, rules: AnalyticsRules, cross_rules: CrossSystemRules, now: datetime, days: int
) -> tuple[str, dict[str, bytes]]:
    """The page and its charts for the permits submitted in the last `days` days (open work, the
    gate and the cross-system analyses, which need months of history: all)."""
    since = now - timedelta(days=days)
    frame = kpis.permits_frame(data.permits, rules)
    recent = frame[frame["submitted_at"] >= since]
    charts: dict[str, bytes] = {}
    sections = []

    trend = kpis.approval_trend(recent)
    charts["approval_times.png"] = line_chart(*kpis.per_site_series(trend, "median"), title="Median approval time by day", ylabel="minutes")
    sections.append(Section("approval", "Approval time", [("Per site, area, permit type and risk level (minutes)", kpis.table_rows(kpis.approval_times(recent)))], "approval_times.png"))

    rates = kpis.response_rates(recent, rules, now)
    charts["response_rates.png"] = line_chart(*kpis.per_site_series(rates, "rate"), title="Effective guardian response rate", ylabel="share", threshold=rules.response_rate_threshold)
    sections.append(Section("response", "Effective response rate", [("Per site and day", kpis.table_rows(rates))], "response_rates.png",
                            f"Guardian on site within {rules.guardian_response} of submission; threshold {rules.response_rate_threshold:.0%}."))

    causes = kpis.root_causes(frame, rules, now, since=since.astimezone(rules.plant_timezone).date())
    alerts = Section("alerts", "Alerts and root causes", note="No day below the threshold." if not causes else "")
    for cause in causes:
        alerts.tables.append((f"{cause.site} {cause.day}: rate {cause.rate:.1%} (below {cause.threshold:.0%}), median stage minutes", [cause.stages]))
        alerts.tables += [(f"{cause.site} {cause.day}: slowest {role}", rows) for role, rows in
                          (("applicants", cause.slowest_applicants), ("guardians", cause.slowest_guardians), ("areas", cause.slowest_areas))]
        alerts.tables.append((f"{cause.site} {cause.day}: the same permit types, {rules.root_cause_days} days before",
                              [{"permit_type": t, "days": v["days"], "permits": v["permits"], "rate": v["rate"], **v["stages"]} for t, v in cause.same_type_before.items()]))
    sections.append(alerts)

    top = kpis.overdue_top(frame, rules, now)
    charts["overdue.png"] = bar_chart(list(top["permit_id"]), list(top["minutes_to_end"]), title="Minutes to planned end (negative: overdue)", ylabel="minutes")
    sections.append(Section("overdue", f"Overdue TOP {rules.overdue_top}", [("Per site", kpis.table_rows(top))], "overdue.png"))

    similar = kpis.similar_work_alerts(data.permits, now, rules)
    sections.append(Section("similar", f"Similar work within {rules.similar_work_gap}", [
        (f"{s.permit_id}: {s.permit_type} in {s.area}, near {', '.join(s.nearby)}; results {s.results}", s.as_dict()["history"]) for s in similar
    ], note="No live permit has similar work nearby." if not similar else ""))

    closure = kpis.hazard_closure(data.failure_records, data.equipment)
    charts["hazard_closure.png"] = bar_chart([f"{s} {a}" for s, a in zip(closure["site"], closure["area"])], list(closure["median"].fillna(0)), title="Median hazard closure", ylabel="hours")
    sections.append(Section("hazards", "Hazard closure cycle", [("Corrective and emergency work orders, report to completion (hours)", kpis.table_rows(closure))], "hazard_closure.png"))

    gate = kpis.gate_kpis(data.permits, data.trail, data.holds, data.records_by_id)
    charts["gate_blocks.png"] = bar_chart(list(gate.blocks_by_reason["reason"]), list(gate.blocks_by_reason["permits"]), title="Blocked permits by reason", ylabel="permits")
    sections.append(Section("gate", "The gate", [
        ("Summary", [gate.summary()]), ("Blocks by reason", kpis.table_rows(gate.blocks_by_reason)),
        ("EAM change to block and hold (minutes)", kpis.table_rows(gate.block_lags)), ("Holds lifted", kpis.table_rows(gate.holds_lifted)),
        ("Approved before their block landed (must be none)", kpis.table_rows(gate.too_late)),
    ], "gate_blocks.png"))

    sections += cross_system_sections(data, cross_rules, charts)
    title = f"Permit analytics, {since:%Y-%m-%d} to {now:%Y-%m-%d %H:%M} UTC"
    return render(sections, title, [rules.version, cross_rules.version]), charts


def _flagged(found: cross_system.Findings, what: str) -> str:
    return f"Flagged: {', '.join(found.flagged)}." if found.flagged else f"No {what} flagged."


def cross_system_sections(data: AnalyticsData, rules: CrossSystemRules, charts: dict[str, bytes]) -> list[Section]:
    """The two analyses as their assets compute them (`cross_system.*_findings`), over every month stored."""
    height = cross_system.height_findings(cross_system.height_against_quality(data.permits, data.quality_rates, rules))
    charts["height_quality.png"] = height.chart
    hq = rules.height_quality
    failures = cross_system.failure_findings(cross_system.lifting_failure_intervals(data.permits, data.failure_records, rules))
    charts["lifting_failures.png"] = failures.chart
    fi = rules.failure_intervals
    return [
        Section("height_quality", "Work at height against MES quality", [
            ("Per site and workshop: months compared, work-at-height permits in them, Pearson correlation, slopes per month",
             cross_system.records(height.table)),
        ], "height_quality.png",
            f"{_flagged(height, 'workshop')} A workshop is flagged when over at least {hq.min_months} months its monthly "
            f"work-at-height permits and defect rate correlate at {hq.min_correlation:g} or more and both rise. "
            "A pattern worth a look, not a cause."),
        Section("lifting_failures", "Lifting against EAM failures", [
            ("Per device a lifting permit names: failure work orders (corrective, emergency), mean days between them "
             "earlier and in the recent intervals, and the factor by which they come sooner",
             cross_system.records(failures.table)),
        ], "lifting_failures.png",
            f"{_flagged(failures, 'device')} A device is flagged when the mean of its last {fi.recent_intervals} intervals "
            f"is shorter than the mean of the {fi.min_earlier_intervals} or more before by a factor above {fi.shortening_factor:g}."),
    ]


def _table(caption: str, rows: list[dict]) -> str:
    if not rows:
        return f"<h3>{escape(caption)}</h3><p class=empty>none</p>"
    columns = list(dict.fromkeys(name for row in rows for name in row))
    head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape('' if row.get(c) is None else str(row.get(c)))}</td>" for c in columns) + "</tr>" for row in rows)
    return f"<h3>{escape(caption)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(sections: list[Section], title: str, rule_versions: list[str]) -> str:
    parts = []
    for s in sections:
        chart = f'<img src="{escape(s.chart)}" alt="{escape(s.title)}">' if s.chart else ""
        note = f"<p>{escape(s.note)}</p>" if s.note else ""
        parts.append(f'<section id="{escape(s.id)}"><h2>{escape(s.title)}</h2>{note}{chart}{"".join(_table(c, r) for c, r in s.tables)}</section>')
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:.5em 0}}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}img{max-width:100%}</style></head>"
        f"<body><h1>{escape(title)}</h1><p>Rules {escape(', '.join(rule_versions))}.</p>{''.join(parts)}</body></html>"
    )
