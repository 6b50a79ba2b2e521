"""The plant's permit safety KPIs, computed from canonical records only (no store, no Dagster).

Every function takes canonical records (or the frame built from them) and a `now` where the
answer depends on it, so the assets, the report and the gate-check service compute the same
figures from the same records. Durations are minutes (hours for work orders), days are
plant-local dates (`AnalyticsRules.plant_timezone`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pandas as pd

from hub.logic.analytics_rules import AnalyticsRules
from hub.model import FAILURE_KINDS, LIVE_PERMIT_STATUSES, Equipment, GateDecision, MaintenanceRecord, Permit

#: Permits whose work has begun and is not closed: the ones that can run past their planned end.
WORK_UNDER_WAY = frozenset({"active", "suspended"})
GROUPS = ("site", "area", "permit_type", "risk_level")
STAT_COLUMNS = ["count", "median", "p90", "max"]
#: How many roles or areas the root-cause breakdown names.
SLOWEST = 3


def _minutes(delta: pd.Series) -> pd.Series:
    return delta.dt.total_seconds() / 60


def permits_frame(permits: Iterable[Permit], rules: AnalyticsRules) -> pd.DataFrame:
    """One row per permit with its stage times in minutes and its plant-local submission day."""
    rows = [p.model_dump(exclude={"device_ids", "material_names", "work_hours"}) for p in permits]
    frame = pd.DataFrame(rows, columns=list(Permit.model_fields.keys() - {"device_ids", "material_names", "work_hours"}))
    for column in ("submitted_at", "approved_at", "guardian_arrived_at", "closed_at", "planned_start", "planned_end"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["approval_min"] = _minutes(frame["approved_at"] - frame["submitted_at"])
    frame["response_min"] = _minutes(frame["guardian_arrived_at"] - frame["submitted_at"])
    frame["approved_to_guardian_min"] = _minutes(frame["guardian_arrived_at"] - frame["approved_at"])
    frame["day"] = frame["submitted_at"].dt.tz_convert(str(rules.plant_timezone)).dt.date
    return frame


def duration_stats(frame: pd.DataFrame, value: str, by: Sequence[str]) -> pd.DataFrame:
    """Count, median, 90th percentile (linear) and maximum of `value` per group, rows without it left out."""
    known = frame.dropna(subset=[value])
    if known.empty:
        return pd.DataFrame(columns=[*by, *STAT_COLUMNS])
    grouped = known.groupby(list(by), sort=True)[value]
    stats = grouped.agg(count="count", median="median", max="max")
    stats.insert(2, "p90", grouped.quantile(0.9))  # linear, as Series.quantile; not per group in Python
    return stats.round(1).reset_index()


def approval_times(frame: pd.DataFrame, by: Sequence[str] = GROUPS) -> pd.DataFrame:
    """Submission to approval, in minutes, per group (by default site, area, permit type and risk level)."""
    return duration_stats(frame, "approval_min", by)


def approval_trend(frame: pd.DataFrame) -> pd.DataFrame:
    """Submission to approval per site and plant-local day of submission."""
    return duration_stats(frame, "approval_min", ("site", "day"))


def _effective(frame: pd.DataFrame, rules: AnalyticsRules, now: datetime) -> pd.DataFrame:
    """The permits whose response is decided, with whether it was effective.

    A permit still waiting for its guardian counts once its window has passed (as not
    effective); before that, it is not yet decided and is left out.
    """
    window = rules.guardian_response.total_seconds() / 60
    arrived = frame["response_min"].notna()
    waited_out = pd.Timestamp(now) - frame["submitted_at"] > pd.Timedelta(rules.guardian_response)
    decided = frame[arrived | waited_out].copy()
    decided["effective"] = decided["response_min"].le(window)
    return decided


def response_rates(frame: pd.DataFrame, rules: AnalyticsRules, now: datetime) -> pd.DataFrame:
    """Per site and day: permits decided, effective responses, their share and whether it is below the threshold."""
    decided = _effective(frame, rules, now)
    columns = ["site", "day", "permits", "effective", "rate", "below_threshold"]
    if decided.empty:
        return pd.DataFrame(columns=columns)
    rates = decided.groupby(["site", "day"], sort=True).agg(permits=("effective", "size"), effective=("effective", "sum"))
    rates = rates.reset_index()
    rates["effective"] = rates["effective"].astype(int)
    rates["rate"] = (rates["effective"] / rates["permits"]).round(4)
    rates["below_threshold"] = rates["rate"] < rules.response_rate_threshold
    return rates[columns]


STAGES = {
    "submit_to_approve_min": "approval_min",
    "approve_to_guardian_min": "approved_to_guardian_min",
    "submit_to_guardian_min": "response_min",
}


def stage_times(frame: pd.DataFrame) -> dict[str, float | None]:
    """The median minutes of each stage, submit -> approve -> guardian arrival."""
    return {name: _round(frame[column].median()) for name, column in STAGES.items()}


def _round(value) -> float | None:
    return None if pd.isna(value) else round(float(value), 1)


def slowest(frame: pd.DataFrame, by: str, value: str, limit: int = SLOWEST) -> list[dict]:
    """The `limit` values of `by` with the longest median `value`, slowest first."""
    known = frame.dropna(subset=[by, value])
    if known.empty:
        return []
    stats = known.groupby(by)[value].agg(["median", "count"]).sort_values(["median", "count"], ascending=[False, False])
    return [
        {by: name, "median_min": _round(row["median"]), "permits": int(row["count"])}
        for name, row in stats.head(limit).iterrows()
    ]


@dataclass(frozen=True)
class RootCause:
    """Why a site's response rate was below the threshold on a day (`as_dict` is JSON)."""

    site: str
    day: date
    rate: float
    threshold: float
    stages: dict[str, float | None]
    slowest_applicants: list[dict]
    slowest_guardians: list[dict]
    slowest_areas: list[dict]
    # Per permit type of the day's late responses: its rate and stages over the days before.
    same_type_before: dict[str, dict] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "site": self.site,
            "day": self.day.isoformat(),
            "rate": self.rate,
            "threshold": self.threshold,
            "stages": self.stages,
            "slowest_applicants": self.slowest_applicants,
            "slowest_guardians": self.slowest_guardians,
            "slowest_areas": self.slowest_areas,
            "same_type_before": self.same_type_before,
        }


def root_causes(
    frame: pd.DataFrame, rules: AnalyticsRules, now: datetime, since: date | None = None
) -> list[RootCause]:
    """A breakdown for every (site, day) below the response-rate threshold, oldest first; with
    `since`, only for the days from then on (a breakdown costs as much as a day's permits).

    Applicants are ranked by their permits' approval time (the paperwork they hand in),
    guardians and areas by the time from submission to the guardian's arrival.
    """
    decided = _effective(frame, rules, now)
    rates = response_rates(frame, rules, now)
    alerts = rates.loc[rates["below_threshold"].astype(bool)]  # an empty column is object-typed
    if since is not None:
        alerts = alerts[alerts["day"] >= since]
    causes = []
    for alert in alerts.itertuples():
        site = decided[decided["site"] == alert.site]
        day = site[site["day"] == alert.day]
        late_types = sorted(day.loc[~day["effective"], "permit_type"].unique())
        start = alert.day - timedelta(days=rules.root_cause_days)
        before = site[(site["day"] >= start) & (site["day"] < alert.day)]
        same_type = {}
        for permit_type in late_types:
            of_type = before[before["permit_type"] == permit_type]
            same_type[permit_type] = {
                "days": f"{start.isoformat()}..{(alert.day - timedelta(days=1)).isoformat()}",
                "permits": len(of_type),
                "rate": round(float(of_type["effective"].mean()), 4) if len(of_type) else None,
                "stages": stage_times(of_type),
            }
        causes.append(
            RootCause(
                site=alert.site,
                day=alert.day,
                rate=float(alert.rate),
                threshold=rules.response_rate_threshold,
                stages=stage_times(day),
                slowest_applicants=slowest(day, "applicant", "approval_min"),
                slowest_guardians=slowest(day, "guardian", "response_min"),
                slowest_areas=slowest(day, "area", "response_min"),
                same_type_before=same_type,
            )
        )
    return causes


def overdue_top(frame: pd.DataFrame, rules: AnalyticsRules, now: datetime) -> pd.DataFrame:
    """Per site, the `overdue_top` permits under way and not closed that are within `overdue_warning`
    of their planned end or past it, the most overdue first (negative minutes are past the end)."""
    columns = ["site", "rank", "permit_id", "permit_type", "area", "planned_end", "minutes_to_end", "status"]
    open_work = frame[frame["status"].isin(WORK_UNDER_WAY) & frame["closed_at"].isna()].copy()
    open_work["minutes_to_end"] = _minutes(open_work["planned_end"] - pd.Timestamp(now)).round(1)
    due = open_work[open_work["minutes_to_end"] <= rules.overdue_warning.total_seconds() / 60]
    due = due.sort_values(["site", "minutes_to_end", "permit_id"]).groupby("site", sort=True).head(rules.overdue_top).copy()
    due["rank"] = due.groupby("site").cumcount() + 1
    return due[columns].reset_index(drop=True)


# ------------------------------------------------------------------ similar work within 72 hours


@dataclass(frozen=True)
class SimilarWork:
    """A permit planned close to others of its type in its area, and that area's history of the type."""

    permit_id: str
    site: str
    area: str
    permit_type: str
    # The other permits of the type in the area planned to start within `similar_work_gap` of this one.
    nearby: tuple[str, ...]
    # The area's permits of the type planned to start in the last `similar_work_history_months`, newest first.
    history: tuple[Permit, ...]
    # Counts of those permits by result ("open" for those without one yet).
    results: dict[str, int]
    incidents: tuple[str, ...]

    def as_dict(self, history_limit: int | None = None) -> dict:
        """JSON; with `history_limit`, only that many of the newest history entries (the counts
        of results and the incidents still cover all of it)."""
        return {
            "permit_id": self.permit_id,
            "site": self.site,
            "area": self.area,
            "permit_type": self.permit_type,
            "nearby": list(self.nearby),
            "history_count": len(self.history),
            "history": [
                {"permit_id": p.permit_id, "planned_start": p.planned_start.isoformat(), "status": p.status, "result": p.result}
                for p in self.history[:history_limit]
            ],
            "results": self.results,
            "incidents": list(self.incidents),
        }


class SimilarWorkIndex:
    """The permits of one site, area and type, ordered by planned start, so that the neighbours
    of a permit and the window of history (up to `now`) are found by bisection, not by a scan
    of every permit. `find(permit)` is `similar_work` for a permit of that kind."""

    def __init__(self, same_kind: Iterable[Permit], now: datetime, rules: AnalyticsRules):
        self.rules = rules
        self.by_start = sorted(same_kind, key=lambda p: (p.planned_start, p.permit_id))
        self.starts = [p.planned_start for p in self.by_start]
        since = (pd.Timestamp(now) - pd.DateOffset(months=rules.similar_work_history_months)).to_pydatetime()
        # Newest first: the planned starts from `since` to `now`, both included.
        self.history = self.by_start[bisect_left(self.starts, since) : bisect_right(self.starts, now)][::-1]

    def find(self, permit: Permit) -> SimilarWork | None:
        gap = self.rules.similar_work_gap
        # Strictly within the gap on either side.
        window = self.by_start[bisect_right(self.starts, permit.planned_start - gap) : bisect_left(self.starts, permit.planned_start + gap)]
        nearby = sorted(o.permit_id for o in window if o.permit_id != permit.permit_id and o.status != "cancelled")
        if not nearby:
            return None
        history = [p for p in self.history if p.permit_id != permit.permit_id]
        return SimilarWork(
            permit_id=permit.permit_id,
            site=permit.site,
            area=permit.area,
            permit_type=permit.permit_type,
            nearby=tuple(nearby),
            history=tuple(history),
            results=dict(sorted(Counter(p.result or "open" for p in history).items())),
            incidents=tuple(p.permit_id for p in history if p.result == "incident"),
        )


def _kind(permit: Permit) -> tuple[str, str, str]:
    return (permit.site, permit.area, permit.permit_type)


def similar_work(
    permits: Iterable[Permit], permit: Permit, now: datetime, rules: AnalyticsRules | None = None
) -> SimilarWork | None:
    """The area's recent history of the permit's type when another permit of that type in that
    area is planned within `similar_work_gap` (72 h) of it; None when none is.

    Repeated work in one place is where incidents repeat, so whoever checks the permit sees what
    happened to the same kind of work there. Cancelled permits are no work and count as no
    neighbour; they stay in the history with their status.
    """
    rules = rules or AnalyticsRules(version="defaults")
    return SimilarWorkIndex((p for p in permits if _kind(p) == _kind(permit)), now, rules).find(permit)


def similar_work_alerts(permits: Sequence[Permit], now: datetime, rules: AnalyticsRules) -> list[SimilarWork]:
    """`similar_work` for every live permit, each kind of work indexed once."""
    grouped: dict[tuple[str, str, str], list[Permit]] = {}
    for p in permits:
        grouped.setdefault(_kind(p), []).append(p)
    indexes = {kind: SimilarWorkIndex(group, now, rules) for kind, group in grouped.items()}
    return [
        found
        for p in permits
        if p.status in LIVE_PERMIT_STATUSES
        if (found := indexes[_kind(p)].find(p)) is not None
    ]


# ------------------------------------------------------------------ hazard closure (EAM)


def hazard_closure(records: Iterable[MaintenanceRecord], equipment: Mapping[tuple[str, str], Equipment]) -> pd.DataFrame:
    """Corrective and emergency work orders from report to completion, in hours, per site and the
    equipment's area; `open` counts those reported and not completed ("(unknown)": an area the
    EAM does not give)."""
    rows = [
        {
            "site": r.site,
            "area": getattr(equipment.get((r.site, r.device_id)), "area", None) or "(unknown)",
            "closure_h": (r.completed_at - r.reported_at).total_seconds() / 3600 if r.completed_at else None,
        }
        for r in records
        if r.kind in FAILURE_KINDS and r.reported_at is not None
    ]
    frame = pd.DataFrame(rows, columns=["site", "area", "closure_h"])
    stats = duration_stats(frame, "closure_h", ("site", "area"))
    open_orders = frame[frame["closure_h"].isna()].groupby(["site", "area"]).size().rename("open").reset_index()
    merged = stats.merge(open_orders, on=["site", "area"], how="outer")
    merged["count"] = merged["count"].fillna(0).astype(int)
    merged["open"] = merged["open"].fillna(0).astype(int)
    return merged[["site", "area", "count", "open", "median", "p90", "max"]].sort_values(["site", "area"]).reset_index(drop=True)


# ------------------------------------------------------------------ the gate's own KPIs


@dataclass(frozen=True)
class GateKpis:
    """The gate's figures for a set of permits.

    `blocks_by_reason`: permits whose latest decision blocks, per site and reason code.
    `block_lags`: per blocked permit with a work order in its reasons, the latest change of those
    work orders at the EAM (`updated_at`), when the current block was first decided and when its
    hold was written to the PTW, and the minutes between.
    `holds_lifted`: per site, the block-to-allow changes in the decision trail.
    `too_late`: permits approved after their blocking EAM change but before the block reached the
    PTW; the gate exists so that this stays empty.
    """

    blocks_by_reason: pd.DataFrame
    block_lags: pd.DataFrame
    holds_lifted: pd.DataFrame
    too_late: pd.DataFrame

    def summary(self) -> dict[str, float | int | None]:
        lags = self.block_lags
        return {
            "blocked_permits": int(self.blocks_by_reason["permits"].sum()) if len(self.blocks_by_reason) else 0,
            "median_min_to_decision": _round(lags["to_decision_min"].median()) if len(lags) else None,
            "median_min_to_hold": _round(lags["to_hold_min"].median()) if len(lags) else None,
            "max_min_to_hold": _round(lags["to_hold_min"].max()) if len(lags) else None,
            "holds_lifted": int(self.holds_lifted["lifted"].sum()) if len(self.holds_lifted) else 0,
            "too_late": len(self.too_late),
        }


def _current_block_since(decisions: Sequence[GateDecision]) -> GateDecision | None:
    """The first decision of the trail's final run of blocks (None when the latest allows)."""
    first = None
    for decision in reversed(decisions):
        if decision.decision != "block":
            break
        first = decision
    return first


def gate_kpis(
    permits: Iterable[Permit],
    trail: Iterable[GateDecision],
    holds_written: Mapping[str, tuple[str, datetime]],
    records: Mapping[tuple[str, str], MaintenanceRecord],
) -> GateKpis:
    """The gate's KPIs from the decision trail (oldest first), the holds last written to the PTW
    (permit -> (decision, written_at)) and the stored work orders by (site, record_id)."""
    by_id = {p.permit_id: p for p in permits}
    trails: dict[str, list[GateDecision]] = {}
    for decision in trail:
        if decision.permit_id in by_id:
            trails.setdefault(decision.permit_id, []).append(decision)
    reasons, lags, lifted, late = [], [], Counter(), []
    for permit_id, decisions in sorted(trails.items()):
        permit = by_id[permit_id]
        lifted[permit.site] += sum(1 for a, b in zip(decisions, decisions[1:]) if a.decision == "block" and b.decision == "allow")
        since = _current_block_since(decisions)
        if since is None:
            continue
        reasons += [{"site": permit.site, "reason": code} for code in sorted({r.code for r in decisions[-1].reasons})]
        changes = [
            records[(permit.site, r.evidence["work_order"])].updated_at
            for r in since.reasons
            if "work_order" in r.evidence and (permit.site, r.evidence["work_order"]) in records
        ]
        if not changes:
            continue
        changed = max(changes)
        hold = holds_written.get(permit_id)
        held_at = hold[1] if hold and hold[0] == "block" else None
        lags.append(
            {
                "site": permit.site,
                "permit_id": permit_id,
                "eam_changed_at": changed,
                "blocked_at": since.evaluated_at,
                "hold_written_at": held_at,
                "to_decision_min": (since.evaluated_at - changed).total_seconds() / 60,
                "to_hold_min": (held_at - changed).total_seconds() / 60 if held_at else None,
            }
        )
        landed = held_at or since.evaluated_at
        if permit.approved_at is not None and changed <= permit.approved_at < landed:
            late.append({"site": permit.site, "permit_id": permit_id, "eam_changed_at": changed,
                         "approved_at": permit.approved_at, "block_landed_at": landed})
    blocks = pd.DataFrame(reasons, columns=["site", "reason"])
    blocks_by_reason = blocks.groupby(["site", "reason"]).size().rename("permits").reset_index()
    lag_columns = ["site", "permit_id", "eam_changed_at", "blocked_at", "hold_written_at", "to_decision_min", "to_hold_min"]
    return GateKpis(
        blocks_by_reason=blocks_by_reason.sort_values(["site", "permits", "reason"], ascending=[True, False, True]).reset_index(drop=True),
        block_lags=pd.DataFrame(lags, columns=lag_columns).round({"to_decision_min": 1, "to_hold_min": 1}),
        holds_lifted=pd.DataFrame(sorted(lifted.items()), columns=["site", "lifted"]),
        too_late=pd.DataFrame(late, columns=["site", "permit_id", "eam_changed_at", "approved_at", "block_landed_at"]),
    )


def _plain(value):
    if value is None or (not isinstance(value, (list, dict, tuple)) and pd.isna(value)):
        return None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def table_rows(frame: pd.DataFrame) -> list[dict]:
    """A KPI table as rows of plain values (ISO times, no NaN), for previews, JSON and the report."""
    return [{name: _plain(value) for name, value in row.items()} for row in frame.to_dict("records")]


def per_site_series(table: pd.DataFrame, value: str) -> tuple[list[str], dict[str, list[float]]]:
    """A line per site over the union of days, for a chart; a day a site has no figure for is a gap (NaN)."""
    days = sorted(set(table["day"]))
    series = {}
    for site, rows in table.groupby("site"):
        by_day = dict(zip(rows["day"], rows[value]))
        series[site] = [float(by_day.get(day, float("nan"))) for day in days]
    return [d.isoformat() for d in days], series
