"""Each KPI against values worked out by hand on a few canonical records."""

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.analytics.kpis import (
    approval_times,
    approval_trend,
    gate_kpis,
    hazard_closure,
    overdue_top,
    permits_frame,
    response_rates,
    root_causes,
    similar_work,
    similar_work_alerts,
)
from hub.logic.analytics_rules import AnalyticsRules, load_analytics_rules
from hub.model import Equipment, GateDecision, MaintenanceRecord, Permit, Reason
from hub.yamlfile import ConfigError

RULES = load_analytics_rules()


def at(day: int, hour: int, minute: int = 0, month: int = 12) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=timezone.utc)


def permit(permit_id, submitted, *, approve=None, guardian=None, permit_type="hot_work", area="A", applicant="wang",
           guardian_name="li", status="approved", start=None, end=None, result=None, risk="red", site="S1") -> Permit:
    """A permit; `approve` and `guardian` are minutes after submission."""
    return Permit(
        permit_id=permit_id, permit_type=permit_type, risk_level=risk, site=site, area=area, applicant=applicant,
        guardian=guardian_name, planned_start=start or submitted, planned_end=end or submitted + timedelta(hours=8),
        status=status, submitted_at=submitted, result=result, updated_at=submitted,
        approved_at=submitted + timedelta(minutes=approve) if approve is not None else None,
        guardian_arrived_at=submitted + timedelta(minutes=guardian) if guardian is not None else None,
    )


# 2026-12-01 plant-local (UTC+8): P1 effective, P2 late, P3 effective, P4 never reached (window
# passed), P5 still within its window at NOW (undecided). P6 three days before, P7 outside them.
NOW = at(1, 6)
DAY = [
    permit("P1", at(1, 2), approve=10, guardian=12),
    permit("P2", at(1, 3), approve=30, guardian=40, applicant="zhao"),
    permit("P3", at(1, 4), approve=20, guardian=14, permit_type="lifting", area="B", guardian_name="chen", risk="yellow"),
    permit("P4", at(1, 5), permit_type="lifting", area="B", guardian_name=None, status="submitted", risk="yellow"),
    permit("P5", at(1, 5, 55), status="submitted"),
]
BEFORE = [
    permit("P6", at(29, 2, month=11), approve=5, guardian=8),
    permit("P7", at(25, 2, month=11), approve=5, guardian=60),
]


def test_the_shipped_rule_file_holds_the_agreed_figures():
    assert RULES.guardian_response == timedelta(minutes=15) and RULES.response_rate_threshold == 0.92
    assert RULES.overdue_warning == timedelta(minutes=30) and RULES.overdue_top == 5
    assert RULES.similar_work_gap == timedelta(hours=72) and RULES.similar_work_history_months == 6


def test_a_bad_value_names_the_file_and_the_field(tmp_path: Path):
    path = tmp_path / "analytics.yaml"
    path.write_text("version: x\nresponse_rate_threshold: 1.5\nguardian_response: PT0M\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_analytics_rules(path)
    message = str(raised.value)
    assert f"{path}:2:" in message and "response_rate_threshold" in message
    assert f"{path}:3:" in message and "guardian_response" in message


def test_approval_time_median_p90_max_per_group_and_per_day():
    frame = permits_frame(DAY, RULES)
    by_site = approval_times(frame, by=("site",)).iloc[0]
    # Approvals after 10, 30 and 20 minutes (P4, P5 not approved).
    assert (by_site["count"], by_site["median"], by_site["p90"], by_site["max"]) == (3, 20.0, 28.0, 30.0)
    groups = approval_times(frame)
    assert list(groups.columns[:4]) == ["site", "area", "permit_type", "risk_level"]
    hot = groups[(groups["area"] == "A") & (groups["permit_type"] == "hot_work")].iloc[0]
    assert (hot["count"], hot["median"], hot["max"]) == (2, 20.0, 30.0)
    trend = approval_trend(permits_frame(DAY + BEFORE, RULES))
    assert trend[["day", "median"]].values.tolist() == [[date(2026, 11, 25), 5.0], [date(2026, 11, 29), 5.0], [date(2026, 12, 1), 20.0]]


def test_response_rate_counts_a_permit_once_its_window_has_passed():
    rates = response_rates(permits_frame(DAY, RULES), RULES, NOW)
    row = rates.iloc[0]
    assert (row["site"], row["day"], row["permits"], row["effective"], row["rate"]) == ("S1", date(2026, 12, 1), 4, 2, 0.5)
    assert bool(row["below_threshold"])
    # All on time: at the threshold or above passes.
    ok = response_rates(permits_frame([DAY[0], DAY[2]], RULES), RULES, NOW)
    assert ok["rate"].tolist() == [1.0] and not ok["below_threshold"].any()


def test_the_plant_local_day_of_a_submission():
    # 2026-12-01 17:00 UTC is 2026-12-02 01:00 in Shanghai.
    rates = response_rates(permits_frame([permit("N", at(1, 17), guardian=5)], RULES), RULES, at(2, 0))
    assert rates["day"].tolist() == [date(2026, 12, 2)]


def test_root_causes_name_stages_roles_areas_and_the_same_type_days_before():
    causes = {c.day: c for c in root_causes(permits_frame(DAY + BEFORE, RULES), RULES, NOW)}
    assert set(causes) == {date(2026, 11, 25), date(2026, 12, 1)}  # 11-29 was all on time
    cause = causes[date(2026, 12, 1)]
    assert cause.rate == 0.5 and cause.threshold == 0.92
    # Approvals 10, 30, 20; approval to guardian 2, 10, -6; submission to guardian 12, 40, 14.
    assert cause.stages == {"submit_to_approve_min": 20.0, "approve_to_guardian_min": 2.0, "submit_to_guardian_min": 14.0}
    assert [(a["applicant"], a["median_min"], a["permits"]) for a in cause.slowest_applicants] == [("zhao", 30.0, 1), ("wang", 15.0, 2)]
    assert [(g["guardian"], g["median_min"]) for g in cause.slowest_guardians] == [("li", 26.0), ("chen", 14.0)]
    assert [(a["area"], a["median_min"]) for a in cause.slowest_areas] == [("A", 26.0), ("B", 14.0)]
    # Late that day: hot work (P2) and lifting (P4). The 3 days before hold P6 only (P7 is older).
    before = cause.same_type_before
    assert set(before) == {"hot_work", "lifting"}
    assert before["hot_work"]["permits"] == 1 and before["hot_work"]["rate"] == 1.0
    assert before["hot_work"]["stages"]["submit_to_approve_min"] == 5.0 and before["hot_work"]["days"] == "2026-11-28..2026-11-30"
    assert before["lifting"] == {"days": "2026-11-28..2026-11-30", "permits": 0, "rate": None,
                                 "stages": {"submit_to_approve_min": None, "approve_to_guardian_min": None, "submit_to_guardian_min": None}}
    assert cause.as_dict()["day"] == "2026-12-01"


def test_overdue_top_ranks_open_work_near_or_past_its_end():
    open_work = [
        permit("O1", at(1, 0), status="active", end=NOW + timedelta(minutes=20)),
        permit("O2", at(1, 0), status="active", end=NOW - timedelta(minutes=60)),
        permit("O3", at(1, 0), status="suspended", end=NOW + timedelta(minutes=30)),
        permit("O4", at(1, 0), status="active", end=NOW + timedelta(minutes=31)),  # not yet due
        permit("O5", at(1, 0), status="closed", end=NOW - timedelta(minutes=90)),  # closed
        permit("O6", at(1, 0), status="approved", end=NOW - timedelta(minutes=90)),  # never started
        permit("O7", at(1, 0), status="active", end=NOW, site="S2"),
    ]
    top = overdue_top(permits_frame(open_work, RULES), RULES, NOW)
    assert top[["site", "rank", "permit_id", "minutes_to_end"]].values.tolist() == [
        ["S1", 1, "O2", -60.0], ["S1", 2, "O1", 20.0], ["S1", 3, "O3", 30.0], ["S2", 1, "O7", 0.0],
    ]
    one = overdue_top(permits_frame(open_work, RULES), RULES.model_copy(update={"overdue_top": 1}), NOW)
    assert one["permit_id"].tolist() == ["O2", "O7"]


def test_similar_work_within_72_hours_shows_six_months_of_the_area():
    q1 = permit("Q1", at(1, 0), start=at(1, 0), status="active")
    q2 = permit("Q2", at(1, 0), start=at(3, 23))  # 71 h after Q1
    q3 = permit("Q3", at(1, 0, month=8), start=at(1, 0, month=8), status="closed", result="incident")
    q4 = permit("Q4", at(1, 0, month=5), start=at(1, 0, month=5), status="closed", result="completed")  # over 6 months
    q5 = permit("Q5", at(1, 0), start=at(1, 1), permit_type="lifting")  # another type
    q6 = permit("Q6", at(1, 0), start=at(1, 2), status="cancelled")  # no work, no neighbour
    q7 = permit("Q7", at(1, 0), start=at(1, 3), area="B")  # another area
    found = similar_work([q1, q2, q3, q4, q5, q6, q7], q2, at(2, 0), RULES)
    assert found is not None and found.nearby == ("Q1",)
    assert [h.permit_id for h in found.history] == ["Q6", "Q1", "Q3"]
    assert found.results == {"incident": 1, "open": 2} and found.incidents == ("Q3",)
    assert found.as_dict()["history"][2] == {"permit_id": "Q3", "planned_start": "2026-08-01T00:00:00+00:00", "status": "closed", "result": "incident"}
    # Exactly 72 hours apart is not within 72 hours; a cancelled neighbour is none.
    assert similar_work([q1, permit("Q8", at(1, 0), start=at(4, 0))], q1, at(2, 0), RULES) is None
    assert similar_work([q6, q2], q2, at(2, 0)) is None


def _similar_by_scan(permits, p, now, rules):
    """The definition, by a plain scan of every permit: what the indexed search must equal."""
    same = [o for o in permits if o.permit_id != p.permit_id and (o.site, o.area, o.permit_type) == (p.site, p.area, p.permit_type)]
    nearby = sorted(o.permit_id for o in same if o.status != "cancelled" and abs(o.planned_start - p.planned_start) < rules.similar_work_gap)
    if not nearby:
        return None
    since = now - timedelta(days=183)  # six months before 2 Dec 2026 is 2 Jun; no start falls between
    history = sorted((o for o in same if since <= o.planned_start <= now), key=lambda o: (o.planned_start, o.permit_id), reverse=True)
    return nearby, [o.permit_id for o in history]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("AB"), st.sampled_from(["hot_work", "lifting"]), st.sampled_from([-200, -199, -3, -1, 0, 1, 3]),
                          st.sampled_from([0, 24, 48, 71, 72, 73]), st.sampled_from(["approved", "active", "cancelled", "closed"])),
                min_size=1, max_size=30))
def test_similar_work_alerts_equal_a_scan_of_every_permit(specs):
    """Bisection within each kind of work finds what a scan finds, at the gap's and the window's edges too."""
    now = at(2, 12)
    permits = [
        permit(f"P{n:02d}", now, area=area, permit_type=kind, status=status,
               start=now + timedelta(days=days) + timedelta(hours=hours) if days != -200 else now - timedelta(days=183))
        for n, (area, kind, days, hours, status) in enumerate(specs)
    ]
    found = {f.permit_id: (list(f.nearby), [h.permit_id for h in f.history]) for f in similar_work_alerts(permits, now, RULES)}
    expected = {p.permit_id: r for p in permits if p.status in ("approved", "active") if (r := _similar_by_scan(permits, p, now, RULES))}
    assert found == expected


def test_hazard_closure_per_site_and_equipment_area():
    def order(record_id, device, kind, reported, completed=None):
        return MaintenanceRecord(record_id=record_id, site="S1", device_id=device, kind=kind, status="completed",
                                 reported_at=reported, completed_at=completed, updated_at=at(2, 0))

    records = [
        order("R1", "D1", "corrective", at(1, 0), at(1, 10)),
        order("R2", "D1", "emergency", at(1, 0), at(1, 4)),
        order("R3", "D1", "preventive", at(1, 0), at(1, 20)),  # not a hazard
        order("R4", "D2", "corrective", at(1, 0)),  # still open
        order("R5", "D3", "corrective", at(1, 0), at(1, 2)),  # equipment not in the EAM
    ]
    equipment = {("S1", d): Equipment(device_id=d, site="S1", name=d, area="A", status="operating") for d in ("D1", "D2")}
    table = hazard_closure(records, equipment)
    assert table.values.tolist() == [["S1", "(unknown)", 1, 0, 2.0, 2.0, 2.0], ["S1", "A", 2, 1, 7.0, 9.4, 10.0]]


def test_gate_kpis_blocks_lags_lifted_and_too_late():
    p = [permit("G1", at(1, 0), approve=90, permit_type="work_at_height"), permit("G2", at(1, 0)), permit("G3", at(1, 0))]

    def decided(permit_id, decision, when, *reasons):
        return GateDecision(permit_id=permit_id, decision=decision, reasons=reasons, rule_version="r", evaluated_at=when)

    def reason(code, work_order=None):
        return Reason(code=code, message=code, device_id="D1", evidence={"work_order": work_order} if work_order else {})

    trail = [
        decided("G1", "allow", at(1, 0, 30)),
        decided("G2", "block", at(1, 1), reason("ISOLATION_NOT_RELEASED", "W2")),
        decided("G1", "block", at(1, 2), reason("OPEN_WORK_ORDER", "W1")),
        decided("G3", "block", at(1, 2), reason("NO_DEVICE_LINKED")),
        decided("G2", "allow", at(1, 3)),
        decided("G1", "block", at(1, 2, 5), reason("OPEN_WORK_ORDER", "W1")),
        decided("X9", "block", at(1, 2), reason("NO_DEVICE_LINKED")),  # another site's permit
    ]
    records = {
        ("S1", w): MaintenanceRecord(record_id=w, site="S1", device_id="D1", kind="corrective", status="approved", updated_at=t)
        for w, t in (("W1", at(1, 1)), ("W2", at(1, 0, 50)))
    }
    holds = {"G1": ("block", at(1, 2, 1)), "G2": ("allow", at(1, 3, 1)), "G3": ("block", at(1, 2, 1))}
    kpis = gate_kpis(p, trail, holds, records)
    assert kpis.blocks_by_reason.values.tolist() == [["S1", "NO_DEVICE_LINKED", 1], ["S1", "OPEN_WORK_ORDER", 1]]
    # W1 changed at 01:00; G1's current block was first decided at 02:00, its hold written at 02:01.
    assert kpis.block_lags[["permit_id", "to_decision_min", "to_hold_min"]].values.tolist() == [["G1", 60.0, 61.0]]
    assert kpis.holds_lifted.values.tolist() == [["S1", 1]]
    # G1 was approved at 01:30: after W1 changed, before its hold reached the PTW.
    assert kpis.too_late["permit_id"].tolist() == ["G1"]
    assert kpis.summary() == {"blocked_permits": 2, "median_min_to_decision": 60.0, "median_min_to_hold": 61.0,
                              "max_min_to_hold": 61.0, "holds_lifted": 1, "too_late": 1}
    on_time = gate_kpis([permit("G1", at(1, 0), approve=200)], trail, holds, records)
    assert on_time.too_late.empty
