"""Quarantine: listed with reasons, replayed after a mapping fix, then flowing on like any record."""

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import httpx
from conftest import materialize_sites
from dagster import DagsterInstance
from typer.testing import CliRunner

from hub.assets.common import quarantine_rejects
from hub.cli import app
from hub.definitions import ASSETS, CHECKS
from hub.demo import Face
from hub.mappings.engine import load_mapping
from hub.resources import resources_from_settings
from hub.settings import SystemEndpoint, settings_environment
from hub.store.migrate import upgrade
from hub.store.repository import HubStore

REPO = Path(__file__).parents[1]
PACKAGED_PTW = REPO / "hub/mappings/ptw.yaml"


def fixture_permit(ticket: str) -> dict:
    permits = json.loads((REPO / "fixtures/ptw/permits.json").read_text(encoding="utf-8"))
    return next(p for p in permits if p["ticketNo"] == ticket)


def quarantine_with(mapping_path: Path, store: HubStore, records: list[dict]) -> None:
    mapping = load_mapping(mapping_path)
    result = mapping.inbound("permit", records)
    assert not result.records
    quarantine_rejects(store, "ptw", mapping, result.quarantined)


def test_list_shows_reasons_and_replay_after_fix_flows_on(tmp_path, fresh_mocks, make_settings):
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    upgrade(url)
    store = HubStore(url)
    site_mapping = tmp_path / "ptw-site.yaml"
    shutil.copy(PACKAGED_PTW, site_mapping)
    # A site's PTW sends a permit type code the mapping does not know yet.
    quarantine_with(site_mapping, store, [fixture_permit("PTW-HZ-2026-0016")])
    runner = CliRunner()

    listed = runner.invoke(app, ["quarantine", "list", "--database-url", url], terminal_width=200)
    assert listed.exit_code == 0, listed.output
    assert "PTW-HZ-2026-0016" in listed.output and "unknown value 'XX'" in listed.output

    still = runner.invoke(app, ["quarantine", "replay", "--database-url", url], terminal_width=200)
    assert still.exit_code == 1
    assert "still failing" in still.output and "0 replayed, 1 still failing" in still.output

    # The IT team learns XX is this site's code for work at height and fixes the mapping.
    text = site_mapping.read_text(encoding="utf-8")
    assert "GC: work_at_height" in text
    site_mapping.write_text(text.replace("GC: work_at_height", "GC: work_at_height\n          XX: work_at_height"), encoding="utf-8")
    fixed = runner.invoke(app, ["quarantine", "replay", "--database-url", url], terminal_width=200)
    assert fixed.exit_code == 0, fixed.output
    assert "1 replayed, 0 still failing" in fixed.output

    [permit] = [p for p in store.load_permits() if p.permit_id == "PTW-HZ-2026-0016"]
    assert permit.permit_type == "work_at_height"
    assert store.list_quarantine() == []
    [row] = store.list_quarantine(include_resolved=True)
    assert row["replayed_at"] is not None

    # It flows on: with the site's fixed mapping configured, the next run gates it like any
    # other permit instead of blocking it as an unreadable record.
    settings = make_settings(url, fresh_mocks.urls)
    settings.ptw.mapping = str(site_mapping)
    with DagsterInstance.ephemeral() as instance:
        result = materialize_sites([*ASSETS, *CHECKS], resources=resources_from_settings(settings), instance=instance)
    assert result.success
    decision = {d.permit_id: d for d in store.latest_gate_decisions()}["PTW-HZ-2026-0016"]
    assert "PERMIT_RECORD_INVALID" not in {r.code for r in decision.reasons}
    assert decision.rule_version


def test_replayed_eam_record_keeps_its_receive_time(tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    upgrade(url)
    store = HubStore(url)
    mapping_path = tmp_path / "eam-site.yaml"
    shutil.copy(REPO / "hub/mappings/eam.yaml", mapping_path)
    mapping = load_mapping(mapping_path)
    bad = {"wonum": "WO-9", "assetnum": "NJ-P-101", "siteid": "NJ01", "worktype": "CM", "status": "HOLD",
           "status_maxvalue": "HOLD", "isolationstate": "NONE", "changedate": "2026-11-20T08:00:00+08:00"}
    result = mapping.inbound("maintenance_record", [bad])
    quarantine_rejects(store, "eam", mapping, result.quarantined)
    received = store.list_quarantine()[0]["created_at"]

    mapping_path.write_text(
        mapping_path.read_text(encoding="utf-8").replace("WMATL: in_progress", "WMATL: in_progress\n          HOLD: approved"),
        encoding="utf-8",
    )
    runner = CliRunner()
    done = runner.invoke(app, ["quarantine", "replay", "--database-url", url])
    assert done.exit_code == 0, done.output
    [record] = store.load_maintenance_records("NJ01", ["NJ-P-101"])
    assert record.site == "NJ01"
    assert record.status == "approved"
    from sqlalchemy import text
    with store.engine.connect() as conn:
        fetched = conn.execute(text("SELECT fetched_at FROM maintenance_records")).scalar_one()
    assert datetime.fromisoformat(str(fetched)).replace(tzinfo=timezone.utc) == received


def test_a_record_not_in_a_lookup_table_is_replayed_once_the_system_has_the_value(tmp_path, fresh_mocks, make_settings):
    """A Maximo work order whose status label is in no row of the site's synonym domain is held;
    once the site uses that label for an internal value, `hub quarantine replay` (a process of
    its own, as an operator runs it) fetches the domain again and the record flows on."""
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    settings = make_settings(url, fresh_mocks.urls)
    settings.eam = SystemEndpoint(url=Face("eam_oslc", "eam-maximo").url(fresh_mocks), mapping="eam-maximo")
    with DagsterInstance.ephemeral() as instance:
        assert materialize_sites([*ASSETS, *CHECKS], resources=resources_from_settings(settings), instance=instance).success
    store = HubStore(url)
    [held] = [r for r in store.list_quarantine(system="eam") if r["source_key"] == "HZ02/WO-5045"]
    assert "'BOGUS' is not in look-up table wo_status" in held["reason"]

    # The site starts using BOGUS as its label for work in progress.
    opened = httpx.post(f"{fresh_mocks.base_urls['eam']}/_admin/workorders", timeout=10, json={
        "wonum": "WO-5999", "assetnum": "HZ-E-101", "siteid": "HZ02", "worktype": "CM", "status": "BOGUS",
        "status_maxvalue": "INPRG", "schedstart": "2026-12-14T08:00:00+08:00",
    })
    assert opened.status_code == 201, opened.text
    hub = Path(sys.executable).with_name("hub")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")} | settings_environment(settings)
    done = subprocess.run([str(hub), "quarantine", "replay", str(held["id"])], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 replayed, 0 still failing" in done.stdout
    [record] = [r for r in store.load_maintenance_records("HZ02", ["HZ-E-101"]) if r.record_id == "WO-5045"]
    assert record.status == "in_progress"
