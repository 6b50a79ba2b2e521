import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from hub.logic.costs import CostError, cost_entries, message_uuid
from hub.logic.rules import load_cost_rules
from hub.model import PERMIT_TYPES, Permit
from hub.yamlfile import ConfigError

UTC = timezone.utc
CLOSED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # 17:00 in Shanghai
RULES = load_cost_rules()


def permit(permit_id="PTW-NJ-2026-0031", **kw):
    fields = dict(
        permit_id=permit_id,
        permit_type="work_at_height",
        risk_level="orange",
        site="NJ01",
        area="裂解车间",
        device_ids=("P-101",),
        applicant="张伟",
        planned_start=CLOSED - timedelta(hours=8),
        planned_end=CLOSED,
        status="closed",
        submitted_at=CLOSED - timedelta(days=1),
        closed_at=CLOSED,
        result="completed",
        work_hours=None,
        updated_at=CLOSED,
    )
    return Permit(**{**fields, **kw})


def by_line(entries):
    return {e.entry_key.rsplit("/", 1)[1]: e for e in entries}


def test_labour_line():
    entries = by_line(cost_entries(permit(work_hours=Decimal("6.5")), RULES))
    labour = entries["labour"]
    assert labour.amount == Decimal("520.00")
    assert labour.entry_key == "PTW-NJ-2026-0031/labour"
    assert labour.description == "PTW-NJ-2026-0031 安全费用 labour 6.5h × 80.00"
    assert labour.cost_center == "CC-NJ-CRK"
    assert labour.gl_account == "66020103"
    assert labour.currency == "CNY"
    assert labour.site == "NJ01"
    assert labour.posting_date == date(2026, 11, 20)


@pytest.mark.parametrize("hours", [None, Decimal("0")])
def test_no_labour_line_without_hours(hours):
    assert "labour" not in by_line(cost_entries(permit(work_hours=hours), RULES))


def test_guardian_line_from_arrival_to_close():
    arrived = CLOSED - timedelta(hours=2, minutes=30)
    guardian = by_line(cost_entries(permit(guardian="李强", guardian_arrived_at=arrived), RULES))["guardian"]
    assert guardian.amount == Decimal("150.00")
    assert guardian.description == "PTW-NJ-2026-0031 安全费用 guardian 2.5h × 60.00"


@pytest.mark.parametrize("arrived", [None, CLOSED, CLOSED + timedelta(minutes=5)])
def test_no_guardian_line_without_positive_presence(arrived):
    assert "guardian" not in by_line(cost_entries(permit(guardian_arrived_at=arrived), RULES))


@pytest.mark.parametrize(
    ("permit_type", "gas_test"), [("hot_work", True), ("confined_space", True), ("work_at_height", False)]
)
def test_gas_test_only_for_configured_types(permit_type, gas_test):
    entries = by_line(cost_entries(permit(permit_type=permit_type), RULES))
    assert ("gas_test" in entries) == gas_test
    if gas_test:
        assert entries["gas_test"].amount == Decimal("150.00")


@pytest.mark.parametrize(
    ("permit_type", "risk", "amount", "account"),
    [
        ("work_at_height", "red", "150.00", "66020103"),
        ("work_at_height", "yellow", "60.00", "66020103"),
        ("confined_space", "red", "260.00", "66020102"),
        ("hot_work", "orange", "80.00", "66020101"),
        ("lifting", "orange", "60.00", "66020104"),
        ("temporary_power", "yellow", "30.00", "66020105"),
    ],
)
def test_ppe_by_type_and_risk(permit_type, risk, amount, account):
    ppe = by_line(cost_entries(permit(permit_type=permit_type, risk_level=risk), RULES))["ppe"]
    assert ppe.amount == Decimal(amount)
    assert ppe.gl_account == account


def test_all_lines_of_one_permit():
    p = permit(
        permit_type="hot_work",
        risk_level="red",
        work_hours=Decimal("4"),
        guardian_arrived_at=CLOSED - timedelta(hours=4),
    )
    entries = cost_entries(p, RULES)
    assert [(e.entry_key, e.amount) for e in entries] == [
        ("PTW-NJ-2026-0031/labour", Decimal("320.00")),
        ("PTW-NJ-2026-0031/guardian", Decimal("240.00")),
        ("PTW-NJ-2026-0031/gas_test", Decimal("150.00")),
        ("PTW-NJ-2026-0031/ppe", Decimal("120.00")),
    ]
    assert {e.gl_account for e in entries} == {"66020101"}


def test_amounts_round_half_up_to_cents():
    rules = RULES.model_copy(
        update={"labour_rate_per_hour": Decimal("1.00"), "guardian_rate_per_hour": Decimal("55.55")}
    )
    p = permit(work_hours=Decimal("0.125"), guardian_arrived_at=CLOSED - timedelta(minutes=10))
    entries = by_line(cost_entries(p, rules))
    assert entries["labour"].amount == Decimal("0.13")  # banker's rounding would give 0.12
    assert entries["guardian"].amount == Decimal("9.26")  # 55.55 / 6 = 9.2583…
    assert entries["guardian"].description.endswith("guardian 0.17h × 55.55")
    assert all(e.amount.as_tuple().exponent == -2 for e in entries.values())


def test_lines_rounding_to_zero_are_left_out():
    """The ERP rejects non-positive amounts; a zero rate turns a line off."""
    no_ppe = RULES.ppe["work_at_height"].model_copy(update={"orange": Decimal("0")})
    rules = RULES.model_copy(update={"ppe": {**RULES.ppe, "work_at_height": no_ppe}})
    assert by_line(cost_entries(permit(work_hours=Decimal("0.0001")), rules))["labour"].amount == Decimal("0.01")
    assert cost_entries(permit(work_hours=Decimal("0.00005")), rules) == []  # 0.004 rounds to 0.00


def test_posting_date_is_the_plant_local_date():
    late = datetime(2026, 11, 30, 17, 30, tzinfo=UTC)  # 01:30 on 1 December in Shanghai
    [entry] = cost_entries(permit(closed_at=late), RULES)
    assert entry.posting_date == date(2026, 12, 1)
    [entry] = cost_entries(permit(closed_at=late - timedelta(hours=1, minutes=31)), RULES)  # 23:59 local
    assert entry.posting_date == date(2026, 11, 30)


def test_entries_are_stable_across_runs():
    p = permit(work_hours=Decimal("6.5"), guardian_arrived_at=CLOSED - timedelta(hours=1))
    assert cost_entries(p, RULES) == cost_entries(p, load_cost_rules())
    assert [e.entry_key for e in cost_entries(p, RULES)] == [
        "PTW-NJ-2026-0031/labour",
        "PTW-NJ-2026-0031/guardian",
        "PTW-NJ-2026-0031/ppe",
    ]


@pytest.mark.parametrize("status", ["cancelled", "active", "suspended", "submitted", "approved"])
def test_only_closed_permits_cost(status):
    assert cost_entries(permit(status=status, work_hours=Decimal("3")), RULES) == []


def test_unknown_area_names_permit_and_field():
    with pytest.raises(CostError) as exc:
        cost_entries(permit(area="未知车间"), RULES)
    assert str(exc.value) == (
        "permit PTW-NJ-2026-0031: area '未知车间' at site NJ01 has no cost center in costs.yaml"
    )
    assert isinstance(exc.value, ValueError)


def test_unknown_site_is_a_cost_error():
    with pytest.raises(CostError, match="site SH03"):
        cost_entries(permit(site="SH03"), RULES)


def test_missing_closed_at_is_a_cost_error():
    with pytest.raises(CostError, match=r"permit PTW-NJ-2026-0031: closed_at is missing"):
        cost_entries(permit(closed_at=None), RULES)


def test_message_uuid_is_fixed_per_entry_key():
    key = "PTW-NJ-2026-0007/labour"
    # Pinned: a changed namespace would make the ERP post every entry a second time.
    assert message_uuid(key) == uuid.UUID("1f4dae8c-7457-5866-b72a-900da72ba29b")
    assert message_uuid(key) == message_uuid(key)
    assert message_uuid(key) != message_uuid("PTW-NJ-2026-0007/ppe")


def test_packaged_cost_rules_cover_the_fixture_plants():
    assert RULES.currency == "CNY"
    assert str(RULES.plant_timezone) == "Asia/Shanghai"
    assert RULES.cost_centers == {
        "NJ01": {"裂解车间": "CC-NJ-CRK", "聚合车间": "CC-NJ-POL", "罐区": "CC-NJ-TNK", "公用工程": "CC-NJ-UTL"},
        "HZ02": {"芳烃车间": "CC-HZ-ARO", "储运车间": "CC-HZ-STO", "动力车间": "CC-HZ-PWR"},
    }
    assert RULES.gl_accounts == {
        "hot_work": "66020101",
        "confined_space": "66020102",
        "work_at_height": "66020103",
        "lifting": "66020104",
        "temporary_power": "66020105",
    }
    assert set(RULES.ppe) == set(PERMIT_TYPES)


def test_broken_cost_rules_point_at_file_line_column(tmp_path):
    from hub.logic.rules import RULES_DIR

    text = (RULES_DIR / "costs.yaml").read_text(encoding="utf-8")
    text = text.replace('labour_rate_per_hour: "80.00"', 'labour_rate_per_hour: "-80.00"')
    text = text.replace('  lifting:         {red: "90.00", orange: "60.00", yellow: "40.00"}\n', "")
    path = tmp_path / "costs.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_cost_rules(path)
    lines = {p.field: p for p in exc.value.problems}
    assert set(lines) == {"labour_rate_per_hour", "ppe"}
    labour_line = text.splitlines().index('labour_rate_per_hour: "-80.00"') + 1
    assert str(lines["labour_rate_per_hour"]).startswith(f"{path}:{labour_line}:23: labour_rate_per_hour: ")
    assert "missing: lifting" in lines["ppe"].message
