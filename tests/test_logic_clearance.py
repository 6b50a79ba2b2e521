from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.logic.clearance import DeviceProfile, Hazard, SiteEam, build_profiles, reasons_for_window
from hub.logic.rules import GateRules
from hub.model import Equipment, MaintenanceRecord

UTC = timezone.utc
START = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)  # permit window [START, END)
END = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SEC = timedelta(seconds=1)
HOUR = timedelta(hours=1)
RULES = GateRules(version="gate-test", max_eam_data_age=timedelta(hours=24))


def equipment(device="P-101", status="operating", **kw):
    return Equipment(device_id=device, site="NJ01", name="feed pump", status=status, **kw)


def work_order(record_id="WO-1", device="P-101", kind="corrective", status="approved", start=None, end=None, **kw):
    return MaintenanceRecord(
        record_id=record_id,
        site="NJ01",
        device_id=device,
        kind=kind,
        status=status,
        window_start=start,
        window_end=end,
        updated_at=NOW - HOUR,
        **kw,
    )


def profile(records=(), equip=None, fetched=None, invalid=None, rules=RULES, device="P-101", now=NOW):
    equip = [equipment(device)] if equip is None else equip
    fetched = {device: NOW - HOUR} if fetched is None else fetched
    eam = SiteEam("NJ01", {e.device_id: e for e in equip}, records, fetched, invalid or {})
    profiles = build_profiles([device], eam, rules, now)
    return profiles[device]


def codes(p, start=START, end=END):
    return [r.code for r in reasons_for_window(p, start, end)]


def test_clean_device_has_no_hazards():
    p = profile()
    assert p == DeviceProfile(device_id="P-101", known=True, hazards=(), data_as_of=NOW - HOUR)
    assert codes(p) == []


@pytest.mark.parametrize(
    ("wo_start", "wo_end", "blocked"),
    [
        (START - HOUR, START, False),  # ends exactly when the permit starts
        (END, END + HOUR, False),  # starts exactly when the permit ends
        (START - HOUR, START + SEC, True),  # one second of overlap at the start
        (END - SEC, END + HOUR, True),  # one second of overlap at the end
        (START + HOUR, START + 2 * HOUR, True),  # inside
        (START - HOUR, END + HOUR, True),  # covering
        (START, END, True),  # identical
    ],
)
def test_work_order_window_boundaries(wo_start, wo_end, blocked):
    p = profile([work_order(start=wo_start, end=wo_end)])
    assert codes(p) == (["OPEN_WORK_ORDER"] if blocked else [])


@pytest.mark.parametrize(
    ("wo_start", "wo_end", "blocked"),
    [
        (None, START, False),  # open start, ended when the permit starts
        (None, START + SEC, True),
        (END, None, False),  # open end, starts when the permit ends
        (END - SEC, None, True),
        (None, None, True),  # never scheduled: applies at any time
    ],
)
def test_open_ended_work_order_windows(wo_start, wo_end, blocked):
    p = profile([work_order(start=wo_start, end=wo_end)])
    assert codes(p) == (["OPEN_WORK_ORDER"] if blocked else [])


def test_inverted_work_order_window_fails_closed():
    p = profile([work_order(start=END + 5 * HOUR, end=END + 2 * HOUR)])
    [reason] = reasons_for_window(p, START, END)
    assert reason.code == "OPEN_WORK_ORDER"
    assert "inverted" in reason.message


def test_open_work_order_names_its_evidence():
    p = profile([work_order("WO-1001", status="in_progress", start=START - HOUR, end=START + HOUR)])
    [reason] = reasons_for_window(p, START, END)
    assert reason.device_id == "P-101"
    assert reason.evidence == {
        "work_order": "WO-1001",
        "kind": "corrective",
        "status": "in_progress",
        "window_start": "2026-11-30T23:00:00Z",
        "window_end": "2026-12-01T01:00:00Z",
    }
    assert "WO-1001" in reason.message and "P-101" in reason.message


@pytest.mark.parametrize("status", ["completed", "closed", "cancelled"])
def test_finished_work_orders_do_not_count(status):
    assert codes(profile([work_order(status=status, start=START, end=END)])) == []


@pytest.mark.parametrize("status", ["planned", "approved", "in_progress"])
def test_unfinished_work_orders_count(status):
    assert codes(profile([work_order(status=status, start=START, end=END)])) == ["OPEN_WORK_ORDER"]


def test_kinds_not_counted_by_rules_are_ignored():
    rules = RULES.model_copy(update={"counted_work_order_kinds": frozenset({"corrective"})})
    records = [work_order("WO-1", kind="preventive", start=START, end=END)]
    assert codes(profile(records, rules=rules)) == []
    assert codes(profile(records)) == ["OPEN_WORK_ORDER"]


@pytest.mark.parametrize(
    ("status", "isolation", "expected"),
    [
        ("completed", "applied", ["ISOLATION_NOT_RELEASED"]),
        ("closed", "applied", ["ISOLATION_NOT_RELEASED"]),
        ("cancelled", "applied", ["ISOLATION_NOT_RELEASED"]),  # contradictory: the lock is the fact
        ("in_progress", "applied", ["ISOLATION_NOT_RELEASED"]),
        ("cancelled", "released", []),
        ("completed", "released", []),
        ("completed", "none", []),
    ],
)
def test_isolation_state(status, isolation, expected):
    # The work window is long past: isolation is physical and stays until released.
    records = [work_order(status=status, isolation=isolation, start=START - 48 * HOUR, end=START - 40 * HOUR)]
    p = profile(records)
    assert codes(p) == expected
    if expected:
        [reason] = reasons_for_window(p, START, END)
        assert reason.evidence["isolation"] == "applied"
        assert reason.evidence["work_order"] == "WO-1"


def test_isolation_counts_even_for_kinds_not_counted():
    rules = RULES.model_copy(update={"counted_work_order_kinds": frozenset()})
    records = [work_order(kind="overhaul", status="in_progress", isolation="applied", start=START, end=END)]
    assert codes(profile(records, rules=rules)) == ["ISOLATION_NOT_RELEASED"]


@pytest.mark.parametrize(
    ("due", "overdue"),
    [
        (END, False),  # due exactly when the work ends
        (END - SEC, True),
        (START, True),
        (NOW - 48 * HOUR, True),  # already overdue
        (END + HOUR, False),
    ],
)
def test_inspection_due_against_planned_end(due, overdue):
    p = profile(equip=[equipment(next_inspection_due=due)])
    assert codes(p) == (["INSPECTION_OVERDUE"] if overdue else [])
    if overdue:
        assert reasons_for_window(p, START, END)[0].evidence == {
            "next_inspection_due": due.isoformat().replace("+00:00", "Z")
        }


@pytest.mark.parametrize(("age", "stale"), [(timedelta(hours=24), False), (timedelta(hours=24) + SEC, True)])
def test_stale_at_the_threshold(age, stale):
    p = profile(fetched={"P-101": NOW - age})
    assert p.data_as_of == NOW - age
    assert codes(p) == (["EAM_DATA_STALE"] if stale else [])


def test_equipment_data_as_of_older_than_fetch_is_what_counts():
    old = NOW - timedelta(days=3)
    p = profile(equip=[equipment(data_as_of=old)], fetched={"P-101": NOW})
    assert p.data_as_of == old
    [reason] = reasons_for_window(p, START, END)
    assert reason.code == "EAM_DATA_STALE"
    assert reason.evidence["data_as_of"] == "2026-11-27T12:00:00Z"


def test_stale_evidence_does_not_depend_on_now():
    """Otherwise every run would change the decision fingerprint and rewrite the hold."""
    fetched = {"P-101": NOW - 30 * HOUR}
    a = reasons_for_window(profile(fetched=fetched), START, END)
    b = reasons_for_window(profile(fetched=fetched, now=NOW + 5 * HOUR), START, END)
    assert a == b and a[0].code == "EAM_DATA_STALE"


def test_device_never_reached_is_eam_unavailable_not_unknown():
    p = profile(equip=[], fetched={})
    assert not p.known and p.data_as_of is None
    assert codes(p) == ["EAM_UNAVAILABLE"]


def test_device_the_eam_did_not_return_is_unknown():
    p = profile(equip=[])
    assert not p.known
    assert codes(p) == ["DEVICE_UNKNOWN"]


def test_stored_equipment_without_fetch_is_still_unavailable():
    p = profile(equip=[equipment(next_inspection_due=START)], fetched={})
    assert p.known
    assert codes(p) == ["EAM_UNAVAILABLE", "INSPECTION_OVERDUE"]


def test_quarantined_records_block_their_device_only():
    invalid = {"P-101": ["WO-9 status 'WEIRD' is not a known status"], "E-202": ["other"]}
    p = profile(invalid=invalid)
    [reason] = reasons_for_window(p, START, END)
    assert reason.code == "EAM_RECORD_INVALID"
    assert reason.device_id == "P-101"
    assert reason.evidence == {"problem": "WO-9 status 'WEIRD' is not a known status"}
    assert "WO-9" in reason.message


def test_records_of_other_devices_are_ignored():
    p = profile([work_order(device="E-202", start=START, end=END)])
    assert codes(p) == []


def test_profiles_for_several_devices():
    eam = SiteEam(
        "NJ01",
        {"P-101": equipment("P-101"), "E-202": equipment("E-202")},
        [work_order(device="E-202", start=START, end=END)],
        {"P-101": NOW, "E-202": NOW},
    )
    profiles = build_profiles(["P-101", "E-202", "P-101"], eam, RULES, NOW)
    assert list(profiles) == ["P-101", "E-202"]
    assert codes(profiles["P-101"]) == []
    assert codes(profiles["E-202"]) == ["OPEN_WORK_ORDER"]


def test_reasons_are_ordered_whatever_the_record_order():
    records = [
        work_order("WO-3", start=START, end=END, isolation="applied"),
        work_order("WO-1", start=START, end=END),
        work_order("WO-2", start=None, end=None),
    ]
    forward = reasons_for_window(profile(records), START, END)
    backward = reasons_for_window(profile(list(reversed(records))), START, END)
    assert forward == backward
    # By code, device, then sorted evidence items: WO-2 has no window keys, and
    # ("window_end", ...) sorts before ("work_order", ...).
    assert [(r.code, r.evidence["work_order"]) for r in forward] == [
        ("ISOLATION_NOT_RELEASED", "WO-3"),
        ("OPEN_WORK_ORDER", "WO-1"),
        ("OPEN_WORK_ORDER", "WO-3"),
        ("OPEN_WORK_ORDER", "WO-2"),
    ]


BASE = datetime(2026, 12, 1, tzinfo=UTC)
minutes = st.integers(min_value=0, max_value=40)
bound = st.one_of(st.none(), minutes)


def at(m):
    return None if m is None else BASE + timedelta(minutes=m)


@given(hazards=st.lists(st.tuples(bound, bound), max_size=6), window=st.tuples(minutes, minutes))
def test_reasons_for_window_matches_brute_force(hazards, window):
    a, b = sorted(window)
    profile_ = DeviceProfile(
        device_id="D",
        known=True,
        hazards=tuple(
            Hazard(code="OPEN_WORK_ORDER", device_id="D", message=f"h{i}", evidence={"i": str(i)}, start=at(s), end=at(e))
            for i, (s, e) in enumerate(hazards)
        ),
    )
    got = {r.evidence["i"] for r in reasons_for_window(profile_, at(a), at(b))}

    # Endpoints are whole minutes, so checking every whole minute of [a, b) is exact.
    def covers(s, e, t):
        return (s is None or s <= t) and (e is None or t < e)

    expected = {str(i) for i, (s, e) in enumerate(hazards) if any(covers(s, e, t) for t in range(a, b))}
    assert got == expected


def test_profile_survives_a_json_round_trip():
    """The clearance asset stores profiles as JSON and the gate reads them back."""
    p = profile(
        [work_order(start=START, end=None, isolation="applied")],
        equip=[equipment(next_inspection_due=START)],
        invalid={"P-101": ["bad"]},
    )
    again = DeviceProfile.model_validate_json(p.model_dump_json())
    assert again == p
    assert reasons_for_window(again, START, END) == reasons_for_window(p, START, END)


def test_a_cancelled_order_still_holding_a_lock_says_so():
    records = [work_order(status="cancelled", isolation="applied", start=START + 100 * HOUR, end=START + 200 * HOUR)]
    [reason] = reasons_for_window(profile(records), START, END)
    assert reason.code == "ISOLATION_NOT_RELEASED"
    assert "cancelled, isolation still applied" in reason.message
    assert reason.evidence["work_order"] == "WO-1" and reason.evidence["status"] == "cancelled"


@pytest.mark.parametrize(
    ("status", "in_service", "expected"),
    [
        ("operating", None, []),
        ("not_ready", None, ["EQUIPMENT_NOT_IN_SERVICE"]),
        ("decommissioned", None, ["EQUIPMENT_NOT_IN_SERVICE"]),
        ("not_ready", frozenset({"operating", "not_ready"}), []),
        ("operating", frozenset({"standby"}), ["EQUIPMENT_NOT_IN_SERVICE"]),
    ],
)
def test_equipment_status_must_be_in_service(status, in_service, expected):
    rules = RULES if in_service is None else RULES.model_copy(update={"equipment_statuses_in_service": in_service})
    p = profile(equip=[equipment(status=status)], rules=rules)
    assert codes(p) == expected
    if expected:
        [reason] = reasons_for_window(p, START, END)
        assert reason.evidence == {"site": "NJ01", "equipment_status": status}


def test_a_device_unknown_at_the_site_names_the_site():
    p = profile(equip=[])
    [reason] = reasons_for_window(p, START, END)
    assert reason.code == "DEVICE_UNKNOWN" and reason.evidence == {"site": "NJ01"}
    assert "at site NJ01" in reason.message


def test_records_of_another_site_never_count():
    """A work order of the same device number at another site is another device's."""
    other = MaintenanceRecord(
        record_id="WO-9", site="HZ02", device_id="P-101", kind="corrective", status="in_progress",
        window_start=START, window_end=END, isolation="applied", updated_at=NOW,
    )
    assert codes(profile([other])) == []


def test_an_unreadable_equipment_record_is_invalid_not_unknown():
    p = profile(equip=[], invalid={"P-101": ["status 'UNDER REPAIR' is not a known status"]})
    assert codes(p) == ["EAM_RECORD_INVALID"]


def test_a_suspect_reply_blocks_even_a_clean_device():
    eam = SiteEam("NJ01", {"P-101": equipment()}, [], {"P-101": NOW - HOUR}, suspect={"P-101": ["reply was empty"]})
    p = build_profiles(["P-101"], eam, RULES, NOW)["P-101"]
    [reason] = reasons_for_window(p, START, END)
    assert reason.code == "EAM_REPLY_SUSPECT" and reason.evidence["problem"] == "reply was empty"


@pytest.mark.parametrize(("age", "stale"), [(timedelta(minutes=15), False), (timedelta(minutes=15, seconds=1), True)])
def test_the_shipped_data_age_limit_is_fifteen_minutes(age, stale):
    from hub.logic.rules import load_gate_rules

    rules = load_gate_rules()
    p = profile(fetched={"P-101": NOW - age}, rules=rules)
    assert ("EAM_DATA_STALE" in codes(p)) is stale
