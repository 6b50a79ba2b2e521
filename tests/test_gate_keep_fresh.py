"""The service keeps the EAM data of gated permits' devices fresh ahead of the checks, and an EAM
that does not answer well makes nothing fresh: against the mock EAM and a real store."""

import math
import time
from datetime import datetime, timedelta, timezone

import pytest
from dagster import DagsterInstance
import httpx
from test_gate_service import eam_requests, fixture_permit, running, set_faults

from hub.connectors.breaker import close_all_breakers
from hub.definitions import ASSETS
from hub.logic.rules import load_gate_rules
from hub.resources import resources_from_settings
from hub.service.app import create_app
from hub.service.gate_check import GateCheckService
from hub.store.locks import site_lock
from hub.store.repository import HubStore


@pytest.fixture
def synced(fresh_mocks, sqlite_url, make_settings):
    """NJ01 synced, then every gated device's EAM answer made five minutes old; (settings, devices, when)."""
    from conftest import materialize_sites

    settings = make_settings(sqlite_url, fresh_mocks.urls, sites=("NJ01",), retry_attempts=1, gate_api={"token": "t"})
    with DagsterInstance.ephemeral() as instance:
        assert materialize_sites(ASSETS, sites=("NJ01",), resources=resources_from_settings(settings), instance=instance).success
    rules = load_gate_rules(None)
    store = HubStore(sqlite_url)
    devices = store.devices_in_use("NJ01", rules.gated_statuses, permit_types=rules.gated_permit_types)
    assert {"NJ-P-101", "NJ-C-101"} <= devices
    old = datetime.now(timezone.utc) - timedelta(minutes=5)
    store.record_lookups("eam", sorted(devices), old, site="NJ01")
    return settings, devices, old


def test_a_pass_pulls_the_gated_devices_whose_data_nears_the_limit_and_then_a_check_need_not_ask(synced, fresh_mocks, sqlite_url):
    settings, devices, old = synced
    service = GateCheckService(settings)
    store = HubStore(sqlite_url)
    # Spread over half of decision_data_age (60 s) in ticks of 5 s: a sixth of the devices a pass.
    passes = [service.keep_fresh.pass_once() for _ in range(6)]
    assert sum(passes) == len(devices) and max(passes) == math.ceil(len(devices) / 6), passes
    answered = store.lookup_times("eam", sorted(devices), site="NJ01")
    assert set(answered) == devices and min(answered.values()) > old + timedelta(minutes=4)
    assert service.keep_fresh.pass_once() == 0  # all fresh: nothing is asked twice
    asked = eam_requests(fresh_mocks)
    answer = service.check(permit=fixture_permit("PTW-NJ-2026-0001"))
    assert answer.decision == "block" and "OPEN_WORK_ORDER" in {r.code for r in answer.reasons}
    assert answer.eam_refreshed == [] and eam_requests(fresh_mocks) == asked


@pytest.mark.parametrize("fault", [{"kind": "status", "status": 503}, {"kind": "empty"}], ids=["503", "empty"])
def test_an_eam_that_does_not_answer_well_makes_nothing_fresh_and_the_check_blocks(synced, fresh_mocks, sqlite_url, fault):
    settings, devices, old = synced
    service = GateCheckService(settings)
    store = HubStore(sqlite_url)
    set_faults(fresh_mocks, "eam", {"rules": [fault]})
    assert service.keep_fresh.pass_once() == 0
    assert store.lookup_times("eam", sorted(devices), site="NJ01") == {d: old for d in devices}
    set_faults(fresh_mocks, "eam", {"rules": [{"kind": "status", "status": 503}]})
    answer = service.check(permit=fixture_permit("PTW-NJ-2026-0007"))
    assert answer.decision == "block" and "EAM_UNREACHABLE" in {r.code for r in answer.reasons}, answer


def test_one_process_keeps_fresh_while_another_holds_the_lock(synced, sqlite_url):
    settings, devices, old = synced
    service = GateCheckService(settings)
    service.keep_fresh.tick_s = 0.05
    with site_lock(sqlite_url, "all", scope="eam-fresh", wait_s=0):
        service.keep_fresh.start()
        try:
            deadline = datetime.now(timezone.utc) + timedelta(seconds=1)
            while datetime.now(timezone.utc) < deadline:
                assert HubStore(sqlite_url).lookup_times("eam", sorted(devices), site="NJ01") == {d: old for d in devices}
        finally:
            service.keep_fresh.stop()
    assert not service.keep_fresh._thread.is_alive()



def test_the_sites_take_turns_spread_over_the_tick(sqlite_url, make_settings, monkeypatch):
    """Each site once a tick, one at a time with a pause between them: the pulls of every site back
    to back held the checks' CPU and the store's write lock for a second at a time."""
    from hub.store.migrate import upgrade

    upgrade(sqlite_url)
    nowhere = {name: "http://127.0.0.1:9" for name in ("ptw", "eam", "mes", "erp")}
    service = GateCheckService(make_settings(sqlite_url, nowhere, sites=("NJ01", "HZ02", "SH03"), gate_api={"token": "t"}))
    keep_fresh = service.keep_fresh
    keep_fresh.tick_s = 0.6
    calls: list[tuple[str, float]] = []
    monkeypatch.setattr(keep_fresh, "pass_site", lambda site: calls.append((site, time.monotonic())) or 0)
    keep_fresh.start()
    time.sleep(1.5)
    keep_fresh.stop()
    sites = [site for site, _ in calls]
    assert sites[:3] == ["HZ02", "NJ01", "SH03"] and sites == (["HZ02", "NJ01", "SH03"] * 4)[: len(sites)]
    gaps = [b - a for (_, a), (_, b) in zip(calls, calls[1:])]
    assert 3 <= len(calls) <= 1 + 1.5 / 0.2 and min(gaps) >= 0.15, gaps  # 0.2 s apart (later on a busy machine, never sooner)


def test_the_health_endpoint_says_warming_until_every_gated_device_is_fresh(synced, fresh_mocks, sqlite_url, monkeypatch):
    """The probe a deployment (and the bench) waits on before sending load: no token, counts only."""
    settings, devices, old = synced
    service = GateCheckService(settings)
    monkeypatch.setattr("hub.service.app.HEALTH_READ_EVERY_S", 0.0)  # read on every call, as each step here needs
    with running(create_app(settings, service)) as url:
        health = httpx.get(f"{url}/api/v1/health", timeout=10)
        assert health.status_code == 200
        assert health.json() == {"status": "warming", "gated_devices": len(devices), "stale_devices": len(devices), "keep_fresh": True}
        # An EAM that answers nothing well leaves every device stale.
        set_faults(fresh_mocks, "eam", {"rules": [{"kind": "empty"}]})
        service.keep_fresh.pass_once()
        assert httpx.get(f"{url}/api/v1/health", timeout=10).json()["stale_devices"] == len(devices)
        set_faults(fresh_mocks, "eam", {"rules": []})
        first = service.keep_fresh.pass_once()
        assert 0 < first < len(devices)
        assert httpx.get(f"{url}/api/v1/health", timeout=10).json()["stale_devices"] == len(devices) - first
        while service.keep_fresh.pass_once():
            pass
        assert httpx.get(f"{url}/api/v1/health", timeout=10).json() == {
            "status": "fresh", "gated_devices": len(devices), "stale_devices": 0, "keep_fresh": True,
        }


def test_the_health_endpoint_reads_the_store_at_most_once_a_second(synced, monkeypatch):
    """No token guards it, so a flood of probes must not become a flood of store reads beside the checks."""
    settings, devices, old = synced
    service = GateCheckService(settings)
    reads = []
    real = service.keep_fresh.freshness
    monkeypatch.setattr(service.keep_fresh, "freshness", lambda: reads.append(1) or real())
    with running(create_app(settings, service)) as url:
        started = time.monotonic()
        answers = [httpx.get(f"{url}/api/v1/health", timeout=10).json() for _ in range(20)]
        elapsed = time.monotonic() - started
    assert len(reads) <= 1 + math.ceil(elapsed), (len(reads), elapsed)  # once, then at most once per second since
    assert all(a["stale_devices"] == len(devices) for a in answers)


def test_an_open_eam_circuit_never_lets_a_check_allow_on_old_data(synced, fresh_mocks, sqlite_url):
    """Attack on the breaker: the EAM fails keep-fresh's pull and the circuit opens; the EAM then
    recovers, but calls fail fast until the reset. A permit that fresh data would allow must
    still block (EAM_UNREACHABLE), without a request reaching the EAM, and no data age moves."""
    settings, devices, old = synced
    settings = settings.model_copy(update={"breaker_failures": 1, "breaker_reset_s": 60.0})
    service = GateCheckService(settings)
    allowed = fixture_permit("PTW-NJ-2026-0033")  # allowed on fresh data (its device has only closed work)
    set_faults(fresh_mocks, "eam", {"rules": [{"kind": "status", "status": 503}]})
    assert service.keep_fresh.pass_once() == 0
    set_faults(fresh_mocks, "eam", {"rules": []})
    asked = eam_requests(fresh_mocks)
    answer = service.check(permit=allowed)
    assert answer.decision == "block" and "EAM_UNREACHABLE" in {r.code for r in answer.reasons}, answer
    assert "circuit open" in (answer.eam_error or "")
    assert service.keep_fresh.pass_once() == 0
    assert eam_requests(fresh_mocks) == asked  # failed fast: nothing reached the EAM
    assert HubStore(sqlite_url).lookup_times("eam", sorted(devices), site="NJ01") == {d: old for d in devices}
    # Once the circuit closes, the same check asks the EAM and allows: the block was the circuit's.
    close_all_breakers()
    again = service.check(permit=allowed)
    assert again.decision == "allow" and again.eam_refreshed, again
