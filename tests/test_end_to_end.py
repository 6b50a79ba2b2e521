"""The README's main job (`hub demo`), end to end, run twice on one store.

Expectations are derived from the fixture plant (see fixtures/README.md), not from
the hub: which permits the scenarios block, and which cost lines the closed permits
must produce.
"""

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from hub.demo import run_demo
from mock_systems.servers import start_systems

REPO = Path(__file__).parents[1]
FIXTURES = REPO / "fixtures"

EXPECTED_BLOCKS = {
    "PTW-NJ-2026-0001": {("OPEN_WORK_ORDER", "NJ-C-101")},
    "PTW-NJ-2026-0002": {("OPEN_WORK_ORDER", "NJ-E-201")},
    "PTW-HZ-2026-0001": {("OPEN_WORK_ORDER", "HZ-P-101")},
    "PTW-NJ-2026-0003": {("ISOLATION_NOT_RELEASED", "NJ-R-201")},
    "PTW-HZ-2026-0002": {("INSPECTION_OVERDUE", "HZ-T-302")},
    "PTW-NJ-2026-0004": {("DEVICE_UNKNOWN", "NJ-P-199")},
    "PTW-HZ-2026-0003": {("EAM_DATA_STALE", "HZ-B-501")},
    "PTW-NJ-2026-0005": {("NO_DEVICE_LINKED", None)},
    "PTW-NJ-2026-0006": {("OPEN_WORK_ORDER", "NJ-P-301")},
    "PTW-HZ-2026-0004": {("OPEN_WORK_ORDER", "HZ-T-303"), ("INSPECTION_OVERDUE", "HZ-T-303")},
    "PTW-HZ-2026-0009": {("EAM_RECORD_INVALID", "HZ-E-101")},
    "PTW-NJ-2026-0026": {("PERMIT_RECORD_INVALID", None)},
    "PTW-NJ-2026-0027": {("PERMIT_RECORD_INVALID", None)},
    "PTW-HZ-2026-0016": {("PERMIT_RECORD_INVALID", None)},
    # A cancelled work order still holding a lock: the lock is the physical fact.
    "PTW-NJ-2026-0008": {("ISOLATION_NOT_RELEASED", "NJ-F-101")},
    "PTW-NJ-2026-0031": {("EQUIPMENT_NOT_IN_SERVICE", "NJ-F-102")},
    "PTW-NJ-2026-0032": {("EQUIPMENT_NOT_IN_SERVICE", "NJ-V-401")},
    # CT-701 at HZ02, not the clean CT-701 at NJ01.
    "PTW-HZ-2026-0020": {("OPEN_WORK_ORDER", "CT-701")},
    # NJ-F-101 exists at NJ01 only; the permit is at HZ02.
    "PTW-HZ-2026-0021": {("DEVICE_UNKNOWN", "NJ-F-101")},
    "PTW-HZ-2026-0022": {("EAM_RECORD_INVALID", "HZ-C-601")},
    "PTW-SH-2026-0001": {("SITE_NOT_CONFIGURED", None)},
}
EXPECTED_ALLOWED = {
    "PTW-NJ-2026-0007", "PTW-NJ-2026-0009", "PTW-NJ-2026-0010", "PTW-NJ-2026-0011",
    "PTW-HZ-2026-0005", "PTW-HZ-2026-0006", "PTW-HZ-2026-0018", "PTW-NJ-2026-0033",
}


def expected_cost_lines() -> dict[str, Decimal | None]:
    """Cost lines of the fixture's closed permits; labour amounts checked as hours × 80."""
    lines: dict[str, Decimal | None] = {}
    for permit in json.loads((FIXTURES / "ptw/permits.json").read_text(encoding="utf-8")):
        if permit["state"] != "CLOSED":
            continue
        ticket = permit["ticketNo"]
        if permit["workHours"]:
            lines[f"{ticket}/labour"] = (Decimal(str(permit["workHours"])) * 80).quantize(Decimal("0.01"))
        if permit["guardianArriveTime"] and permit["closeTime"]:
            lines[f"{ticket}/guardian"] = None
        if permit["ticketType"] in ("DH", "SX"):
            lines[f"{ticket}/gas_test"] = Decimal("150.00")
        lines[f"{ticket}/ppe"] = None
    return lines


def erp_and_ptw_state(state_dir: Path) -> tuple[list[dict], dict]:
    """Read what the ERP booked and the PTW holds, from mocks restarted on the demo's state."""
    with start_systems(FIXTURES, state_dir=state_dir) as systems:
        erp = httpx.get(f"{systems.base_urls['erp']}/_admin/state", timeout=10).json()["documents"]
        holds = httpx.get(f"{systems.base_urls['ptw']}/_admin/state", timeout=10).json()["holds"]
    return erp, holds


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo") / ".hub"
    os.environ.pop("HUB_DATABASE_URL", None)
    first = run_demo(FIXTURES, workdir, fresh=True)
    ledger_after_first, holds_after_first = erp_and_ptw_state(workdir / "mock_state")
    second = run_demo(FIXTURES, workdir)
    ledger_after_second, holds_after_second = erp_and_ptw_state(workdir / "mock_state")
    return first, second, (ledger_after_first, holds_after_first), (ledger_after_second, holds_after_second)


def test_exactly_the_scenario_permits_are_blocked(two_runs):
    first, *_ = two_runs
    assert first.success
    assert set(first.blocked) == set(EXPECTED_BLOCKS)
    assert set(first.allowed) == EXPECTED_ALLOWED


def test_block_reasons_name_the_right_devices(two_runs):
    first, *_ = two_runs
    for permit_id, expected in EXPECTED_BLOCKS.items():
        found = {(code, device) for code, device in first.blocked_codes[permit_id]}
        assert found == expected, permit_id


def test_holds_written_back_with_reasons(two_runs):
    first, _, (_, holds), _ = two_runs
    assert first.holds_written == len(EXPECTED_BLOCKS)
    assert set(holds) == set(EXPECTED_BLOCKS)
    [hold] = holds["PTW-HZ-2026-0004"]
    assert hold["source"] == "integration-hub"
    assert hold["action"] == "BLOCK"
    assert {r["code"] for r in hold["reasons"]} == {"OPEN_WORK_ORDER", "INSPECTION_OVERDUE"}
    assert any(r["evidence"].get("work_order") == "WO-5043" for r in hold["reasons"])


def test_erp_ledger_holds_exactly_the_expected_entries(two_runs):
    _, _, (ledger, _), _ = two_runs
    expected = expected_cost_lines()
    booked = {doc["DocumentReferenceID"]: doc for doc in ledger}
    assert len(ledger) == len(booked), "an entry was booked twice"
    assert set(booked) == set(expected)
    for key, amount in expected.items():
        if amount is not None:
            assert Decimal(booked[key]["Amount"]) == amount, key
    assert len({doc["AccountingDocument"] for doc in ledger}) == len(ledger)


def test_second_run_posts_nothing_and_writes_no_holds(two_runs):
    first, second, (ledger_1, holds_1), (ledger_2, holds_2) = two_runs
    assert second.success
    assert second.erp_posts_received == 0
    assert second.holds_written == 0
    assert ledger_2 == ledger_1
    assert holds_2 == holds_1
    assert set(second.blocked) == set(first.blocked)
    assert [p[2] for p in second.postings] == [p[2] for p in first.postings]


def test_malformed_records_are_quarantined_with_reasons(two_runs):
    first, *_ = two_runs
    quarantined = "\n".join(first.quarantined)
    assert len(first.quarantined) == 7
    for expected in (
        "HZ-C-601: status (from status): unknown value 'UNDER REPAIR'",
        "PTW-NJ-2026-0026: device_ids (from equipmentCodes): missing",
        "PTW-HZ-2026-0016: permit_type (from ticketType): unknown value 'XX'",
        "PTW-NJ-2026-0027: planned_start (from planStartTime): cannot parse '2026-13-45 25:00:00'",
        "WO-5045: status (from status_maxvalue): unknown value 'BOGUS'",
        "环氧乙烷/OPERATING_PRESSURE: data_type (from Parameter[4].Value.DataType): missing",
        "HZ02/动力车间/2026-05: defect_rate (from DefectRate): Input should be less than or equal to 1",
    ):
        assert expected in quarantined


def test_batched_calls(two_runs):
    first, *_ = two_runs
    assert first.devices_looked_up > 20
    # One batched call per system in each site's run, and one MES call per site for its quality rates.
    assert first.eam_calls == 2
    assert first.mes_calls == 2 + 2


def test_cli_demo_prints_the_summary(tmp_path):
    """The README's first command, as a user runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "DAGSTER_HOME"))}
    hub = Path(sys.executable).with_name("hub")
    done = subprocess.run(
        [str(hub), "demo", "--workdir", str(tmp_path / ".hub")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Permits synced: 65" in done.stdout
    assert "in 2 EAM call(s)" in done.stdout and "Materials and quality rates: 4 MES call(s)" in done.stdout
    assert "Blocked permits (21)" in done.stdout
    assert "Outside the gate: site SH03 is not configured (HUB_SITES): 1 gated permit(s) blocked" in done.stdout
    for code in ("EQUIPMENT_NOT_IN_SERVICE NJ-F-102", "SITE_NOT_CONFIGURED", "ISOLATION_NOT_RELEASED NJ-F-101"):
        assert code in done.stdout, code
    assert "DEVICE_UNKNOWN NJ-P-199" in done.stdout
    assert "ERP safety-cost entries (83)" in done.stdout
