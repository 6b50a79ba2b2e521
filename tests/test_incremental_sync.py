"""A second sync does only what changed: EAM work orders since the last answer, costs of newly stored permits."""

import json
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
from dagster import DagsterInstance

from hub.store.repository import HubStore
from mock_systems.servers import start_systems
from test_assets import metadata_of, run_all

REPO = Path(__file__).parents[1]
# CT-701 is a number both sites use: at NJ01 it has only closed work, at HZ02 an open order.
ALLOWED_PERMIT, ITS_SITE, ITS_DEVICE = "PTW-NJ-2026-0033", "NJ01", "CT-701"
# (site, device) pairs of the permits in scope: 20 at NJ01, 15 at HZ02.
DEVICES_IN_SCOPE = 35
# Devices the EAM does not have at the permit's site: they stay new to the hub, pulled whole every run.
NOT_IN_THE_EAM = {("NJ01", "NJ-P-199"), ("HZ02", "NJ-F-101")}
SITES = ("HZ02", "NJ01")


def eam_request_bodies(systems) -> list[str]:
    received = httpx.get(f"{systems.base_urls['eam']}/_admin/received", timeout=10).json()
    return [r["body"] for r in received]


def siteid_of(body: str) -> str:
    """The one site a SOAP request names: the hub never asks for a number at every site."""
    [site] = re.findall(r"<(?:\w+:)?siteid>([^<]*)</(?:\w+:)?siteid>", body)
    return site


def asked_for(body: str) -> set[tuple[str, str]]:
    """(site, device) pairs a SOAP request asks for."""
    site = siteid_of(body)
    return {(site, num) for num in re.findall(r"<(?:\w+:)?assetnum>([^<]*)</(?:\w+:)?assetnum>", body)}


def decisions(database_url: str) -> dict[str, tuple[str, list[str]]]:
    return {
        d.permit_id: (d.decision, sorted(f"{r.code} {r.device_id}" for r in d.reasons))
        for d in HubStore(database_url).latest_gate_decisions()
    }


def test_second_run_asks_for_changes_only_and_decides_the_same(fresh_mocks, sqlite_url, make_settings):
    # The two runs are seconds apart, within the costs' leeway: what the outbox holds is not costed again.
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    with DagsterInstance.ephemeral() as instance:
        first = run_all(settings, instance)
        first_decisions = decisions(sqlite_url)
        second = run_all(settings, instance)
    assert first.success and second.success
    assert metadata_of(first, "equipment")["devices_pulled_whole"] == DEVICES_IN_SCOPE
    assert metadata_of(first, "equipment")["devices_not_found"] == len(NOT_IN_THE_EAM)
    # Every device the EAM answered for is asked only for changes; the ones it does not have stay new.
    assert metadata_of(second, "equipment")["devices_pulled_whole"] == len(NOT_IN_THE_EAM)
    assert metadata_of(second, "equipment")["devices_asked_for_changes"] == DEVICES_IN_SCOPE - len(NOT_IN_THE_EAM)
    bodies = eam_request_bodies(fresh_mocks)
    first_run, second_run = bodies[:2], bodies[2:]  # the first run: one whole request per site
    assert sorted(siteid_of(body) for body in first_run) == list(SITES), "each run asks each site by name"
    assert not any("changedsince" in body for body in first_run)
    assert sum(len(asked_for(body)) for body in first_run) == DEVICES_IN_SCOPE
    whole_again = [body for body in second_run if "changedsince" not in body]
    assert set().union(*(asked_for(body) for body in whole_again)) == NOT_IN_THE_EAM
    changes = [body for body in second_run if "changedsince" in body]
    assert sorted(siteid_of(body) for body in changes) == list(SITES)
    assert sum(len(asked_for(body)) for body in changes) == DEVICES_IN_SCOPE - len(NOT_IN_THE_EAM)
    assert len(second_run) == len(whole_again) + len(changes) == 4
    assert metadata_of(second, "maintenance_records")["dagster/row_count"] < metadata_of(first, "maintenance_records")["dagster/row_count"]
    assert decisions(sqlite_url) == first_decisions
    # Costs: every closed permit once; then only those stored since that the outbox holds no entry of.
    store = HubStore(sqlite_url)
    closed = store.load_permits(statuses=("closed",))
    uncosted = store.load_permits(statuses=("closed",), without_outbox_entries=True)
    assert metadata_of(first, "safety_cost_entries")["permits_costed"] == len(closed) > 10
    assert metadata_of(second, "safety_cost_entries")["permits_costed"] <= len(uncosted) < len(closed)
    assert metadata_of(second, "erp_postings")["outbox_posted"] == metadata_of(first, "erp_postings")["outbox_posted"]
    # Records the changes-only answer did not repeat are kept, not dropped.
    kept = sum(len(HubStore(sqlite_url).load_maintenance_records(site, None)) for site in SITES)
    assert kept == metadata_of(first, "maintenance_records")["dagster/row_count"]


def test_whole_lists_are_pulled_again_when_due(fresh_mocks, sqlite_url, make_settings):
    settings = make_settings(sqlite_url, fresh_mocks.urls, eam_full_pull_every_h=0)
    with DagsterInstance.ephemeral() as instance:
        run_all(settings, instance)
        second = run_all(settings, instance)
    assert metadata_of(second, "equipment")["devices_pulled_whole"] == DEVICES_IN_SCOPE
    bodies = eam_request_bodies(fresh_mocks)
    assert all("changedsince" not in body for body in bodies)
    assert sorted(siteid_of(body) for body in bodies) == ["HZ02", "HZ02", "NJ01", "NJ01"]


def test_a_work_order_opened_after_the_first_run_blocks_the_permit_on_the_next(tmp_path, make_settings):
    plant = tmp_path / "plant"
    shutil.copytree(REPO / "fixtures", plant)
    state, url = tmp_path / "mock_state", f"sqlite:///{tmp_path / 'hub.db'}"
    with DagsterInstance.ephemeral() as instance:
        with start_systems(plant, state_dir=state) as systems:
            assert run_all(make_settings(url, systems.urls), instance).success
        assert decisions(url)[ALLOWED_PERMIT] == ("allow", [])

        permit = next(p for p in json.loads((plant / "ptw/permits.json").read_text("utf-8")) if p["ticketNo"] == ALLOWED_PERMIT)
        local = timezone(timedelta(hours=8))
        workorders = json.loads((plant / "eam/workorders.json").read_text("utf-8"))
        workorders.append(
            {
                "wonum": "WO-1999", "assetnum": ITS_DEVICE, "siteid": ITS_SITE, "worktype": "CM",
                "status": "INPRG", "status_maxvalue": "INPRG",
                "schedstart": permit["planStartTime"].replace(" ", "T") + "+08:00",
                "isolationstate": "NONE",
                "changedate": datetime.now(local).replace(microsecond=0).isoformat(),
            }
        )
        (plant / "eam/workorders.json").write_text(json.dumps(workorders, ensure_ascii=False), "utf-8")
        with start_systems(plant, state_dir=state) as systems:
            second = run_all(make_settings(url, systems.urls), instance)
            bodies = eam_request_bodies(systems)
            # Only devices the EAM does not have are pulled whole again; the rest only for changes.
            assert all("changedsince" in body or asked_for(body) <= NOT_IN_THE_EAM for body in bodies)
            changes = [body for body in bodies if "changedsince" in body]
            assert sorted(siteid_of(body) for body in changes) == list(SITES)
            assert any((ITS_SITE, ITS_DEVICE) in asked_for(body) for body in changes)
    assert metadata_of(second, "maintenance_records")["dagster/row_count"] == 1
    decision, reasons = decisions(url)[ALLOWED_PERMIT]
    assert decision == "block" and reasons == [f"OPEN_WORK_ORDER {ITS_DEVICE}"]
