"""The service keeps the EAM data of gated permits' devices fresh ahead of the checks, and an EAM
that does not answer well makes nothing fresh: against the mock EAM and a real store."""

import math
from datetime import datetime, timedelta, timezone

import pytest
from dagster import DagsterInstance
from test_gate_service import eam_requests, fixture_permit, set_faults

from hub.definitions import ASSETS
from hub.logic.rules import load_gate_rules
from hub.resources import resources_from_settings
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

