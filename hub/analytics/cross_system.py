"""Cross-system analyses: work at height (PTW) against quality (MES), lifting (PTW) against
failures (EAM).

Pure: canonical records and rules in, pandas frames out. Neither analysis claims a cause; each
flags a pattern worth a safety engineer's look: a workshop whose work at height and defect rate
rise together, a lifted device whose failures come ever sooner.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd

from hub.analytics.charts import line_chart
from hub.logic.cross_system_rules import CrossSystemRules
from hub.model import FAILURE_KINDS, MaintenanceRecord, Permit, QualityRate

WORK_AT_HEIGHT = "work_at_height"
LIFTING = "lifting"
DAY_SECONDS = 86_400

WORKSHOP_KEY = ["site", "workshop"]
DEVICE_KEY = ["site", "device_id"]
CHARTED = 5  # workshops or devices drawn in one chart


@dataclass(frozen=True)
class HeightQuality:
    #: site, workshop, month, height_permits, defect_rate: one row per month the MES has a rate for.
    monthly: pd.DataFrame
    #: site, workshop, months, height_permits, correlation, permit_slope, rate_slope, rising_together.
    workshops: pd.DataFrame


@dataclass(frozen=True)
class FailureIntervals:
    #: site, device_id, record_id, kind, reported_at, interval_days (None for a device's first failure).
    intervals: pd.DataFrame
    #: site, device_id, failures, earlier_mean_days, recent_mean_days, shortening, failing_faster.
    devices: pd.DataFrame


def _slope(x: pd.Series, y: pd.Series) -> float:
    """Least-squares slope of y over x; NaN when x does not vary."""
    spread = x.var()
    return float(x.cov(y) / spread) if spread and not math.isnan(spread) else math.nan


def height_against_quality(
    permits: Iterable[Permit], rates: Iterable[QualityRate], rules: CrossSystemRules
) -> HeightQuality:
    """Work-at-height permits per workshop and month beside that month's defect rate.

    A permit counts in the plant-local month its planned work starts; cancelled permits are
    work that never happened and are left out. Months the MES has no rate for cannot be
    compared and are left out; a month with a rate and no permit counts 0 permits.
    """
    zone = str(rules.plant_timezone)
    height = pd.DataFrame(
        [(p.site, p.area, p.planned_start) for p in permits if p.permit_type == WORK_AT_HEIGHT and p.status != "cancelled"],
        columns=["site", "workshop", "start"],
    )
    starts = pd.to_datetime(height["start"], utc=True).dt.tz_convert(zone)
    height["month"] = pd.Series([date(s.year, s.month, 1) for s in starts], index=height.index, dtype=object)
    counts = height.groupby([*WORKSHOP_KEY, "month"]).size().rename("height_permits").reset_index()
    quality = pd.DataFrame(
        [(r.site, r.workshop, r.month, float(r.defect_rate)) for r in rates],
        columns=[*WORKSHOP_KEY, "month", "defect_rate"],
    )
    monthly = quality.merge(counts, on=[*WORKSHOP_KEY, "month"], how="left")
    monthly["height_permits"] = monthly["height_permits"].fillna(0).astype(int)
    monthly = monthly[[*WORKSHOP_KEY, "month", "height_permits", "defect_rate"]].sort_values([*WORKSHOP_KEY, "month"])
    settings = rules.height_quality
    rows = []
    for (site, workshop), group in monthly.groupby(WORKSHOP_KEY, sort=True):
        ordinal = pd.Series([m.year * 12 + m.month for m in group["month"]], index=group.index, dtype=float)
        permits_, rate = group["height_permits"].astype(float), group["defect_rate"]
        correlation = float(permits_.corr(rate)) if len(group) >= 2 else math.nan
        permit_slope, rate_slope = _slope(ordinal, permits_), _slope(ordinal, rate)
        rows.append({
            # The permits counted over the months compared: a correlation over a handful says little.
            "site": site, "workshop": workshop, "months": len(group), "height_permits": int(permits_.sum()),
            "correlation": correlation,
            "permit_slope": permit_slope, "rate_slope": rate_slope,
            # NaN compares false: a flat series has no correlation and never flags.
            "rising_together": bool(
                len(group) >= settings.min_months and correlation >= settings.min_correlation
                and permit_slope > 0 and rate_slope > 0
            ),
        })
    columns = [*WORKSHOP_KEY, "months", "height_permits", "correlation", "permit_slope", "rate_slope", "rising_together"]
    return HeightQuality(monthly.reset_index(drop=True), pd.DataFrame(rows, columns=columns))


def lifting_failure_intervals(
    permits: Iterable[Permit], records: Iterable[MaintenanceRecord], rules: CrossSystemRules
) -> FailureIntervals:
    """The days between successive failure work orders of each device a lifting permit names.

    A failure is a corrective or emergency work order, dated by when it was reported; one
    without a report date cannot be placed in time and a cancelled one is no failure, so both
    are left out. Every device named by a lifting permit is listed, a device without failures too.
    """
    lifted = sorted({(p.site, d) for p in permits if p.permit_type == LIFTING for d in p.device_ids})
    wanted = set(lifted)
    intervals = pd.DataFrame(
        [
            (r.site, r.device_id, r.record_id, r.kind, r.reported_at)
            for r in records
            if r.kind in FAILURE_KINDS and r.status != "cancelled" and r.reported_at is not None
            and (r.site, r.device_id) in wanted
        ],
        columns=[*DEVICE_KEY, "record_id", "kind", "reported_at"],
    )
    intervals["reported_at"] = pd.to_datetime(intervals["reported_at"], utc=True)
    intervals = intervals.sort_values([*DEVICE_KEY, "reported_at", "record_id"]).reset_index(drop=True)
    intervals["interval_days"] = intervals.groupby(DEVICE_KEY)["reported_at"].diff().dt.total_seconds() / DAY_SECONDS
    settings = rules.failure_intervals
    by_device = {key: group["interval_days"].dropna().tolist() for key, group in intervals.groupby(DEVICE_KEY)}
    failures = intervals.groupby(DEVICE_KEY).size().to_dict()
    rows = []
    for site, device in lifted:
        gaps = by_device.get((site, device), [])
        earlier = recent = shortening = math.nan
        if len(gaps) >= settings.recent_intervals + settings.min_earlier_intervals:
            earlier = sum(gaps[: -settings.recent_intervals]) / (len(gaps) - settings.recent_intervals)
            recent = sum(gaps[-settings.recent_intervals :]) / settings.recent_intervals
            shortening = earlier / recent if recent > 0 else math.inf
        rows.append({
            "site": site, "device_id": device,
            "failures": int(failures.get((site, device), 0)),
            "earlier_mean_days": earlier, "recent_mean_days": recent, "shortening": shortening,
            "failing_faster": bool(shortening > settings.shortening_factor),
        })
    columns = [*DEVICE_KEY, "failures", "earlier_mean_days", "recent_mean_days", "shortening", "failing_faster"]
    return FailureIntervals(intervals, pd.DataFrame(rows, columns=columns))


def height_quality_series(
    result: HeightQuality, workshops: Sequence[tuple[str, str]]
) -> tuple[list[str], dict[str, list[float]]]:
    """The workshops' months, and both figures of each as a share of their own maximum, so one
    axis shows both; a month one workshop has no rate for is a gap (NaN)."""
    monthly = result.monthly
    chosen = [monthly[(monthly["site"] == site) & (monthly["workshop"] == workshop)] for site, workshop in workshops]
    months = sorted({m for rows in chosen for m in rows["month"]})
    series = {}
    for (site, workshop), rows in zip(workshops, chosen):
        prefix = f"{site} {workshop}: " if len(workshops) > 1 else ""
        for column, label in (("height_permits", "work-at-height permits"), ("defect_rate", "defect rate")):
            top = float(rows[column].max()) if len(rows) else 0.0
            by_month = dict(zip(rows["month"], rows[column]))
            series[prefix + label] = [
                (float(by_month[m]) / top if top else 0.0) if m in by_month else math.nan for m in months
            ]
    return [m.strftime("%Y-%m") for m in months], series


def interval_series(result: FailureIntervals, devices: Sequence[tuple[str, str]]) -> tuple[list[str], dict[str, list[float]]]:
    """The devices' intervals in order (1st, 2nd, ...); a device with fewer intervals leaves gaps (NaN)."""
    gaps = {
        device: result.intervals[(result.intervals["site"] == site) & (result.intervals["device_id"] == device)]
        ["interval_days"].dropna().tolist()
        for site, device in devices
    }
    longest = max((len(v) for v in gaps.values()), default=0)
    return [str(n) for n in range(1, longest + 1)], {d: v + [math.nan] * (longest - len(v)) for d, v in gaps.items()}


@dataclass(frozen=True)
class Findings:
    """What an analysis shows its reader (asset and report alike): the table with what it flags
    first, the flagged keys as "site/name", and the chart."""

    table: pd.DataFrame
    flagged: list[str]
    chart: Any  # the PNG, or what `draw` made of it (a `charts.Drawing` when drawn aside)


def _draw_here(chart: Callable[..., bytes], *args, **kwargs) -> bytes:
    return chart(*args, **kwargs)


def height_findings(result: HeightQuality, draw: Callable[..., Any] = _draw_here) -> Findings:
    """Workshops flagged first, then by correlation; the chart draws the flagged ones (the top
    workshop when none is flagged)."""
    ranked = result.workshops.sort_values(["rising_together", "correlation"], ascending=False, na_position="last")
    ranked = ranked.reset_index(drop=True)
    flagged = ranked[ranked["rising_together"].astype(bool)]  # an empty column is object-typed
    shown = flagged.head(CHARTED) if len(flagged) else ranked.head(1)
    charted = list(zip(shown["site"], shown["workshop"]))
    months, series = height_quality_series(result, charted)
    if len(charted) == 1:
        title = f"{charted[0][0]} {charted[0][1]}: work at height and defect rate"
    else:
        title = "flagged workshops: work at height and defect rate" if charted else "work at height and defect rate"
    png = draw(line_chart, months, series, title=title, ylabel="share of the series' maximum")
    return Findings(ranked, [f"{s}/{w}" for s, w in zip(flagged["site"], flagged["workshop"])], png)


def failure_findings(result: FailureIntervals, draw: Callable[..., Any] = _draw_here) -> Findings:
    """Devices flagged first, then by how much sooner they fail; the chart draws the first few
    devices that have an interval at all."""
    ranked = result.devices.sort_values(["failing_faster", "shortening"], ascending=False, na_position="last")
    ranked = ranked.reset_index(drop=True)
    flagged = ranked[ranked["failing_faster"].astype(bool)]
    charted = [(r.site, r.device_id) for r in ranked.itertuples() if r.failures > 1][:CHARTED]
    intervals, series = interval_series(result, charted)
    png = draw(line_chart, intervals, series, title="days between failures, by failure", ylabel="days")
    return Findings(ranked, [f"{s}/{d}" for s, d in zip(flagged["site"], flagged["device_id"])], png)


def records(frame: pd.DataFrame, places: int = 4) -> list[dict]:
    """Rows as plain values for a preview: floats rounded, NaN and infinity as None, timestamps as ISO text."""
    def plain(value):
        if isinstance(value, float):
            return None if not math.isfinite(value) else round(value, places)
        if isinstance(value, pd.Timestamp):
            return value.isoformat()
        if hasattr(value, "item"):  # numpy scalars
            return plain(value.item())
        return value

    return [{key: plain(value) for key, value in row.items()} for row in frame.to_dict("records")]
