from datetime import datetime, timedelta, timezone

import pytest

from hub.logic.clearance import SiteEam, build_profiles
from hub.logic.gate import decide, decide_all, decision_fingerprint, invalid_permit_decision
from hub.logic.rules import GateRules, load_gate_rules
from hub.model import Equipment, MaintenanceRecord, Permit
from hub.yamlfile import ConfigError

UTC = timezone.utc
START = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
END = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
RULES = GateRules(version="gate-test", max_eam_data_age=timedelta(hours=24))


def permit(permit_id="PTW-NJ-2026-0001", devices=("P-101",), permit_type="work_at_height", status="approved", **kw):
    fields = dict(
        permit_id=permit_id,
        permit_type=permit_type,
        risk_level="orange",
        site="NJ01",
        area="裂解车间",
        device_ids=tuple(devices),
        applicant="张伟",
        planned_start=START,
        planned_end=END,
        status=status,
        submitted_at=NOW - 2 * HOUR,
        updated_at=NOW - HOUR,
    )
    return Permit(**{**fields, **kw})


def equipment(device):
    return Equipment(device_id=device, site="NJ01", name=device, status="operating")


def work_order(record_id, device, start=START, end=END):
    return MaintenanceRecord(
        record_id=record_id,
        site="NJ01",
        device_id=device,
        kind="corrective",
        status="approved",
        window_start=start,
        window_end=end,
        updated_at=NOW,
    )


def profiles(devices=("P-101", "E-202"), records=(), fetched=None, rules=RULES):
    fetched = {d: NOW - HOUR for d in devices} if fetched is None else fetched
    return build_profiles(devices, SiteEam("NJ01", {d: equipment(d) for d in devices}, records, fetched), rules, NOW)


def test_clean_permit_is_allowed():
    d = decide(permit(devices=("P-101", "E-202")), profiles(), RULES, NOW)
    assert d.decision == "allow"
    assert d.reasons == ()
    assert d.rule_version == "gate-test"
    assert d.evaluated_at == NOW
    assert d.eam_data_as_of == NOW - HOUR


def test_a_profile_fresh_when_built_is_judged_stale_when_decided_later():
    """Profiles are stored and used later (a re-gate decides against the other devices' stored
    profiles): the decision judges their data age at its own time, and names each stale device once."""
    built = profiles()  # fresh at NOW: data an hour old, max age a day
    later = NOW + 24 * HOUR
    d = decide(permit(devices=("P-101", "E-202")), built, RULES, later)
    assert d.decision == "block"
    assert [(r.code, r.device_id) for r in d.reasons] == [("EAM_DATA_STALE", "E-202"), ("EAM_DATA_STALE", "P-101")]
    # A profile that already says so is not named twice.
    stale_when_built = build_profiles(["P-101"], SiteEam("NJ01", {"P-101": equipment("P-101")}, (), {"P-101": NOW - HOUR}), RULES, later)
    again = decide(permit(devices=("P-101",)), stale_when_built, RULES, later + HOUR)
    assert [r.code for r in again.reasons] == ["EAM_DATA_STALE"]
    # And within the age, the same stored profiles still allow.
    assert decide(permit(devices=("P-101", "E-202")), built, RULES, NOW + 22 * HOUR).decision == "allow"


@pytest.mark.parametrize("status", ["approved", "in_progress"])
def test_an_open_work_order_past_its_planned_end_blocks_until_the_eam_shows_it_finished(status):
    """Planned to finish before the permit starts, the order allows the permit while that end is
    ahead; once the end has passed with the order still open, the work may still be under way."""
    planned = work_order("WO-7", "P-101", start=NOW - 2 * HOUR, end=NOW + 10 * HOUR).model_copy(update={"status": status})
    built = profiles(devices=("P-101",), records=[planned])
    assert decide(permit(), built, RULES, NOW).decision == "allow"
    assert decide(permit(), built, RULES, NOW + 10 * HOUR - timedelta(seconds=1)).decision == "allow"  # the end is ahead
    late = decide(permit(), built, RULES, NOW + 10 * HOUR)
    assert late.decision == "block"
    [reason] = late.reasons
    assert (reason.code, reason.device_id, reason.evidence["work_order"]) == ("OPEN_WORK_ORDER", "P-101", "WO-7")
    assert reason.evidence["planned_end_passed"] == "2026-11-30T22:00:00Z"
    assert "does not show the order finished" in reason.message
    # A permit long after the planned end is blocked too: the order has no end until it is finished.
    assert decide(permit(planned_start=START + 72 * HOUR, planned_end=END + 72 * HOUR), built, RULES, NOW + 11 * HOUR).decision == "block"
    finished = planned.model_copy(update={"status": "completed"})
    assert decide(permit(), profiles(devices=("P-101",), records=[finished]), RULES, NOW + 11 * HOUR).decision == "allow"


def test_only_the_bad_device_is_named():
    d = decide(
        permit(devices=("P-101", "E-202")), profiles(records=[work_order("WO-1001", "E-202")]), RULES, NOW
    )
    assert d.decision == "block"
    assert [(r.code, r.device_id, r.evidence["work_order"]) for r in d.reasons] == [
        ("OPEN_WORK_ORDER", "E-202", "WO-1001")
    ]


def test_work_order_ending_at_permit_start_allows():
    records = [work_order("WO-1", "P-101", start=START - HOUR, end=START)]
    assert decide(permit(), profiles(records=records), RULES, NOW).decision == "allow"


def test_work_order_overlapping_by_one_second_blocks():
    records = [work_order("WO-1", "P-101", start=END - timedelta(seconds=1), end=END + HOUR)]
    assert decide(permit(), profiles(records=records), RULES, NOW).decision == "block"


def test_oldest_data_as_of_is_reported():
    p = profiles(fetched={"P-101": NOW - 2 * HOUR, "E-202": NOW - 5 * HOUR})
    d = decide(permit(devices=("P-101", "E-202")), p, RULES, NOW)
    assert d.eam_data_as_of == NOW - 5 * HOUR


def test_no_device_linked_blocks():
    d = decide(permit(devices=()), profiles(), RULES, NOW)
    assert d.decision == "block"
    assert [(r.code, r.device_id) for r in d.reasons] == [("NO_DEVICE_LINKED", None)]
    assert d.eam_data_as_of is None


def test_device_missing_from_profiles_is_unknown():
    d = decide(permit(devices=("P-101", "X-999")), profiles(devices=("P-101",)), RULES, NOW)
    assert d.decision == "block"
    assert [(r.code, r.device_id) for r in d.reasons] == [("DEVICE_UNKNOWN", "X-999")]


def test_reasons_are_deduplicated():
    d = decide(permit(devices=("X-999", "X-999")), {}, RULES, NOW)
    assert [(r.code, r.device_id) for r in d.reasons] == [("DEVICE_UNKNOWN", "X-999")]


def test_reasons_are_ordered_by_code_then_device():
    p = profiles(records=[work_order("WO-1", "P-101"), work_order("WO-2", "E-202")], fetched={"P-101": NOW})
    d = decide(permit(devices=("P-101", "E-202", "X-999")), p, RULES, NOW)
    assert [(r.code, r.device_id) for r in d.reasons] == [
        ("DEVICE_UNKNOWN", "X-999"),
        ("EAM_UNAVAILABLE", "E-202"),
        ("OPEN_WORK_ORDER", "E-202"),
        ("OPEN_WORK_ORDER", "P-101"),
    ]


def test_empty_permit_window_fails_closed():
    d = decide(permit(planned_end=START), profiles(), RULES, NOW)
    assert d.decision == "block"
    assert [r.code for r in d.reasons] == ["PERMIT_RECORD_INVALID"]


@pytest.mark.parametrize("permit_type", ["hot_work", "confined_space", "lifting", "temporary_power"])
def test_types_not_gated_get_no_decision(permit_type):
    assert decide(permit(permit_type=permit_type, devices=()), profiles(), RULES, NOW) is None


@pytest.mark.parametrize("status", ["suspended", "closed", "cancelled"])
def test_statuses_not_gated_get_no_decision(status):
    assert decide(permit(status=status, devices=()), profiles(), RULES, NOW) is None


@pytest.mark.parametrize("status", ["submitted", "approved", "active"])
def test_live_statuses_are_gated(status):
    assert decide(permit(status=status), profiles(), RULES, NOW).decision == "allow"


def test_gating_lifting_by_rule_config_changes_the_outcome():
    lifting = permit(permit_type="lifting")
    p = profiles(records=[work_order("WO-7", "P-101")])
    assert decide(lifting, p, RULES, NOW) is None
    rules = RULES.model_copy(update={"gated_permit_types": frozenset({"work_at_height", "lifting"})})
    assert decide(lifting, p, rules, NOW).decision == "block"


def test_decide_all_keeps_gated_permits_in_order():
    permits = [
        permit("PTW-3", devices=("X-999",)),
        permit("PTW-1", permit_type="hot_work"),
        permit("PTW-2"),
    ]
    decisions = decide_all(permits, profiles(), RULES, NOW)
    assert [(d.permit_id, d.decision) for d in decisions] == [("PTW-3", "block"), ("PTW-2", "allow")]


def test_invalid_permit_record_is_blocked():
    d = invalid_permit_decision("PTW-NJ-2026-0099", "planned_start: missing", RULES, NOW)
    assert d.decision == "block"
    assert d.rule_version == "gate-test" and d.evaluated_at == NOW
    [reason] = d.reasons
    assert reason.code == "PERMIT_RECORD_INVALID"
    assert reason.evidence == {"problem": "planned_start: missing"}
    assert "PTW-NJ-2026-0099" in reason.message


def test_fingerprint_ignores_evaluation_time_and_data_age():
    records = [work_order("WO-1", "P-101")]
    first = decide(permit(), profiles(records=records), RULES, NOW)
    later = decide(permit(), profiles(records=records, fetched={"P-101": NOW}), RULES, NOW + 3 * HOUR)
    assert first.evaluated_at != later.evaluated_at and first.eam_data_as_of != later.eam_data_as_of
    assert decision_fingerprint(first) == decision_fingerprint(later)
    assert len(decision_fingerprint(first)) == 64


def test_fingerprint_changes_with_reasons():
    allowed = decide(permit(), profiles(), RULES, NOW)
    one = decide(permit(), profiles(records=[work_order("WO-1", "P-101")]), RULES, NOW)
    other = decide(permit(), profiles(records=[work_order("WO-2", "P-101")]), RULES, NOW)
    both = decide(permit(), profiles(records=[work_order("WO-1", "P-101"), work_order("WO-2", "P-101")]), RULES, NOW)
    prints = {decision_fingerprint(d) for d in (allowed, one, other, both)}
    assert len(prints) == 4


def test_fingerprint_changes_with_message_and_rule_version():
    d = invalid_permit_decision("PTW-1", "bad", RULES, NOW)
    reworded = d.model_copy(update={"reasons": (d.reasons[0].model_copy(update={"message": "other"}),)})
    new_rules = d.model_copy(update={"rule_version": "gate-test-2"})
    assert len({decision_fingerprint(x) for x in (d, reworded, new_rules)}) == 3


def test_packaged_gate_rules_load():
    rules = load_gate_rules()
    assert rules.version == "gate-2026.12-1"
    assert rules.gated_permit_types == {"work_at_height"}
    assert rules.gated_statuses == {"submitted", "approved", "active"}
    assert rules.max_eam_data_age == timedelta(minutes=15)
    assert rules.counted_work_order_kinds == {"preventive", "corrective", "inspection", "overhaul"}


def test_defaults_apply_when_omitted(tmp_path):
    path = tmp_path / "gate.yaml"
    path.write_text("version: g-1\nmax_eam_data_age: PT2H\n", encoding="utf-8")
    rules = load_gate_rules(path)
    assert rules.max_eam_data_age == timedelta(hours=2)
    assert rules.gated_permit_types == {"work_at_height"}


def test_broken_gate_rules_point_at_file_line_column(tmp_path):
    path = tmp_path / "gate.yaml"
    path.write_text(
        "version: g-1\ngated_permit_types:\n  - work_at_height\n  - scaffolding\nmax_eam_data_age: 24 hours\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as exc:
        load_gate_rules(path)
    lines = str(exc.value).splitlines()
    assert lines[0].startswith(f"{path}:4:5: gated_permit_types[1]: ")
    assert "scaffolding" in lines[0]
    assert lines[1].startswith(f"{path}:5:19: max_eam_data_age: ")


def test_non_positive_max_age_is_refused(tmp_path):
    path = tmp_path / "gate.yaml"
    path.write_text("version: g-1\nmax_eam_data_age: PT0S\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"gate.yaml:2:\d+: max_eam_data_age: .*positive"):
        load_gate_rules(path)


# --------------------------------------------------------------------------- sites, switched-off gate, rule changes


def test_a_permit_of_an_unconfigured_site_blocks_for_that_alone():
    d = decide(permit(site="SH03"), {}, RULES, NOW, site_configured=False)
    assert d.decision == "block"
    [reason] = d.reasons
    assert reason.code == "SITE_NOT_CONFIGURED" and reason.evidence == {"site": "SH03"}
    assert decide(permit(site="SH03", permit_type="hot_work"), {}, RULES, NOW, site_configured=False) is None


def test_a_switched_off_gate_allows_and_says_so_on_every_decision():
    off = RULES.model_copy(update={"gate_disabled_reason": "commissioning of unit 3"})
    d = decide(permit(devices=()), {}, off, NOW)
    assert d.decision == "allow"
    [reason] = d.reasons
    assert reason.code == "GATE_DISABLED" and "commissioning of unit 3" in reason.message
    assert invalid_permit_decision("PTW-X", "bad", off, NOW).reasons[0].code == "GATE_DISABLED"


def test_a_rule_change_that_lifts_blocks_is_named():
    from hub.logic.gate import unblocked_by

    old = decide(permit(devices=("P-101",)), {}, RULES, NOW)  # no profile: DEVICE_UNKNOWN
    newer = RULES.model_copy(update={"version": "gate-test-2"})
    allowed = decide(permit(devices=("P-101",)), profiles(("P-101",)), newer, NOW)
    same_version = decide(permit(devices=("P-101",)), profiles(("P-101",)), RULES, NOW)
    assert old.decision == "block" and allowed.decision == "allow"
    assert unblocked_by([old], [allowed]) == ["PTW-NJ-2026-0001"]
    assert unblocked_by([old], [same_version]) == []  # new data, not new rules


def test_quarantined_permits_block_unless_readably_not_gated():
    from hub.logic.gate import invalid_permit_decisions

    rows = [
        {"source_key": "A", "reason": "bad window", "partial": {"permit_type": "work_at_height"}},
        {"source_key": "B", "reason": "bad type", "partial": {}},
        {"source_key": "C", "reason": "bad", "partial": {"permit_type": "hot_work"}},
        {"source_key": "D", "reason": "bad", "partial": {"status": "closed"}},
    ]
    decided = {d.permit_id: d for d in invalid_permit_decisions(rows, RULES, NOW)}
    assert sorted(decided) == ["A", "B"]
    assert all(d.decision == "block" and d.reasons[0].code == "PERMIT_RECORD_INVALID" for d in decided.values())
