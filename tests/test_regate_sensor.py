"""The regate_on_change sensor, evaluated directly with a real Dagster instance and the mocks:
an EAM change is re-gated within the tick (the hold written, the decisions reported to Dagster),
or, when it is too large for a tick or its re-gate hits a problem, becomes one run for its site,
and that run writes the hold."""

import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from conftest import materialize_sites
from dagster import DagsterInstance, RunRequest, build_sensor_context

from hub.definitions import ASSETS, CHECKS, build_definitions
from hub.mappings.engine import load_mapping
from hub.resources import resources_from_settings
from hub.settings import SystemEndpoint
from hub.steps.records import map_inbound
from hub.logic.rules import load_gate_rules
from hub.steps.gate import ChangeScope
from hub.steps.regate import Systems, regate_site
from hub.store.repository import HubStore

PLANT = timezone(timedelta(hours=8))


def tick(definitions, settings, instance, cursor=None):
    sensor = definitions.resolve_sensor_def("regate_on_change")
    context = build_sensor_context(instance=instance, cursor=cursor, resources=resources_from_settings(settings))
    return sensor(context)


def holds(base_url: str) -> dict[str, list[str]]:
    state = httpx.get(f"{base_url}/_admin/state", timeout=10).json()["holds"]
    return {t: sorted({r["code"] for h in hs for r in h["reasons"]}) for t, hs in state.items()}


def run_requested(definitions, instance, request):
    """Run a tick's request as the daemon would: its partition, tags and run config."""
    run = definitions.resolve_job_def("regate").execute_in_process(
        instance=instance, partition_key=request.tags["dagster/partition"], tags=dict(request.tags), run_config=request.run_config
    )
    assert run.success
    return {
        e.asset_key.to_user_string(): {k: v.value for k, v in e.metadata.items()}
        for e in run.asset_materializations_for_node("permit_gate_decisions")
    }


def synced(settings, instance):
    assert materialize_sites([*ASSETS, *CHECKS], resources=resources_from_settings(settings), instance=instance).success
    definitions = build_definitions(settings)
    # The first tick may see what the sync itself changed at the PTW (a hold suspends an active permit).
    first = tick(definitions, settings, instance)
    quiet = tick(definitions, settings, instance, first.cursor)
    assert quiet.run_requests == [] and quiet.asset_events == []  # nothing changed since the last tick
    return definitions, quiet.cursor


def open_work_order(eam: str, wonum: str = "WO-1999", device: str = "NJ-P-101") -> None:
    """Opened now (its `changedate`), in progress since before any fixture permit's window, with no
    end: it overlaps PTW-NJ-2026-0007 whatever the day the tests run."""
    opened = httpx.post(f"{eam}/_admin/workorders", timeout=10, json={
        "wonum": wonum, "assetnum": device, "siteid": "NJ01", "worktype": "CM", "status": "INPRG",
        "status_maxvalue": "INPRG", "schedstart": "2026-11-01T08:00:00+08:00",
    })
    assert opened.status_code == 201, opened.text


def events_of(result, asset: str) -> list[dict]:
    return [
        {"partition": e.partition, **{k: v.value for k, v in e.metadata.items()}}
        for e in result.asset_events
        if e.asset_key.to_user_string() == asset
    ]


def test_a_work_order_opened_on_equipment_in_use_is_held_within_the_tick(fresh_mocks, sqlite_url, make_settings):
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    ptw = fresh_mocks.base_urls["ptw"]
    with DagsterInstance.ephemeral() as instance:
        definitions, cursor = synced(settings, instance)
        assert "PTW-NJ-2026-0007" not in holds(ptw)
        open_work_order(fresh_mocks.base_urls["eam"])  # on NJ-P-101, PTW-NJ-2026-0007's only device

        result = tick(definitions, settings, instance, cursor)
        # No run: the tick itself pulled the device, decided its permits and wrote the hold.
        assert result.run_requests == []
        assert holds(ptw)["PTW-NJ-2026-0007"] == ["OPEN_WORK_ORDER"]
        # Every decision reaches Dagster: the gate's materialization on the site's partition names it.
        [gate] = events_of(result, "permit_gate_decisions")
        assert gate["partition"] == "NJ01" and gate["re_gated_by"] == "regate_on_change sensor"
        assert "PTW-NJ-2026-0007" in gate["blocked_permit_ids"].split(", ")
        assert gate["decisions_changed"] == 1 and gate["holds_written"] == 1
        assert {e["partition"] for e in events_of(result, "equipment_clearance")} == {"NJ01"}
        # The decision is on the trail, audited like any other.
        [decision] = HubStore(sqlite_url).latest_gate_decisions(["PTW-NJ-2026-0007"])
        assert decision.decision == "block" and {r.code for r in decision.reasons} == {"OPEN_WORK_ORDER"}
        # Acted on: the next tick has nothing to do.
        after = tick(definitions, settings, instance, result.cursor)
        assert after.run_requests == [] and after.asset_events == []


def test_a_tick_whose_hold_cannot_be_written_hands_the_change_to_a_run(fresh_mocks, sqlite_url, make_settings):
    """A re-gate within the tick that is not whole (here the PTW refuses the hold) is not the
    end of it: the same change becomes a regate run, which Dagster retries until it lands."""
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    ptw = fresh_mocks.base_urls["ptw"]
    with DagsterInstance.ephemeral() as instance:
        definitions, cursor = synced(settings, instance)
        open_work_order(fresh_mocks.base_urls["eam"])
        httpx.put(f"{ptw}/_admin/faults", json={"rules": [{"kind": "status", "status": 503, "method": "PUT"}]}, timeout=10).raise_for_status()
        result = tick(definitions, settings, instance, cursor)
        assert "PTW-NJ-2026-0007" not in holds(ptw)
        [request] = result.run_requests
        assert request.tags["dagster/partition"] == "NJ01"
        assert request.run_config["ops"]["eam_pull"]["config"]["devices"] == ["NJ-P-101"]
        # The block was decided and reported all the same; only its hold is owed.
        [gate] = events_of(result, "permit_gate_decisions")
        assert "PTW-NJ-2026-0007" in gate["blocked_permit_ids"].split(", ") and gate["holds_written"] == 0
        httpx.put(f"{ptw}/_admin/faults", json={"rules": []}, timeout=10).raise_for_status()
        run_requested(definitions, instance, request)
    assert holds(ptw)["PTW-NJ-2026-0007"] == ["OPEN_WORK_ORDER"]


def test_an_empty_eam_reply_during_a_re_gate_in_the_tick_lifts_no_block(fresh_mocks, sqlite_url, make_settings):
    """Attack on the in-tick path: the work order that blocks is closed at the EAM, but the
    re-gate's pull gets an empty reply. Absence of evidence is not clearance: the stored work
    order stays, the device is held as suspect, and the hold stays at the PTW."""
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    ptw, eam = fresh_mocks.base_urls["ptw"], fresh_mocks.base_urls["eam"]
    with DagsterInstance.ephemeral() as instance:
        definitions, cursor = synced(settings, instance)
        open_work_order(eam)
        blocked = tick(definitions, settings, instance, cursor)
        assert holds(ptw)["PTW-NJ-2026-0007"] == ["OPEN_WORK_ORDER"]
    closed = httpx.patch(f"{eam}/_admin/workorders/NJ01/WO-1999", json={"status": "COMP", "status_maxvalue": "COMP"}, timeout=10)
    assert closed.status_code == 200, closed.text
    httpx.put(f"{eam}/_admin/faults", json={"rules": [{"kind": "empty"}]}, timeout=10).raise_for_status()

    resources = {k: r.process_config_and_initialize() for k, r in resources_from_settings(settings).items() if k in ("ptw", "eam")}
    ptw_r, eam_r = resources["ptw"], resources["eam"]
    systems = Systems(
        ptw_r.client, load_mapping(ptw_r.mapping), ptw_r.hold_source, eam_r.client, load_mapping(eam_r.mapping),
        eam_r.full_pull_every_h, eam_r.suspect_drop_share,
    )
    store = HubStore(sqlite_url)
    regated = regate_site(store, systems, load_gate_rules(None), "NJ01", ChangeScope(frozenset(), frozenset({"NJ-P-101"})))

    [decision] = [d for d in regated.decisions if d.permit_id == "PTW-NJ-2026-0007"]
    # The stored open order still blocks; the reply either failed (the sensor then hands the
    # change to a run) or was held as suspect (its devices block until a reply the hub trusts).
    assert decision.decision == "block" and "OPEN_WORK_ORDER" in {r.code for r in decision.reasons}
    assert regated.eam.error is not None or regated.eam.coverage.suspect == ["NJ-P-101"], regated.eam
    assert "PTW-NJ-2026-0007" in holds(ptw)  # never lifted
    assert "WO-1999" in {r.record_id for r in store.load_maintenance_records("NJ01", ["NJ-P-101"])}
    assert json.loads(blocked.cursor)  # the tick that placed the block moved on


def test_a_change_too_large_for_a_tick_becomes_one_run_that_writes_the_hold(fresh_mocks, sqlite_url, make_settings):
    settings = make_settings(sqlite_url, fresh_mocks.urls, regate_in_tick_max=0)
    eam = fresh_mocks.base_urls["eam"]
    with DagsterInstance.ephemeral() as instance:
        definitions, cursor = synced(settings, instance)
        assert "PTW-NJ-2026-0007" not in holds(fresh_mocks.base_urls["ptw"])
        # A corrective work order is opened on NJ-P-101 (PTW-NJ-2026-0007's only device, clear until now).
        open_work_order(eam)

        result = tick(definitions, settings, instance, cursor)
        [request] = result.run_requests
        assert request.tags["dagster/partition"] == "NJ01"
        # The run is scoped to what changed: that device, no permit of its own.
        assert request.run_config["ops"]["permit_gate_decisions"]["config"] == {"permits": [], "devices": ["NJ-P-101"]}
        # A tick repeated before the run stored the change asks for the same run (Dagster dedupes by key).
        again = tick(definitions, settings, instance, cursor)
        assert [r.run_key for r in again.run_requests] == [request.run_key]

        gate = run_requested(definitions, instance, request)["permit_gate_decisions"]
        # Only the permits on NJ-P-101 were decided, and only the one that changed was recorded.
        assert gate["dagster/row_count"] < 5
        assert gate["decisions_changed"] == 1
        # The change was acted on: the next tick starts nothing more.
        assert tick(definitions, settings, instance, result.cursor).run_requests == []

    assert holds(fresh_mocks.base_urls["ptw"])["PTW-NJ-2026-0007"] == ["OPEN_WORK_ORDER"]


def test_equipment_taken_out_of_service_is_a_change_the_sensor_sees(fresh_mocks, sqlite_url, make_settings):
    settings = make_settings(sqlite_url, fresh_mocks.urls, regate_in_tick_max=0)
    eam = fresh_mocks.base_urls["eam"]
    with DagsterInstance.ephemeral() as instance:
        definitions, cursor = synced(settings, instance)
        changed = httpx.patch(f"{eam}/_admin/assets/NJ01/NJ-P-101", json={"status": "DECOMMISSIONED"}, timeout=10)
        assert changed.status_code == 200, changed.text
        [request] = tick(definitions, settings, instance, cursor).run_requests
        assert request.run_config["ops"]["eam_pull"]["config"]["devices"] == ["NJ-P-101"]
        run_requested(definitions, instance, request)
    assert "EQUIPMENT_NOT_IN_SERVICE" in holds(fresh_mocks.base_urls["ptw"])["PTW-NJ-2026-0007"]


def test_a_tick_that_cannot_reach_the_eam_keeps_its_cursor(fresh_mocks, sqlite_url, make_settings):
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    with DagsterInstance.ephemeral() as instance:
        first = tick(build_definitions(settings), settings, instance)
        dead = make_settings(
            sqlite_url, {**fresh_mocks.urls, "eam": "http://127.0.0.1:9/eam/soap"}, retry_attempts=1, connect_timeout_s=0.5
        )
        # Permits in scope give the EAM something to be asked about.
        assert materialize_sites([*ASSETS, *CHECKS], resources=resources_from_settings(settings), instance=instance).success
        result = tick(build_definitions(dead), dead, instance, first.cursor)
    assert result.run_requests == []
    assert json.loads(result.cursor) == json.loads(first.cursor)


def test_news_a_changed_permit_brings_about_its_device_reaches_every_permit_on_it(fresh_mocks, sqlite_url, make_settings):
    """Found by `hub bench --live`: a re-gate run for a new permit pulls its device and learns
    the device is out of service. The active permit on the same device must be decided again in
    that run: the sensor will not report the device, since the store already knows."""
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    ptw, eam = fresh_mocks.base_urls["ptw"], fresh_mocks.base_urls["eam"]
    with DagsterInstance.ephemeral() as instance:
        definitions, cursor = synced(settings, instance)
        assert "PTW-NJ-2026-0007" not in holds(ptw)  # active on NJ-P-101, clear
        httpx.patch(f"{eam}/_admin/assets/NJ01/NJ-P-101", json={"status": "NOT READY"}, timeout=10).raise_for_status()
        start = datetime.now(PLANT).replace(microsecond=0)
        created = httpx.post(f"{ptw}/api/v1/permits", timeout=10, json={
            "ticketType": "GC", "siteCode": "NJ01", "workshop": "公用工程", "equipmentCodes": ["NJ-P-101"],
            "applicant": "a", "guardian": "g", "planStartTime": f"{start:%Y-%m-%d %H:%M:%S}",
            "planEndTime": f"{start + timedelta(hours=4):%Y-%m-%d %H:%M:%S}",
        })
        assert created.status_code == 201, created.text
        ticket = created.json()["ticketNo"]
        # The run a sensor would start for the new permit alone (its device not reported as changed).
        request = RunRequest(
            run_key="new-permit", tags={"dagster/partition": "NJ01"},
            run_config={"ops": {op: {"config": {"permits": [ticket], "devices": []}} for op in ("eam_pull", "equipment_clearance", "permit_gate_decisions")}},
        )
        run_requested(definitions, instance, request)
    held = holds(ptw)
    assert "EQUIPMENT_NOT_IN_SERVICE" in held[ticket]
    assert "EQUIPMENT_NOT_IN_SERVICE" in held["PTW-NJ-2026-0007"]


@pytest.mark.parametrize("flavor", [("eam", "eam"), ("eam_oslc", "eam-maximo-oslc"), ("eam_oslc", "eam-maximo")])
def test_the_site_change_feed_in_both_flavors_serves_only_what_changed(fresh_mocks, sqlite_url, make_settings, flavor):
    """The `changes` operation of each EAM flavor file, against its mock face: since a moment,
    the site's changed assets and work orders and nothing else, never another site's."""
    system, mapping_name = flavor
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    settings = settings.model_copy(update={"eam": SystemEndpoint(url=fresh_mocks.urls[system], mapping=mapping_name)})
    eam = fresh_mocks.base_urls["eam"]  # the SOAP face's admin surface changes both faces
    since = (datetime.now(PLANT) - timedelta(seconds=5)).replace(microsecond=0)
    changed = httpx.patch(f"{eam}/_admin/assets/NJ01/NJ-P-101", json={"status": "NOT READY"}, timeout=10)
    assert changed.status_code == 200, changed.text
    closed = httpx.patch(f"{eam}/_admin/workorders/NJ01/WO-1058", json={"status": "COMP", "status_maxvalue": "COMP"}, timeout=10)
    assert closed.status_code == 200, closed.text
    resource = resources_from_settings(settings)["eam"].process_config_and_initialize()
    mapping = load_mapping(resource.mapping)
    feed = {"equipment": [], "maintenance_record": []}
    with resource.client() as client:
        for page in client.pages("changes", site="NJ01", changed_since=since.isoformat()):
            for kind in feed:
                feed[kind] += map_inbound(mapping, client, kind, page.get(kind, [])).records
    assert [(e.site, e.device_id, e.status) for e in feed["equipment"]] == [("NJ01", "NJ-P-101", "not_ready")]
    assert [(r.site, r.record_id, r.status) for r in feed["maintenance_record"]] == [("NJ01", "WO-1058", "completed")]
    # Another site's feed over the same moment is empty.
    with resource.client() as client:
        other = [page for page in client.pages("changes", site="HZ02", changed_since=since.isoformat())]
    assert not any(page.get("equipment") or page.get("maintenance_record") for page in other)


def _systems(settings) -> Systems:
    resources = {k: r.process_config_and_initialize() for k, r in resources_from_settings(settings).items() if k in ("ptw", "eam")}
    ptw_r, eam_r = resources["ptw"], resources["eam"]
    return Systems(
        ptw_r.client, load_mapping(ptw_r.mapping), ptw_r.hold_source, eam_r.client, load_mapping(eam_r.mapping),
        eam_r.full_pull_every_h, eam_r.suspect_drop_share,
    )


def test_a_regate_judges_the_age_of_the_stored_profiles_it_did_not_refresh(fresh_mocks, sqlite_url, make_settings):
    """A re-gate refreshes only the devices a change touched, and decides each permit on them
    against its other devices' stored profiles. Computed at the last sync, when their data was
    fresh, those profiles say nothing of their age now: the decision judges it again, so data
    older than max_eam_data_age blocks (EAM_DATA_STALE, naming the device), never allows.

    PTW-NJ-2026-0006 is on NJ-T-301, NJ-T-302 and NJ-P-301 (clear once WO-1061 is completed);
    the change is on NJ-T-301 only."""
    from sqlalchemy import update

    from hub.store import tables

    eam = fresh_mocks.base_urls["eam"]
    done = httpx.patch(f"{eam}/_admin/workorders/NJ01/WO-1061", json={"status": "COMP", "status_maxvalue": "COMP"}, timeout=10)
    assert done.status_code == 200, done.text
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    rules = load_gate_rules(None)
    with DagsterInstance.ephemeral() as instance:
        assert materialize_sites([*ASSETS, *CHECKS], resources=resources_from_settings(settings), instance=instance).success
    store = HubStore(sqlite_url)
    [synced_decision] = [d for d in store.latest_gate_decisions(["PTW-NJ-2026-0006"])]
    assert synced_decision.decision == "allow", synced_decision.reasons

    # As if the sync ran max_eam_data_age and 5 minutes ago: the others' profiles and data ages then.
    then = datetime.now(timezone.utc) - rules.max_eam_data_age - timedelta(minutes=5)
    with store.engine.begin() as conn:
        conn.execute(update(tables.device_clearance).where(tables.device_clearance.c.site == "NJ01").values(data_as_of=then))
    regated = regate_site(store, _systems(settings), rules, "NJ01", ChangeScope(frozenset(), frozenset({"NJ-T-301"})))

    [decision] = [d for d in regated.decisions if d.permit_id == "PTW-NJ-2026-0006"]
    assert decision.decision == "block"
    stale = {r.device_id for r in decision.reasons if r.code == "EAM_DATA_STALE"}
    assert stale == {"NJ-T-302", "NJ-P-301"}, decision.reasons  # NJ-T-301 was pulled again just now
    assert "PTW-NJ-2026-0006" in holds(fresh_mocks.base_urls["ptw"])
