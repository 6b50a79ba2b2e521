"""The regate_on_change sensor, evaluated directly with a real Dagster instance and the mocks:
an EAM change becomes one run for its site, and that run writes the hold."""

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
from conftest import materialize_sites
from dagster import DagsterInstance, build_sensor_context

from hub.definitions import ASSETS, CHECKS, build_definitions
from hub.resources import resources_from_settings
from mock_systems.servers import start_systems

FIXTURES = Path(__file__).parents[1] / "fixtures"
PLANT = timezone(timedelta(hours=8))


def tick(definitions, settings, instance, cursor=None):
    sensor = definitions.resolve_sensor_def("regate_on_change")
    context = build_sensor_context(instance=instance, cursor=cursor, resources=resources_from_settings(settings))
    return sensor(context)


def holds(base_url: str) -> dict[str, list[str]]:
    state = httpx.get(f"{base_url}/_admin/state", timeout=10).json()["holds"]
    return {t: sorted({r["code"] for h in hs for r in h["reasons"]}) for t, hs in state.items()}


def test_a_work_order_opened_on_equipment_in_use_is_gated_within_a_tick(fresh_mocks, sqlite_url, make_settings, tmp_path):
    settings = make_settings(sqlite_url, fresh_mocks.urls)
    # The same plant, where a corrective work order has just been opened on NJ-P-101
    # (PTW-NJ-2026-0007's only device, clear until now).
    changed = tmp_path / "fixtures"
    shutil.copytree(FIXTURES, changed)
    orders = json.loads((FIXTURES / "eam/workorders.json").read_text(encoding="utf-8"))
    now = datetime.now(PLANT).replace(microsecond=0)
    orders.append({
        "wonum": "WO-1999", "assetnum": "NJ-P-101", "siteid": "NJ01", "worktype": "CM", "status": "INPRG",
        "status_maxvalue": "INPRG", "schedstart": (now - timedelta(hours=1)).isoformat(), "isolationstate": "NONE",
        "changedate": now.isoformat(),
    })
    (changed / "eam/workorders.json").write_text(json.dumps(orders, ensure_ascii=False), encoding="utf-8")

    with DagsterInstance.ephemeral() as instance:
        assert materialize_sites([*ASSETS, *CHECKS], resources=resources_from_settings(settings), instance=instance).success
        assert "PTW-NJ-2026-0007" not in holds(fresh_mocks.base_urls["ptw"])
        definitions = build_definitions(settings)
        # The first tick may see what the sync itself changed at the PTW (a hold suspends an active permit).
        first = tick(definitions, settings, instance)
        quiet = tick(definitions, settings, instance, first.cursor)
        assert quiet.run_requests == []  # nothing changed since the last tick

        with start_systems(changed) as eam:
            moved = make_settings(sqlite_url, {**fresh_mocks.urls, "eam": eam.urls["eam"]})
            result = tick(build_definitions(moved), moved, instance, quiet.cursor)
            assert [r.tags["dagster/partition"] for r in result.run_requests] == ["NJ01"]
            [request] = result.run_requests
            run = build_definitions(moved).resolve_job_def("regate").execute_in_process(
                instance=instance, partition_key="NJ01", tags={**request.tags}
            )
            assert run.success
            # The change was acted on: the next tick starts nothing more.
            assert tick(build_definitions(moved), moved, instance, result.cursor).run_requests == []

    assert holds(fresh_mocks.base_urls["ptw"])["PTW-NJ-2026-0007"] == ["OPEN_WORK_ORDER"]


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
