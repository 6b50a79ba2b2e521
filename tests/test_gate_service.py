"""The gate-check service over real HTTP on loopback, against the mock PTW and EAM and a real store."""

import json
import socket
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import typer
import uvicorn
from typer.testing import CliRunner

from hub.service import GateApiNotConfigured, create_app
from hub.store.repository import HubStore

TOKEN = "gate-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FIXTURE_PERMITS = Path(__file__).parents[1] / "fixtures" / "ptw" / "permits.json"


def fixture_permit(ticket: str) -> dict:
    return next(p for p in json.loads(FIXTURE_PERMITS.read_text(encoding="utf-8")) if p["ticketNo"] == ticket)


@contextmanager
def running(app, lifespan: str = "off"):
    """The app under uvicorn on a free loopback port, in a thread (`lifespan="on"`: with its
    start-up and shutdown, keep-fresh included)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning", access_log=False, lifespan=lifespan))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the gate-check service did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def service(fresh_mocks, sqlite_url, make_settings):
    """Start the service for settings made from the mocks; `service(**overrides)` -> (url, settings)."""
    stack = []

    def start(**overrides):
        gate_api = {"token": TOKEN, **overrides.pop("gate_api", {})}
        settings = make_settings(sqlite_url, fresh_mocks.urls, gate_api=gate_api, **overrides)
        context = running(create_app(settings))
        stack.append(context)
        return context.__enter__(), settings

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


def check(url: str, body, headers=AUTH, timeout=30) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/gate-checks", json=body, headers=headers, timeout=timeout)


def eam_requests(mocks) -> int:
    return httpx.get(f"{mocks.base_urls['eam']}/_admin/received/count", timeout=10).json()["requests"]


def ptw_holds(mocks) -> dict[str, list[dict]]:
    return httpx.get(f"{mocks.base_urls['ptw']}/_admin/state", timeout=10).json()["holds"]


def set_faults(mocks, system: str, plan: dict) -> None:
    httpx.put(f"{mocks.base_urls[system]}/_admin/faults", json=plan, timeout=10).raise_for_status()


def codes(answer: dict) -> set[str]:
    return {r["code"] for r in answer["reasons"]}


# --------------------------------------------------------------------------- decisions


def test_allow_by_ticket_number_asks_the_eam_on_an_empty_store(service, fresh_mocks, sqlite_url):
    url, _ = service()
    before = eam_requests(fresh_mocks)
    response = check(url, {"ticket_no": "PTW-NJ-2026-0007"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["decision"] == "allow", answer
    assert answer["permit_id"] == "PTW-NJ-2026-0007" and answer["reasons"] == []
    assert answer["rule_version"] and answer["evaluated_at"].endswith("Z") and answer["decision_id"]
    [device] = answer["devices"]
    assert device["device_id"] == "NJ-P-101" and 0 <= device["data_age_s"] < 30
    assert eam_requests(fresh_mocks) > before
    assert HubStore(sqlite_url).lookup_times("eam", ["NJ-P-101"], site="NJ01")
    assert "PTW-NJ-2026-0007" not in ptw_holds(fresh_mocks)


def test_block_on_an_open_work_order_writes_the_hold_and_the_audit(service, fresh_mocks, sqlite_url):
    url, _ = service()
    response = check(url, {"permit": fixture_permit("PTW-NJ-2026-0001")})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["decision"] == "block" and "OPEN_WORK_ORDER" in codes(answer), answer
    [reason] = [r for r in answer["reasons"] if r["code"] == "OPEN_WORK_ORDER"]
    assert reason["device_id"] == "NJ-C-101" and reason["evidence"]["work_order"] and reason["message"]
    [hold] = ptw_holds(fresh_mocks)["PTW-NJ-2026-0001"]
    assert hold["action"] == "BLOCK" and {r["code"] for r in hold["reasons"]} == codes(answer)
    store = HubStore(sqlite_url)
    rows = list(store.iter_audit())
    assert [r.kind for r in rows][-2:] == ["gate_decision", "gate_check"]
    assert rows[-1].ref == rows[-2].ref == "PTW-NJ-2026-0001"
    linked = json.loads(rows[-1].body)
    assert linked["decision_id"] == answer["decision_id"] and linked["fingerprint"] == json.loads(rows[-2].body)["fingerprint"]
    [decision] = store.latest_gate_decisions()
    assert decision.permit_id == "PTW-NJ-2026-0001" and decision.decision == "block"


def test_fresh_data_is_not_asked_again_and_old_data_is(service, fresh_mocks, sqlite_url):
    url, _ = service()
    assert check(url, {"ticket_no": "PTW-NJ-2026-0007"}).json()["decision"] == "allow"
    asked = eam_requests(fresh_mocks)
    assert check(url, {"ticket_no": "PTW-NJ-2026-0007"}).json()["decision"] == "allow"
    assert eam_requests(fresh_mocks) == asked  # answered seconds ago: within decision_data_age
    store = HubStore(sqlite_url)
    old = datetime.now(timezone.utc) - timedelta(minutes=5)
    store.record_lookups("eam", ["NJ-P-101"], old, site="NJ01")
    answer = check(url, {"ticket_no": "PTW-NJ-2026-0007"}).json()
    assert answer["decision"] == "allow" and answer["devices"][0]["data_age_s"] < 30
    received = httpx.get(f"{fresh_mocks.base_urls['eam']}/_admin/received", timeout=10).json()
    assert len(received) > asked and "NJ-P-101" in json.dumps(received[-1], ensure_ascii=False).upper()
    assert store.lookup_times("eam", ["NJ-P-101"], site="NJ01")["NJ-P-101"] > old


@pytest.mark.parametrize(
    "fault", [{"kind": "status", "status": 503}, {"kind": "timeout", "delay_s": 30}], ids=["503", "timeout"]
)
def test_eam_down_blocks_eam_unreachable_never_allows_on_old_data(service, fresh_mocks, sqlite_url, fault):
    url, _ = service(gate_api={"eam_deadline_s": 1.0})
    assert check(url, {"ticket_no": "PTW-NJ-2026-0007"}).json()["decision"] == "allow"
    HubStore(sqlite_url).record_lookups("eam", ["NJ-P-101"], datetime.now(timezone.utc) - timedelta(minutes=5), site="NJ01")
    set_faults(fresh_mocks, "eam", {"rules": [fault]})
    started = time.monotonic()
    answer = check(url, {"ticket_no": "PTW-NJ-2026-0007"}).json()
    assert time.monotonic() - started < 8
    assert answer["decision"] == "block", answer
    [reason] = [r for r in answer["reasons"] if r["code"] == "EAM_UNREACHABLE"]
    assert reason["device_id"] == "NJ-P-101" and reason["evidence"]["eam_error"] in reason["message"]
    [hold] = ptw_holds(fresh_mocks)["PTW-NJ-2026-0007"]
    assert "EAM_UNREACHABLE" in {r["code"] for r in hold["reasons"]}


def test_record_that_fails_mapping_blocks_permit_record_invalid(service, fresh_mocks, sqlite_url):
    url, _ = service()
    permit = {**fixture_permit("PTW-NJ-2026-0007"), "planStartTime": "next tuesday"}
    answer = check(url, {"permit": permit}).json()
    assert answer["decision"] == "block" and codes(answer) == {"PERMIT_RECORD_INVALID"}, answer
    assert answer["permit_id"] == "PTW-NJ-2026-0007"
    assert any(r["source_key"] == "PTW-NJ-2026-0007" for r in HubStore(sqlite_url).list_quarantine())


def test_site_not_configured_and_not_gated(service, fresh_mocks):
    url, _ = service()
    other = check(url, {"permit": fixture_permit("PTW-SH-2026-0001")}).json()
    assert other["decision"] == "block" and codes(other) == {"SITE_NOT_CONFIGURED"}, other
    confined_space = check(url, {"ticket_no": "PTW-HZ-2026-0007"}).json()
    assert confined_space["decision"] == "not_gated" and confined_space["decision_id"] is None


def test_internal_error_answers_a_block(service, fresh_mocks, monkeypatch):
    import hub.service.gate_check as gate_check

    def broken(*args, **kwargs):
        raise RuntimeError("secret-ish detail that must not leak")

    monkeypatch.setattr(gate_check, "clearance_profiles", broken)
    url, _ = service()
    response = check(url, {"ticket_no": "PTW-NJ-2026-0001"})
    assert response.status_code == 200
    answer = response.json()
    assert answer["decision"] == "block" and codes(answer) == {"GATE_ERROR"}, answer
    assert "could not decide" in answer["reasons"][0]["message"] and "secret-ish" not in response.text
    assert "Traceback" not in response.text
    assert "GATE_ERROR" in {r["code"] for r in ptw_holds(fresh_mocks)["PTW-NJ-2026-0001"][0]["reasons"]}


def test_unknown_ticket_blocks_and_is_audited_outside_the_decision_trail(service, fresh_mocks, sqlite_url):
    url, _ = service()
    answer = check(url, {"ticket_no": "PTW-NJ-2026-9999"}).json()
    assert answer["decision"] == "block" and codes(answer) == {"GATE_ERROR"}
    assert "could not be read from the PTW" in answer["reasons"][0]["message"]
    store = HubStore(sqlite_url)
    [row] = [r for r in store.iter_audit() if r.kind == "gate_check"]
    assert row.ref == "PTW-NJ-2026-9999" and json.loads(row.body)["decision_id"] == answer["decision_id"]
    assert store.latest_gate_decisions() == []


def test_record_without_ticket_number_blocks(service, sqlite_url):
    url, _ = service()
    permit = {k: v for k, v in fixture_permit("PTW-NJ-2026-0007").items() if k != "ticketNo"}
    answer = check(url, {"permit": permit}).json()
    assert answer["decision"] == "block" and codes(answer) == {"PERMIT_RECORD_INVALID"}, answer
    assert HubStore(sqlite_url).latest_gate_decisions() == []


# --------------------------------------------------------------------------- the edge


def test_token_is_required(service):
    url, _ = service()
    assert check(url, {"ticket_no": "PTW-NJ-2026-0001"}, headers={}).status_code == 401
    wrong = check(url, {"ticket_no": "PTW-NJ-2026-0001"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ticket_no": 7}, "ticket_no"),
        ({"ticket_no": "../etc"}, "ticket_no"),
        ({"permit": "PTW-NJ-2026-0001"}, "permit"),
        ({"ticket": "PTW-NJ-2026-0001"}, "ticket"),
        ({}, "permit|ticket_no"),
        ([1, 2], "body"),
    ],
)
def test_malformed_request_is_422_naming_the_field(service, body, field):
    url, _ = service()
    response = check(url, body)
    assert response.status_code == 422
    assert field in [d["field"] for d in response.json()["detail"]], response.text
    assert "Traceback" not in response.text


def test_body_over_the_limit_is_413_and_over_the_rate_is_429(service):
    url, _ = service(gate_api={"max_body_bytes": 1000, "requests_per_second": 1})
    big = {"permit": {"ticketNo": "PTW-NJ-2026-0001", "workshop": "x" * 5000}}
    assert check(url, big).status_code == 413
    assert check(url, {}).status_code == 429


def test_no_token_no_service(make_settings, sqlite_url, fresh_mocks, monkeypatch):
    with pytest.raises(GateApiNotConfigured, match="HUB_GATE_API__TOKEN"):
        create_app(make_settings(sqlite_url, fresh_mocks.urls))
    from hub.cli.serve import register

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a group, so that `serve` is named on the command line
    monkeypatch.delenv("HUB_GATE_API__TOKEN", raising=False)
    result = CliRunner().invoke(app, ["serve", "--port", "0"])
    assert result.exit_code == 2 and "HUB_GATE_API__TOKEN" in result.output


def _decision_ids(materialization) -> set[str]:
    return {row.data["decision_id"] for row in materialization.metadata["decisions"].value.records}


def test_answer_is_reported_to_dagster(service, fresh_mocks, tmp_path, monkeypatch):
    from dagster import AssetKey, DagsterInstance

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    # The storage is created here, before the service's reporter opens it: two threads creating
    # a fresh SQLite storage at once can both stamp its schema version.
    instance = DagsterInstance.get()
    url, _ = service()
    answer = check(url, {"ticket_no": "PTW-NJ-2026-0001"}).json()
    # Reported off the request path, within REPORT_EVERY_S (an earlier test's service may report
    # its last answers here too: this answer's event is the one naming its decision id).
    deadline, materialization = time.monotonic() + 20, None
    while materialization is None and time.monotonic() < deadline:
        records = instance.fetch_materializations(AssetKey("permit_gate_decisions"), limit=100).records
        materialization = next(
            (m for m in (r.asset_materialization for r in records) if answer["decision_id"] in _decision_ids(m)), None
        )
        time.sleep(0.2)
    assert materialization is not None, "the answer never reached Dagster"
    assert materialization.partition == "NJ01"
    [row] = materialization.metadata["decisions"].value.records
    assert row.data["permit_id"] == "PTW-NJ-2026-0001"
    assert row.data["decision_id"] == answer["decision_id"]
    assert row.data["decision"] == "block"
    assert materialization.metadata["blocked_permit_ids"].value == "PTW-NJ-2026-0001"


def test_answers_still_waiting_to_be_reported_reach_dagster_when_the_service_stops(
    fresh_mocks, sqlite_url, make_settings, tmp_path, monkeypatch
):
    from dagster import AssetKey, DagsterInstance

    from hub.service import gate_check

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = DagsterInstance.get()
    # Far longer than the test: only the flush at shutdown can report the answer.
    monkeypatch.setattr(gate_check, "REPORT_EVERY_S", 600.0)
    settings = make_settings(
        sqlite_url, fresh_mocks.urls, gate_api={"token": TOKEN, "keep_fresh": False}
    )
    with running(create_app(settings), lifespan="on") as url:
        answer = check(url, {"ticket_no": "PTW-NJ-2026-0001"}).json()
        time.sleep(0.5)
        reported = instance.fetch_materializations(AssetKey("permit_gate_decisions"), limit=100).records
        assert not any(answer["decision_id"] in _decision_ids(r.asset_materialization) for r in reported)
    reported = instance.fetch_materializations(AssetKey("permit_gate_decisions"), limit=100).records
    assert any(answer["decision_id"] in _decision_ids(r.asset_materialization) for r in reported)


def test_after_a_sync_the_service_decides_from_the_store_as_the_batch_gate_did(service, fresh_mocks, sqlite_url):
    from conftest import materialize_sites
    from dagster import DagsterInstance

    from hub.definitions import ASSETS, CHECKS
    from hub.resources import resources_from_settings

    url, settings = service()
    with DagsterInstance.ephemeral() as instance:
        assert materialize_sites(
            [*ASSETS, *CHECKS], sites=("NJ01",), resources=resources_from_settings(settings), instance=instance,
            raise_on_error=False,
        ).success
    batch = {d.permit_id: d for d in HubStore(sqlite_url).latest_gate_decisions()}
    holds = ptw_holds(fresh_mocks)
    asked = eam_requests(fresh_mocks)
    allowed = check(url, {"ticket_no": "PTW-NJ-2026-0007"}).json()
    blocked = check(url, {"ticket_no": "PTW-NJ-2026-0001"}).json()
    assert eam_requests(fresh_mocks) == asked  # the sync's answers are seconds old
    assert allowed["decision"] == batch["PTW-NJ-2026-0007"].decision == "allow"
    assert blocked["decision"] == batch["PTW-NJ-2026-0001"].decision == "block"
    assert codes(blocked) == {r.code for r in batch["PTW-NJ-2026-0001"].reasons}
    assert ptw_holds(fresh_mocks) == holds  # the same decision writes the same hold


@pytest.mark.parametrize(("age", "ok"), [("PT30S", True), ("PT15M", True), ("PT0S", False), ("PT16M", False)])
def test_decision_data_age_is_positive_and_within_the_stale_limit(age, ok):
    from pydantic import ValidationError

    from hub.logic.rules import GateRules

    make = lambda: GateRules.model_validate({"version": "t", "max_eam_data_age": "PT15M", "decision_data_age": age})
    if ok:
        assert make().decision_data_age.total_seconds() > 0
    else:
        with pytest.raises(ValidationError, match="decision_data_age"):
            make()


def test_gate_api_settings_come_from_the_environment_and_go_back_to_it(monkeypatch):
    from hub.settings import HubSettings, settings_environment

    monkeypatch.setenv("HUB_GATE_API__TOKEN", "abc")
    monkeypatch.setenv("HUB_GATE_API__EAM_DEADLINE_S", "1.5")
    settings = HubSettings()
    assert settings.gate_api.token.get_secret_value() == "abc" and settings.gate_api.eam_deadline_s == 1.5
    assert "abc" not in repr(settings)
    env = settings_environment(settings)
    assert env["HUB_GATE_API__TOKEN"] == "abc" and "HUB_GATE_API" not in env


def test_the_mock_ptw_hook_asks_the_real_service_and_refuses_a_blocked_approval(service, fresh_mocks):
    """The PTW's pre-approval hook, pointed at the service: the answer decides the transition."""
    url, _ = service()
    ptw = fresh_mocks.base_urls["ptw"]
    hook = httpx.put(f"{ptw}/_admin/gate-hook", json={"url": f"{url}/api/v1/gate-checks", "token": TOKEN}, timeout=10)
    assert hook.status_code == 200, hook.text
    start = datetime.now(timezone(timedelta(hours=8))).replace(microsecond=0)

    def submitted(device: str) -> str:
        created = httpx.post(f"{ptw}/api/v1/permits", timeout=10, json={
            "ticketType": "GC", "siteCode": "NJ01", "workshop": "裂解车间", "equipmentCodes": [device], "applicant": "a", "guardian": "g",
            "planStartTime": f"{start:%Y-%m-%d %H:%M:%S}", "planEndTime": f"{start + timedelta(hours=4):%Y-%m-%d %H:%M:%S}",
        })
        assert created.status_code == 201, created.text
        return created.json()["ticketNo"]

    blocked = submitted("NJ-C-101")  # corrective work order WO-1058 in progress
    refused = httpx.post(f"{ptw}/api/v1/permits/{blocked}/approve", timeout=30)
    assert refused.status_code == 409, refused.text
    refusal = refused.json()["refusal"]
    assert refusal["decision"] == "block" and "OPEN_WORK_ORDER" in codes(refusal["answer"])
    assert httpx.get(f"{ptw}/api/v1/permits/{blocked}", timeout=10).json()["state"] == "SUBMITTED"

    clear = submitted("NJ-P-201")  # no work order left open, in service, inspected until 2027-05
    approved = httpx.post(f"{ptw}/api/v1/permits/{clear}/approve", timeout=30)
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "APPROVED"


def test_the_answer_shows_the_history_of_similar_work_planned_nearby(service, fresh_mocks, sqlite_url):
    from conftest import materialize_sites
    from dagster import DagsterInstance

    from hub.analytics.kpis import similar_work
    from hub.definitions import ASSETS
    from hub.resources import resources_from_settings

    url, settings = service()
    with DagsterInstance.ephemeral() as instance:
        assert materialize_sites(ASSETS, sites=("NJ01",), resources=resources_from_settings(settings), instance=instance).success
    stored = HubStore(sqlite_url).load_permits(site="NJ01")
    # Two more cracking-unit climbs are planned within 72 h of this one; one like them was completed.
    answer = check(url, {"ticket_no": "PTW-NJ-2026-0001"}).json()
    shown = answer["similar_work"]
    assert shown["nearby"] == ["PTW-NJ-2026-0007", "PTW-NJ-2026-0014"]
    expected = similar_work(stored, next(p for p in stored if p.permit_id == "PTW-NJ-2026-0001"), datetime.now(timezone.utc))
    assert shown == json.loads(json.dumps(expected.as_dict()))
    # One like them completed; the others count as open once their planned start has passed.
    assert shown["results"]["completed"] == 1 and set(shown["results"]) <= {"completed", "open"}
    lone = next(
        p for p in stored
        if p.permit_type == "work_at_height" and similar_work(stored, p, datetime.now(timezone.utc)) is None
    )
    assert check(url, {"ticket_no": lone.permit_id}).json()["similar_work"] is None


def test_the_similar_work_advice_follows_the_analytics_rule_file_the_settings_name(sqlite_url, make_settings, tmp_path):
    """The service and the assets read the same rule file: HUB_ANALYTICS_RULES_FILE, if set."""
    from hub.service.gate_check import GateCheckService

    packaged = (Path(__file__).parents[1] / "hub/rules/analytics.yaml").read_text(encoding="utf-8")
    edited = tmp_path / "analytics.yaml"
    edited.write_text(packaged.replace("similar_work_gap: PT72H", "similar_work_gap: PT24H"), encoding="utf-8")
    assert edited.read_text(encoding="utf-8") != packaged
    nowhere = {name: "http://127.0.0.1:9" for name in ("ptw", "eam", "mes", "erp")}
    service = GateCheckService(make_settings(sqlite_url, nowhere, analytics_rules_file=edited, gate_api={"token": "t"}))
    assert service.analytics_rules().similar_work_gap == timedelta(hours=24)


def test_an_area_read_again_serves_the_other_checks_from_the_last_read_meanwhile(sqlite_url):
    """Past its time, one check reads an area's history again; the checks that come while it reads
    answer from the read before instead of all reading at once (which stalled a busy service)."""
    from hub.logic.analytics_rules import AnalyticsRules
    from hub.model import Permit
    from hub.service import similar_work
    from hub.store.migrate import upgrade

    upgrade(sqlite_url)
    now = datetime.now(timezone.utc)

    def climb(n: int, days: float) -> Permit:
        return Permit(
            permit_id=f"PTW-NJ-2026-09{n:02d}", permit_type="work_at_height", risk_level="orange", site="NJ01",
            area="裂解车间", device_ids=("NJ-P-201",), applicant="张伟", status="approved",
            planned_start=now + timedelta(days=days), planned_end=now + timedelta(days=days, hours=4),
            submitted_at=now, updated_at=now,
        )

    class SlowStore(HubStore):
        """The real store, whose area reads wait for `go` once `slow` is set."""

        reads, slow, reading, go = 0, False, threading.Event(), threading.Event()

        def permits_like(self, *args):
            type(self).reads += 1
            if self.slow:
                self.reading.set()
                assert self.go.wait(10)
            return super().permits_like(*args)

    hub_store = SlowStore(sqlite_url)
    hub_store.upsert_permits([climb(1, 1), climb(2, 1.5)], now)
    clock = [0.0]
    rules = AnalyticsRules(version="test")
    advice = similar_work.SimilarWorkAdvice(lambda: rules, clock=lambda: clock[0])
    first = advice.advice(hub_store, climb(1, 1), now)
    assert first["nearby"] == ["PTW-NJ-2026-0902"] and SlowStore.reads == 1
    kind = ("NJ01", "裂解车间", "work_at_height")
    assert 0.75 * similar_work.TTL_S <= similar_work.ttl_s(kind) <= 1.25 * similar_work.TTL_S
    clock[0] = similar_work.ttl_s(kind) - 0.1
    assert advice.advice(hub_store, climb(2, 1.5), now)["nearby"] == ["PTW-NJ-2026-0901"] and SlowStore.reads == 1
    # Past its time: one check reads again, slowly; another meanwhile answers from the last read.
    clock[0] = similar_work.ttl_s(kind) + 0.1
    SlowStore.slow = True
    again: list = []
    reader = threading.Thread(target=lambda: again.append(advice.advice(hub_store, climb(1, 1), now)))
    reader.start()
    assert SlowStore.reading.wait(10)
    assert advice.advice(hub_store, climb(2, 1.5), now)["nearby"] == ["PTW-NJ-2026-0901"]
    assert SlowStore.reads == 2  # the one read again, not one per check
    SlowStore.go.set()
    reader.join(10)
    assert again[0] == first
    hub_store.dispose()


def test_a_gate_check_leaves_no_reference_cycles_to_collect(service, fresh_mocks):
    """A statement built per store call left about a hundred objects in reference cycles per check,
    and a busy service stopped for every collection of them; the checks' reads are built once."""
    import gc

    from hub.service.gate_check import GateCheckService

    _, settings = service()
    checker = GateCheckService(settings)
    permit = fixture_permit("PTW-NJ-2026-0001")
    for _ in range(3):  # the EAM is asked and every cache filled on the first
        checker.check(permit=permit)
    gc.collect()
    gc.disable()
    try:
        for _ in range(50):
            assert checker.check(permit=permit).decision == "block"
        found = gc.collect()
    finally:
        gc.enable()
    assert found < 50, f"{found} objects in reference cycles after 50 checks"


def test_an_equipment_record_the_mapping_cannot_read_blocks_the_check(service, fresh_mocks, sqlite_url):
    """The check asks the EAM for HZ-C-601, whose status (UNDER REPAIR) the mapping does not know: the
    asset is quarantined, and the check's read of the open quarantine of its devices (a statement
    built once) must find it, or the device would look clear."""
    url, _ = service()
    answer = check(url, {"ticket_no": "PTW-HZ-2026-0022"}).json()
    assert answer["decision"] == "block" and codes(answer) == {"EAM_RECORD_INVALID"}, answer
    assert answer["eam_refreshed"] == ["HZ-C-601"]
    assert any(r["source_key"] == "HZ-C-601" for r in HubStore(sqlite_url).list_quarantine(system="eam"))
