"""PTW write-back is exact and self-healing, through the real mock PTW over HTTP.

Holds go to exactly the ticket number the PTW gave (lower case included), and every write-back
reads the hub's holds back from the PTW in one paged listing: a hold lifted, edited or left
behind at the PTW is put right by the next sync, even though the hub's records say it was
written. If the listing cannot be read, the changed holds are still written.
"""

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from conftest import materialize_sites
from dagster import AssetSelection, DagsterInstance

from hub.assets.gate import gate_decisions_written_back
from hub.definitions import ASSETS, CHECKS
from hub.harness.chaos import Fault, FaultSchedule, draw_schedule, run_schedule
from hub.harness.invariants import BLOCKED, NO_STRAY_BLOCK, REASONS, expected_outcome
from hub.harness.plant import MockPlant
from hub.mappings.engine import load_mapping
from hub.resources import resources_from_settings
from hub.store.repository import HubStore
from hub.writers.ptw_holds import read_ptw_holds, write_holds
from mock_systems.servers import start_systems

REPO = Path(__file__).parents[1]
SOURCE = "integration-hub"
LOWER = "ptw-nj-2026-0101"  # a work-at-height permit on a device the EAM does not know: blocked
LOWER_BROKEN = "ptw-nj-2026-0102"  # no equipmentCodes: quarantined, and blocked as invalid
BLOCKED_PERMIT = "PTW-NJ-2026-0004"


def _permit(ticket: str, **changes) -> dict:
    permit = {
        "ticketNo": ticket, "ticketType": "GC", "riskLevel": "2", "siteCode": "NJ01", "workshop": "裂解车间",
        "equipmentCodes": ["NJ-P-199"], "materials": ["乙烯"], "applicant": "张伟", "guardian": "李强",
        "planStartTime": "2026-12-20 08:00:00", "planEndTime": "2026-12-20 17:00:00", "state": "APPROVED",
        "submitTime": "2026-11-28 09:00:00", "approveTime": "2026-11-28 10:00:00", "guardianArriveTime": None,
        "closeTime": None, "closeResult": None, "workHours": None, "updateTime": "2026-11-28 10:00:00",
    }
    permit.update(changes)
    return {k: v for k, v in permit.items() if v is not ...}


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    """The mocks on a copy of the fixture plant with two lower-case ticket numbers added."""
    fixtures = tmp_path_factory.mktemp("plant") / "fixtures"
    shutil.copytree(REPO / "fixtures", fixtures)
    permits_file = fixtures / "ptw" / "permits.json"
    permits = json.loads(permits_file.read_text(encoding="utf-8"))
    permits += [_permit(LOWER), _permit(LOWER_BROKEN, equipmentCodes=...)]
    permits_file.write_text(json.dumps(permits, ensure_ascii=False), encoding="utf-8")
    with start_systems(fixtures) as running:
        yield running


@pytest.fixture
def mocks(plant):
    with httpx.Client(timeout=10) as http:
        for base_url in plant.base_urls.values():
            http.post(f"{base_url}/_admin/reset").raise_for_status()
    yield plant


def run_all(settings, instance, selection=None):
    return materialize_sites(
        [*ASSETS, *CHECKS], resources=resources_from_settings(settings), instance=instance, raise_on_error=False,
        **({"selection": selection} if selection is not None else {}),
    )


def check_of(result) -> tuple[bool, dict]:
    """The write-back check over both sites: passed in both, metadata numbers added up, ids joined."""
    passed, metadata = True, {}
    for e in result.get_asset_check_evaluations():
        if e.check_name != "gate_decisions_written_back":
            continue
        passed = passed and e.passed
        for key, entry in e.metadata.items():
            value = entry.value
            if key in metadata and isinstance(value, int):
                value += metadata[key]
            elif key in metadata and value != "none":
                value = value if metadata[key] == "none" else f"{metadata[key]}, {value}"
            elif key in metadata:
                value = metadata[key]
            metadata[key] = value
    return passed, metadata


def ptw_holds(mocks) -> dict[str, list[dict]]:
    return httpx.get(f"{mocks.base_urls['ptw']}/_admin/state", timeout=10).raise_for_status().json()["holds"]


def hold_url(mocks, ticket: str) -> str:
    return f"{mocks.urls['ptw']}/api/v1/permits/{ticket}/holds/{SOURCE}"


def received(mocks) -> list[dict]:
    return httpx.get(f"{mocks.base_urls['ptw']}/_admin/received", timeout=10).raise_for_status().json()


def set_faults(mocks, *rules) -> None:
    httpx.put(f"{mocks.base_urls['ptw']}/_admin/faults", json={"rules": list(rules)}, timeout=10).raise_for_status()


def blocked_by_the_hub(settings) -> set[str]:
    """The permits whose latest decision is a block, by the hub's own audit trail."""
    return {d.permit_id for d in HubStore(settings.database_url).latest_gate_decisions() if d.decision == "block"}


def write_back_now(settings) -> tuple:
    """One write-back of the latest decisions through the writer every path uses."""
    ptw = resources_from_settings(settings)["ptw"]
    store = HubStore(settings.database_url)
    result = write_holds(store, ptw.client(), load_mapping(ptw.mapping), ptw.hold_source, store.latest_gate_decisions())
    return result, store


@pytest.fixture
def synced(mocks, sqlite_url, make_settings):
    """The plant synced once; every check passed and every hold is at the PTW."""
    settings = make_settings(sqlite_url, mocks.urls, retry_attempts=2)
    instance = DagsterInstance.ephemeral()
    result = run_all(settings, instance)
    assert result.success
    yield settings, instance
    instance.dispose()


def test_the_holds_listing_is_paged_and_filtered_by_source(mocks):
    for ticket in ("PTW-NJ-2026-0001", "PTW-NJ-2026-0002", LOWER):
        body = {"action": "BLOCK", "reasons": [{"code": "X", "message": "m"}]}
        httpx.put(hold_url(mocks, ticket), json=body, timeout=10).raise_for_status()
    other = {"action": "BLOCK", "reasons": [{"code": "Y", "message": "m"}]}
    httpx.put(f"{mocks.urls['ptw']}/api/v1/permits/{LOWER}/holds/other-system", json=other, timeout=10).raise_for_status()

    seen, token = [], None
    while True:
        params = {"source": SOURCE, "page_size": 2, **({"page_token": token} if token else {})}
        page = httpx.get(f"{mocks.urls['ptw']}/api/v1/holds", params=params, timeout=10).raise_for_status().json()
        seen += page["items"]
        token = page["next_page_token"]
        if not token:
            break
    assert [(h["ticketNo"], h["source"]) for h in seen] == [
        ("PTW-NJ-2026-0001", SOURCE), ("PTW-NJ-2026-0002", SOURCE), (LOWER, SOURCE)
    ]
    assert set(seen[0]) == {"ticketNo", "source", "action", "reasons", "ruleVersion", "revision", "updatedAt"}
    every = httpx.get(f"{mocks.urls['ptw']}/api/v1/holds", timeout=10).json()["items"]
    assert len(every) == 4
    bad = httpx.get(f"{mocks.urls['ptw']}/api/v1/holds", params={"page_token": "nonsense"}, timeout=10)
    assert bad.status_code == 400


def test_a_site_reads_only_the_holds_on_its_own_permits(synced, mocks):
    """A site's write-back reads the holds filed under that site, through the flavor file; the
    other site's holds are not in its listing, and its own check still sees every hold it wrote."""
    settings, instance = synced
    ptw = resources_from_settings(settings)["ptw"]
    with ptw.client() as client:
        nj, hz = (read_ptw_holds(client, ptw.hold_source, site) for site in ("NJ01", "HZ02"))
        every = read_ptw_holds(client, ptw.hold_source)
    assert nj and hz and set(nj).isdisjoint(hz)
    assert all(t.upper().startswith("PTW-NJ-") for t in nj) and all(t.upper().startswith("PTW-HZ-") for t in hz)
    assert set(nj) | set(hz) <= set(every)
    result = run_all(settings, instance, AssetSelection.checks(gate_decisions_written_back))
    assert all(e.passed for e in result.get_asset_check_evaluations())
    # A hold lifted at the PTW is still caught by the narrowed listing.
    lifted = sorted(nj)[0]
    httpx.delete(hold_url(mocks, lifted), timeout=10).raise_for_status()
    result = run_all(settings, instance, AssetSelection.checks(gate_decisions_written_back))
    [nj_check] = [e for e in result.get_asset_check_evaluations() if lifted in str(e.metadata["drifted_permit_ids"].value)]
    assert not nj_check.passed


def test_a_lower_case_ticket_is_held_under_exactly_its_own_number(synced, mocks):
    settings, _ = synced
    holds = ptw_holds(mocks)
    assert set(holds) == blocked_by_the_hub(settings)
    assert LOWER in holds and LOWER.upper() not in holds
    [hold] = holds[LOWER]
    assert hold["source"] == SOURCE and hold["action"] == "BLOCK"
    assert {r["code"] for r in hold["reasons"]} == {"DEVICE_UNKNOWN"}
    # The unreadable permit is quarantined under its own number and blocked there too.
    [broken] = holds[LOWER_BROKEN]
    assert {r["code"] for r in broken["reasons"]} == {"PERMIT_RECORD_INVALID"}
    store = HubStore(settings.database_url)
    assert LOWER in store.permit_ids("NJ01")
    assert LOWER_BROKEN in {row["source_key"] for row in store.list_quarantine()}
    # The PTW answers for the permit by the number it gave.
    permit = httpx.get(f"{mocks.urls['ptw']}/api/v1/permits/{LOWER}", timeout=10).json()
    assert [h["action"] for h in permit["holds"]] == ["BLOCK"]
    assert not [e for e in received(mocks) if e["status"] == 404]


def test_a_hold_lifted_at_the_ptw_is_put_back_by_the_next_sync(synced, mocks):
    settings, instance = synced
    original = ptw_holds(mocks)[BLOCKED_PERMIT][0]
    httpx.delete(hold_url(mocks, BLOCKED_PERMIT), timeout=10).raise_for_status()
    httpx.delete(hold_url(mocks, LOWER), timeout=10).raise_for_status()

    # The check sees it before any sync does: the hub's records say written, the PTW disagrees.
    passed, metadata = check_of(run_all(settings, instance, AssetSelection.checks(gate_decisions_written_back)))
    assert not passed
    assert metadata["not_written_back"] == 0 and metadata["hold_drift"] == 2
    assert set(metadata["drifted_permit_ids"].split(", ")) == {BLOCKED_PERMIT, LOWER}

    again = run_all(settings, instance)
    assert again.success
    holds = ptw_holds(mocks)
    assert set(holds) == blocked_by_the_hub(settings)
    [restored] = holds[BLOCKED_PERMIT]
    assert restored["action"] == "BLOCK" and restored["reasons"] == original["reasons"]
    assert holds[LOWER][0]["action"] == "BLOCK"
    passed, metadata = check_of(again)
    assert passed and metadata["hold_drift"] == 0 and metadata["ptw_error"] == "none"


def test_a_hold_edited_at_the_ptw_is_rewritten_and_counted_as_drift(synced, mocks):
    settings, _ = synced
    original = ptw_holds(mocks)[BLOCKED_PERMIT][0]
    edited = {"action": "BLOCK", "ruleVersion": original["ruleVersion"],
              "reasons": [{"code": "OPEN_WORK_ORDER", "deviceId": "NJ-P-199", "message": "edited", "evidence": {}}]}
    httpx.put(hold_url(mocks, BLOCKED_PERMIT), json=edited, timeout=10).raise_for_status()
    flipped = {**edited, "action": "ALLOW", "reasons": ptw_holds(mocks)[LOWER][0]["reasons"]}
    httpx.put(hold_url(mocks, LOWER), json=flipped, timeout=10).raise_for_status()

    before = len(received(mocks))
    result, _ = write_back_now(settings)
    assert result.reconcile_error is None and not result.failed
    assert result.drift == 2 and sorted(result.drifted) == sorted([BLOCKED_PERMIT, LOWER])
    assert {pid for pid, _, _ in result.written} == {BLOCKED_PERMIT, LOWER}
    holds = ptw_holds(mocks)
    assert holds[BLOCKED_PERMIT][0]["reasons"] == original["reasons"]
    assert holds[LOWER][0]["action"] == "BLOCK"
    # Read back in bulk: one listing request, never one request per permit.
    sent = [(e["method"], e["path"]) for e in received(mocks)[before:]]
    assert sent.count(("GET", "/api/v1/holds")) == 1
    assert not [s for s in sent if s[0] == "GET" and s[1].startswith("/api/v1/permits/")]
    assert sorted(s for s in sent if s[0] == "PUT") == sorted(
        ("PUT", f"/api/v1/permits/{p}/holds/{SOURCE}") for p in (BLOCKED_PERMIT, LOWER)
    )

    # Once put right, there is nothing left to write.
    quiet, _ = write_back_now(settings)
    assert quiet.drift == 0 and quiet.written == []


def test_a_stale_hold_on_an_allowed_permit_is_lifted(synced, mocks):
    settings, instance = synced
    store = HubStore(settings.database_url)
    allowed = sorted(d.permit_id for d in store.latest_gate_decisions() if d.decision == "allow")
    assert allowed
    stale = {"action": "BLOCK", "ruleVersion": "old", "reasons": [{"code": "EAM_UNAVAILABLE", "message": "old"}]}
    httpx.put(hold_url(mocks, allowed[0]), json=stale, timeout=10).raise_for_status()
    # Another system's hold on the same permit is none of the hub's business.
    httpx.put(f"{mocks.urls['ptw']}/api/v1/permits/{allowed[0]}/holds/other-system", json=stale, timeout=10)

    again = run_all(settings, instance)
    assert again.success
    assert [h["source"] for h in ptw_holds(mocks)[allowed[0]]] == ["other-system"]
    assert check_of(again)[0]


def test_a_failed_holds_listing_still_writes_every_block(mocks, sqlite_url, make_settings):
    settings = make_settings(sqlite_url, mocks.urls, retry_attempts=2)
    set_faults(mocks, {"kind": "status", "status": 503, "method": "GET", "path_prefix": "/api/v1/holds"})
    with DagsterInstance.ephemeral() as instance:
        result = run_all(settings, instance)
        # Blocks are written from the hub's records; the check cannot vouch for the PTW and fails.
        assert result.success
        holds = ptw_holds(mocks)
        assert set(holds) == blocked_by_the_hub(settings) and LOWER in holds
        passed, metadata = check_of(result)
        assert not passed and metadata["ptw_error"] != "none" and metadata["not_written_back"] == 0

    # Through the writer: the error is recorded, and a changed decision still reaches the PTW.
    httpx.delete(hold_url(mocks, BLOCKED_PERMIT), timeout=10).raise_for_status()
    store = HubStore(settings.database_url)
    store.record_holds_written([(BLOCKED_PERMIT, "older", "block")], datetime.now(timezone.utc))
    outcome, _ = write_back_now(settings)
    assert outcome.reconcile_error and "PTW holds not read back" in outcome.reconcile_error
    assert outcome.drift == 0 and not outcome.failed
    assert [pid for pid, _, _ in outcome.written] == [BLOCKED_PERMIT]
    assert ptw_holds(mocks)[BLOCKED_PERMIT][0]["action"] == "BLOCK"

    # A PTW without the listing (404) is a refusal, handled the same way.
    set_faults(mocks, {"kind": "status", "status": 404, "method": "GET", "path_prefix": "/api/v1/holds"})
    refused, _ = write_back_now(settings)
    assert refused.reconcile_error and not refused.failed


def test_chaos_hold_drift_is_put_right_by_recovery(tmp_path):
    fixtures = REPO / "fixtures"
    expected = expected_outcome(fixtures, datetime.now(timezone.utc))
    drift = FaultSchedule(seed=0, index=0, faults=(Fault("hold drift", "ptw", drift=("lift", "alter", "allow", "stray")),))
    drawn = [f for i in range(200) for f in draw_schedule(1, i).faults if f.kind == "hold drift"]
    assert drawn and all(f.system == "ptw" and f.drift and not f.rule for f in drawn)
    with MockPlant(fixtures) as plant, DagsterInstance.ephemeral() as instance:
        outcome = run_schedule(plant, instance, expected, drift, tmp_path)
    assert outcome.faulted_run_succeeded and outcome.recovered
    assert [change.split()[0] for change in outcome.holds_drifted] == ["lift", "alter", "allow", "stray"]
    verdicts = {v.invariant: v for v in outcome.verdicts}
    for name in (BLOCKED, NO_STRAY_BLOCK, REASONS):
        assert verdicts[name].held, verdicts[name].problems
