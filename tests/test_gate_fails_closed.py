"""The gate fails closed, through the real path: the mocks over HTTP/SOAP, Dagster, a real store.

Each test asserts the hold (or its absence) as the mock PTW holds it, and the reason codes.
"""

from datetime import datetime, timedelta, timezone

import httpx
import pytest
from conftest import materialize_sites
from dagster import DagsterInstance, materialize
from sqlalchemy import create_engine, text

from hub.definitions import ASSETS, CHECKS, OTHER_SITES
from hub.resources import resources_from_settings
from hub.store.repository import HubStore


def site_runs(settings, instance, sites=("NJ01", "HZ02")):
    return materialize_sites(
        [*ASSETS, *CHECKS], sites=sites, resources=resources_from_settings(settings), instance=instance, raise_on_error=False
    )


def other_sites_run(settings, instance):
    return materialize(OTHER_SITES, resources=resources_from_settings(settings), instance=instance, raise_on_error=False)


def ptw_holds(mocks) -> dict[str, list[str]]:
    """Ticket -> the reason codes of the hub's hold, as the mock PTW holds it."""
    state = httpx.get(f"{mocks.base_urls['ptw']}/_admin/state", timeout=10).json()["holds"]
    return {ticket: sorted({r["code"] for hold in holds for r in hold["reasons"]}) for ticket, holds in state.items()}


def set_faults(mocks, system: str, plan: dict) -> None:
    httpx.put(f"{mocks.base_urls[system]}/_admin/faults", json=plan, timeout=10).raise_for_status()


def check(result, name: str):
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name][-1:]
    return evaluation


def latest(url: str) -> dict:
    return {d.permit_id: d for d in HubStore(url).latest_gate_decisions()}


# --------------------------------------------------------------------------- identity and contradictory data


def test_two_sites_reusing_a_device_number_are_judged_each_on_its_own(fresh_mocks, sqlite_url, make_settings):
    with DagsterInstance.ephemeral() as instance:
        assert site_runs(make_settings(sqlite_url, fresh_mocks.urls), instance).success
    holds = ptw_holds(fresh_mocks)
    # CT-701 at NJ01 has only closed work; CT-701 at HZ02 is under repair.
    assert "PTW-NJ-2026-0033" not in holds
    assert holds["PTW-HZ-2026-0020"] == ["OPEN_WORK_ORDER"]
    [reason] = latest(sqlite_url)["PTW-HZ-2026-0020"].reasons
    assert reason.evidence["work_order"] == "WO-5046" and reason.device_id == "CT-701"
    store = HubStore(sqlite_url)
    assert store.load_equipment("NJ01", ["CT-701"])["CT-701"].area == "公用工程"
    assert store.load_equipment("HZ02", ["CT-701"])["CT-701"].area == "动力车间"
    assert [r.record_id for r in store.load_maintenance_records("NJ01", ["CT-701"])] == ["WO-1068"]


def test_an_order_still_in_progress_after_its_planned_end_keeps_blocking(fresh_mocks, sqlite_url, make_settings):
    """The EAM moves WO-1058's planned end to before PTW-NJ-2026-0001 starts, and the order stays in
    progress: the plan no longer overlaps the permit, but the work is not finished, so the sync
    keeps the permit blocked (it allowed it when the plan's end was taken as the work's end)."""
    eam = fresh_mocks.base_urls["eam"]
    ended = (datetime.now(timezone(timedelta(hours=8))) - timedelta(days=3)).replace(microsecond=0).isoformat()
    moved = httpx.patch(f"{eam}/_admin/workorders/NJ01/WO-1058", json={"schedstart": None, "schedfinish": ended}, timeout=10)
    assert moved.status_code == 200, moved.text
    with DagsterInstance.ephemeral() as instance:
        assert site_runs(make_settings(sqlite_url, fresh_mocks.urls), instance, sites=("NJ01",)).success
    assert ptw_holds(fresh_mocks)["PTW-NJ-2026-0001"] == ["OPEN_WORK_ORDER"]
    [reason] = latest(sqlite_url)["PTW-NJ-2026-0001"].reasons
    assert reason.evidence["work_order"] == "WO-1058" and reason.evidence["status"] == "in_progress"
    assert reason.evidence["planned_end_passed"] == reason.evidence["window_end"]
    # Finished in the EAM, it clears.
    done = httpx.patch(f"{eam}/_admin/workorders/NJ01/WO-1058", json={"status": "COMP", "status_maxvalue": "COMP"}, timeout=10)
    assert done.status_code == 200, done.text
    with DagsterInstance.ephemeral() as instance:
        assert site_runs(make_settings(sqlite_url, fresh_mocks.urls), instance, sites=("NJ01",)).success
    assert latest(sqlite_url)["PTW-NJ-2026-0001"].decision == "allow"


@pytest.mark.parametrize(
    ("ticket", "code", "evidence"),
    [
        ("PTW-HZ-2026-0021", "DEVICE_UNKNOWN", {"site": "HZ02"}),  # NJ-F-101 exists at NJ01 only
        ("PTW-NJ-2026-0008", "ISOLATION_NOT_RELEASED", {"status": "cancelled", "isolation": "applied"}),
        ("PTW-NJ-2026-0031", "EQUIPMENT_NOT_IN_SERVICE", {"equipment_status": "not_ready"}),
        ("PTW-NJ-2026-0032", "EQUIPMENT_NOT_IN_SERVICE", {"equipment_status": "decommissioned"}),
        ("PTW-HZ-2026-0022", "EAM_RECORD_INVALID", {}),  # status UNDER REPAIR: quarantined
    ],
)
def test_what_the_paperwork_hides_still_blocks(fresh_mocks, sqlite_url, make_settings, ticket, code, evidence):
    with DagsterInstance.ephemeral() as instance:
        assert site_runs(make_settings(sqlite_url, fresh_mocks.urls), instance).success
    assert ptw_holds(fresh_mocks)[ticket] == [code]
    [reason] = latest(sqlite_url)[ticket].reasons
    assert evidence.items() <= reason.evidence.items()


# --------------------------------------------------------------------------- no permit outside the gate


def test_a_permit_of_an_unconfigured_site_is_blocked_counted_and_named(fresh_mocks, sqlite_url, make_settings):
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    with DagsterInstance.ephemeral() as instance:
        assert site_runs(settings, instance).success
        result = other_sites_run(settings, instance)
    assert ptw_holds(fresh_mocks)["PTW-SH-2026-0001"] == ["SITE_NOT_CONFIGURED"]
    [materialization] = result.get_asset_materialization_events()
    metadata = materialization.materialization.metadata
    assert metadata["blocked_site_not_configured"].value == 1 and metadata["dagster/row_count"].value == 1
    evaluation = check(result, "every_permit_within_the_gate")
    assert not evaluation.passed and evaluation.severity.value == "ERROR"
    assert "site SH03 is not configured" in evaluation.metadata["problems"].value
    # The other sites' listing never pulls a configured site's permits again.
    listed = httpx.get(f"{fresh_mocks.base_urls['ptw']}/_admin/received", timeout=10).json()
    listings = [r["query"] for r in listed if r["method"] == "GET" and r["path"] == "/api/v1/permits"]
    assert [q for q in listings if "site" not in q] == [{"exclude_sites": "NJ01,HZ02", "page_size": "500"}]


def test_a_site_left_to_another_hub_is_counted_never_decided(fresh_mocks, sqlite_url, make_settings):
    settings = make_settings(sqlite_url, fresh_mocks.urls, sites_left_to_others=("SH03",))
    with DagsterInstance.ephemeral() as instance:
        result = other_sites_run(settings, instance)
    assert "PTW-SH-2026-0001" not in ptw_holds(fresh_mocks)
    assert "PTW-SH-2026-0001" not in latest(sqlite_url)
    evaluation = check(result, "every_permit_within_the_gate")
    assert evaluation.metadata["permits_left_to_other_hubs"].value == 1
    assert evaluation.metadata["permits_at_unconfigured_sites"].value == 0


def test_a_configured_site_nobody_knows_fails_the_check(fresh_mocks, sqlite_url, make_settings):
    settings = make_settings(sqlite_url, fresh_mocks.urls, sites=("NJ01", "HZ2"))
    with DagsterInstance.ephemeral() as instance:
        assert site_runs(settings, instance, sites=("NJ01",)).success
        result = other_sites_run(settings, instance)
    evaluation = check(result, "every_permit_within_the_gate")
    assert not evaluation.passed
    assert "site HZ2 is unknown to the PTW and the EAM" in evaluation.metadata["problems"].value
    # HZ02 is now outside HUB_SITES: its gated permits are blocked, not forgotten.
    assert ptw_holds(fresh_mocks)["PTW-HZ-2026-0018"] == ["SITE_NOT_CONFIGURED"]


# --------------------------------------------------------------------------- absence of evidence


def age_eam_answers(url: str, by: timedelta) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE lookups SET looked_up_at = :t WHERE system = 'eam'"), {"t": datetime.now(timezone.utc) - by})
    engine.dispose()


def test_eam_down_past_the_freshness_limit_blocks_on_a_warm_store(fresh_mocks, sqlite_url, make_settings):
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    with DagsterInstance.ephemeral() as instance:
        assert site_runs(settings, instance).success
        assert "PTW-NJ-2026-0007" not in ptw_holds(fresh_mocks)
        age_eam_answers(sqlite_url, timedelta(minutes=20))  # the last good answer was 20 minutes ago
        dead = make_settings(sqlite_url, {**fresh_mocks.urls, "eam": "http://127.0.0.1:9/eam/soap"}, retry_attempts=1)
        assert site_runs(dead, instance).success
    holds = ptw_holds(fresh_mocks)
    for ticket in ("PTW-NJ-2026-0007", "PTW-NJ-2026-0033", "PTW-HZ-2026-0018"):
        assert "EAM_DATA_STALE" in holds[ticket], ticket
    decisions = latest(sqlite_url)
    assert all(d.decision == "block" for d in decisions.values())


def all_records(store) -> list:
    return [*store.load_maintenance_records("NJ01", None), *store.load_maintenance_records("HZ02", None)]


def test_an_empty_eam_reply_deletes_nothing_refreshes_nothing_and_blocks(fresh_mocks, sqlite_url, make_settings):
    """A well-formed, self-consistent empty reply (Maximo OSLC, totalCount 0) on a warm store."""
    from hub.settings import SystemEndpoint

    oslc = SystemEndpoint(url=fresh_mocks.urls["eam_oslc"], mapping="eam-maximo-oslc")
    settings = make_settings(sqlite_url, fresh_mocks.urls, eam_full_pull_every_h=0).model_copy(update={"eam": oslc})
    store = HubStore(sqlite_url)
    with DagsterInstance.ephemeral() as instance:
        assert site_runs(settings, instance).success
        before, records = ptw_holds(fresh_mocks), all_records(store)
        answered = store.lookup_times("eam", ["NJ-C-101", "NJ-F-101"], site="NJ01")
        set_faults(fresh_mocks, "eam_oslc", {"rules": [{"kind": "empty"}]})
        result = site_runs(settings, instance)
    assert result.success
    after = ptw_holds(fresh_mocks)
    # Every block stands, with its old reasons; every allow became a block.
    for ticket, codes in before.items():
        assert set(codes) <= set(after[ticket]), ticket
    assert "EAM_REPLY_SUSPECT" in after["PTW-NJ-2026-0007"] and "EAM_REPLY_SUSPECT" in after["PTW-HZ-2026-0018"]
    assert all_records(store) == records
    assert store.lookup_times("eam", ["NJ-C-101", "NJ-F-101"], site="NJ01") == answered
    evaluation = check(result, "eam_replies_trusted")
    assert not evaluation.passed and evaluation.severity.value == "ERROR"


@pytest.mark.parametrize("fault", [{"kind": "empty"}, {"kind": "shrink", "keep": 0.3, "seed": 3}])
def test_a_reply_missing_records_it_counts_is_incomplete_and_changes_nothing(
    fresh_mocks, sqlite_url, make_settings, fault
):
    settings = make_settings(sqlite_url, fresh_mocks.urls, eam_full_pull_every_h=0, retry_attempts=1)
    store = HubStore(sqlite_url)
    with DagsterInstance.ephemeral() as instance:
        assert site_runs(settings, instance).success
        before, records = ptw_holds(fresh_mocks), all_records(store)
        answered = store.lookup_times("eam", ["NJ-C-101", "NJ-F-101"], site="NJ01")
        set_faults(fresh_mocks, "eam", {"rules": [fault]})
        result = site_runs(settings, instance)
    assert result.success
    errors = [m.materialization.metadata["eam_error"].value for m in result.get_asset_materialization_events()
              if m.asset_key.to_user_string() == "equipment"]
    assert all("incomplete" in error for error in errors), errors
    assert all_records(store) == records
    assert store.lookup_times("eam", ["NJ-C-101", "NJ-F-101"], site="NJ01") == answered
    assert ptw_holds(fresh_mocks) == before


def test_a_reply_dropping_most_open_work_orders_is_held_as_suspect(fresh_mocks, sqlite_url, make_settings, tmp_path):
    """The EAM answers consistently, but most open work orders of NJ01 are gone at once."""
    import json
    import shutil
    from pathlib import Path

    from mock_systems.servers import start_systems

    fixtures = Path(__file__).parents[1] / "fixtures"
    shrunk = tmp_path / "fixtures"
    shutil.copytree(fixtures, shrunk)
    orders = json.loads((fixtures / "eam/workorders.json").read_text(encoding="utf-8"))
    kept = [w for w in orders if w["siteid"] != "NJ01" or w["status_maxvalue"] in ("COMP", "CLOSE", "CAN")]
    (shrunk / "eam/workorders.json").write_text(json.dumps(kept, ensure_ascii=False), encoding="utf-8")
    settings = make_settings(sqlite_url, fresh_mocks.urls, eam_full_pull_every_h=0)
    store = HubStore(sqlite_url)
    with DagsterInstance.ephemeral() as instance:
        assert site_runs(settings, instance, sites=("NJ01",)).success
        open_before = store.load_maintenance_records("NJ01", None, unfinished_or_isolated=True)
        with start_systems(shrunk) as other:
            result = site_runs(make_settings(sqlite_url, {**fresh_mocks.urls, "eam": other.urls["eam"]}, eam_full_pull_every_h=0), instance, sites=("NJ01",))
    assert result.success
    assert store.load_maintenance_records("NJ01", None, unfinished_or_isolated=True) == open_before
    holds = ptw_holds(fresh_mocks)
    assert "OPEN_WORK_ORDER" in holds["PTW-NJ-2026-0001"]  # WO-1058 was not deleted
    assert "EAM_REPLY_SUSPECT" in holds["PTW-NJ-2026-0001"]
    evaluation = check(result, "eam_replies_trusted")
    assert not evaluation.passed and "dropped" in evaluation.metadata["suspect_replies"].value


# --------------------------------------------------------------------------- rule changes


def test_rules_diff_names_the_blocks_a_new_rule_file_would_lift(fresh_mocks, sqlite_url, make_settings, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from hub.cli import app
    from hub.logic.rules import RULES_DIR

    with DagsterInstance.ephemeral() as instance:
        assert site_runs(make_settings(sqlite_url, fresh_mocks.urls), instance).success
    shipped = RULES_DIR / "gate.yaml"
    lenient = tmp_path / "gate.yaml"
    lenient.write_text(
        shipped.read_text(encoding="utf-8")
        .replace("version: gate-2026.12-1", "version: gate-lenient")
        .replace("counted_work_order_kinds: [preventive, corrective, inspection, overhaul]", "counted_work_order_kinds: [preventive, inspection, overhaul]"),
        encoding="utf-8",
    )
    monkeypatch.setenv("HUB_DATABASE_URL", sqlite_url)
    result = CliRunner().invoke(app, ["rules", "diff", str(shipped), str(lenient)])
    assert result.exit_code == 1, result.output
    # Corrective work no longer counts: the permits blocked only by open corrective work orders.
    assert "would ALLOW NJ01 PTW-NJ-2026-0001 (blocked now: OPEN_WORK_ORDER)" in result.output
    assert "would ALLOW HZ02 PTW-HZ-2026-0020" in result.output
    assert "PTW-NJ-2026-0002" not in result.output  # preventive work still counts
    same = CliRunner().invoke(app, ["rules", "diff", str(shipped), str(shipped)])
    assert same.exit_code == 0 and "0 block(s) lifted, 0 added" in same.output


# --------------------------------------------------------------------------- the gate always decides


def test_a_failed_eam_step_still_leaves_every_gated_permit_held(fresh_mocks, sqlite_url, make_settings, tmp_path):
    """A WSDL the hub rightly refuses fails the EAM step; Dagster then skips clearance and the
    gate, so the sync gates the site again on what the store knows: nothing, so all block."""
    from hub.sync import run_full_sync

    evil = tmp_path / "eam.wsdl"
    evil.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
        '<definitions xmlns="http://schemas.xmlsoap.org/wsdl/">&x;</definitions>\n',
        encoding="utf-8",
    )
    settings = make_settings(sqlite_url, fresh_mocks.urls).model_copy(update={"eam_wsdl": str(evil)})
    with DagsterInstance.ephemeral() as instance:
        outcome = run_full_sync(settings, instance, log_level="CRITICAL")
        failed_steps = {
            e.step_key for run in outcome.runs for e in instance.all_logs(run.run_id) if e.is_dagster_event and e.dagster_event.event_type_value == "STEP_FAILURE"
        }
    assert not outcome.success and failed_steps == {"eam_pull"}
    assert [(run.site, run.success) for run in outcome.gate_reruns] == [("NJ01", True), ("HZ02", True)]
    holds = ptw_holds(fresh_mocks)
    decisions = latest(sqlite_url)
    gated = [d for d in decisions.values() if d.permit_id != "PTW-SH-2026-0001"]
    assert len(gated) == 28 and all(d.decision == "block" for d in gated)
    assert set(decisions) <= set(holds)  # every decision is held at the PTW
    assert holds["PTW-NJ-2026-0007"] == ["EAM_UNAVAILABLE"]


def test_a_failed_scheduled_sync_requests_the_gate_for_its_site(fresh_mocks, sqlite_url, make_settings, tmp_path):
    """Runs the daemon starts go past `hub sync`: a sensor asks for the gate of a failed site's run."""
    from dagster import DagsterEventType, build_run_status_sensor_context

    from hub.definitions import build_definitions, gate_after_failed_sync

    dead = make_settings(sqlite_url, fresh_mocks.urls).model_copy(update={"eam_wsdl": str(tmp_path / "missing.wsdl")})
    with DagsterInstance.ephemeral() as instance:
        result = build_definitions(dead).resolve_job_def("full_sync").execute_in_process(
            instance=instance, partition_key="HZ02", raise_on_error=False
        )
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        [failure] = instance.all_logs(result.run_id, of_type=DagsterEventType.RUN_FAILURE)
        context = build_run_status_sensor_context(
            sensor_name="gate_after_failed_sync", dagster_event=failure.dagster_event, dagster_instance=instance, dagster_run=run
        ).for_run_failure()
        request = gate_after_failed_sync(context)
    assert request.tags["dagster/partition"] == "HZ02" and request.run_key == f"gate-after/{result.run_id}"


def test_hub_sync_names_a_configured_site_nobody_knows_and_exits_non_zero(fresh_mocks, sqlite_url, make_settings, tmp_path):
    """A typo in HUB_SITES (HZ2 for HZ02): the command says so and fails, and HZ02's permits are still blocked."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from hub.settings import settings_environment

    settings = make_settings(sqlite_url, fresh_mocks.urls, sites=("NJ01", "HZ2"))
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("HUB_") and k != "DAGSTER_HOME"}
    (tmp_path / "home").mkdir()
    env = {**inherited, **settings_environment(settings), "DAGSTER_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("hub")), "sync"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "hub: site HZ2 is unknown to the PTW and the EAM (check HUB_SITES)" in done.stderr
    assert "site HZ02 is not configured (HUB_SITES)" in done.stdout
    assert ptw_holds(fresh_mocks)["PTW-HZ-2026-0001"] == ["SITE_NOT_CONFIGURED"]


def test_an_unreadable_permit_of_an_unconfigured_site_is_blocked_too(fresh_mocks, sqlite_url, make_settings, tmp_path):
    import json
    import shutil
    from pathlib import Path

    from mock_systems.servers import start_systems

    fixtures = tmp_path / "fixtures"
    shutil.copytree(Path(__file__).parents[1] / "fixtures", fixtures)
    permits = json.loads((fixtures / "ptw/permits.json").read_text(encoding="utf-8"))
    broken = dict(next(p for p in permits if p["ticketNo"] == "PTW-SH-2026-0001"), ticketNo="PTW-SH-2026-0002")
    broken["planStartTime"] = "2026-13-45 25:00:00"
    (fixtures / "ptw/permits.json").write_text(json.dumps([*permits, broken], ensure_ascii=False), encoding="utf-8")
    with start_systems(fixtures) as systems, DagsterInstance.ephemeral() as instance:
        settings = make_settings(sqlite_url, {**fresh_mocks.urls, "ptw": systems.urls["ptw"]})
        assert site_runs(settings, instance).success
        other_sites_run(settings, instance)
        state = httpx.get(f"{systems.base_urls['ptw']}/_admin/state", timeout=10).json()["holds"]
    assert [r["code"] for r in state["PTW-SH-2026-0002"][0]["reasons"]] == ["PERMIT_RECORD_INVALID"]
    assert [r["code"] for r in state["PTW-SH-2026-0001"][0]["reasons"]] == ["SITE_NOT_CONFIGURED"]


def test_a_sync_with_nothing_changed_appends_no_decisions_and_writes_no_holds(fresh_mocks, sqlite_url, make_settings):
    from hub.audit import verify

    settings = make_settings(sqlite_url, fresh_mocks.urls)
    with DagsterInstance.ephemeral() as instance:
        assert site_runs(settings, instance).success
        with HubStore(sqlite_url) as store:
            trail, audit = len(store.load_gate_decisions()), len(list(store.iter_audit()))
        received = httpx.get(f"{fresh_mocks.base_urls['ptw']}/_admin/received", timeout=10).json()
        writes = sum(1 for r in received if r["method"] in ("PUT", "DELETE"))
        again = site_runs(settings, instance)
    assert again.success
    with HubStore(sqlite_url) as store:
        assert len(store.load_gate_decisions()) == trail and len(list(store.iter_audit())) == audit
        assert verify(store.iter_audit()).ok
    received = httpx.get(f"{fresh_mocks.base_urls['ptw']}/_admin/received", timeout=10).json()
    assert sum(1 for r in received if r["method"] in ("PUT", "DELETE")) == writes
    changed = [m.materialization.metadata["decisions_changed"].value for m in again.get_asset_materialization_events()
               if m.asset_key.to_user_string() == "permit_gate_decisions"]
    assert changed == [0, 0]


def test_a_blocking_work_order_that_comes_back_unreadable_keeps_its_block(fresh_mocks, sqlite_url, make_settings, tmp_path):
    """A whole pull deletes the stored copies of work orders it did not bring back. A work order
    that comes back unreadable is not brought back (it is quarantined), so its good copy goes:
    the quarantined record must keep the block, and the hold must stay."""
    import json
    import shutil
    from pathlib import Path

    from mock_systems.servers import start_systems

    fixtures = Path(__file__).parents[1] / "fixtures"
    spoilt = tmp_path / "fixtures"
    shutil.copytree(fixtures, spoilt)
    orders = json.loads((fixtures / "eam/workorders.json").read_text(encoding="utf-8"))
    for order in orders:
        if order["wonum"] == "WO-1058":  # the open corrective work behind PTW-NJ-2026-0001
            order["status_maxvalue"] = "NOT-A-STATUS"
    (spoilt / "eam/workorders.json").write_text(json.dumps(orders, ensure_ascii=False), encoding="utf-8")
    settings = make_settings(sqlite_url, fresh_mocks.urls, eam_full_pull_every_h=0)  # every pull is whole
    with DagsterInstance.ephemeral() as instance:
        assert site_runs(settings, instance, sites=("NJ01",)).success
        assert ptw_holds(fresh_mocks)["PTW-NJ-2026-0001"] == ["OPEN_WORK_ORDER"]
        with start_systems(spoilt) as other:
            moved = make_settings(sqlite_url, {**fresh_mocks.urls, "eam": other.urls["eam"]}, eam_full_pull_every_h=0)
            assert site_runs(moved, instance, sites=("NJ01",)).success
    assert "WO-1058" not in {r.record_id for r in HubStore(sqlite_url).load_maintenance_records("NJ01", ["NJ-C-101"])}
    decision = latest(sqlite_url)["PTW-NJ-2026-0001"]
    assert decision.decision == "block" and {r.code for r in decision.reasons} == {"EAM_RECORD_INVALID"}
    assert ptw_holds(fresh_mocks)["PTW-NJ-2026-0001"] == ["EAM_RECORD_INVALID"]
