"""The fixture plant synced per site three ways gives the same gate, holds and ledger.

Each sync runs on reset mocks, a fresh store schema and a fresh Dagster instance on
PostgreSQL configured by `deploy/dagster.yaml`. The Celery case needs the local RabbitMQ:
the workers are started and stopped by the code under test; a broker that is down fails
the test with the broker's error.
"""

import os
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from dagster import DagsterEventType, DagsterInstance
from dagster._core.instance.ref import InstanceRef
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hub.store.repository import HubStore
from hub.sync import run_full_sync
from conftest import PG_URL

REPO = Path(__file__).parents[1]
SITES = ["NJ01", "HZ02"]


@pytest.fixture
def dagster_instance(tmp_path, monkeypatch):
    """A Dagster instance from deploy/dagster.yaml, on a database of its own (dropped afterwards)."""

    def make() -> DagsterInstance:
        database = f"hub_dagster_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        databases.append(database)
        monkeypatch.setenv("DAGSTER_PG_URL", make_url(PG_URL).set(database=database).render_as_string(hide_password=False))
        home = tmp_path / database
        home.mkdir()
        ref = InstanceRef.from_dir(str(home), config_dir=str(REPO / "deploy"))
        instances.append(DagsterInstance.from_ref(ref))
        return instances[-1]

    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    databases: list[str] = []
    instances: list[DagsterInstance] = []
    yield make
    for instance in instances:
        instance.dispose()
    with admin.connect() as conn:
        for database in databases:
            conn.execute(text(f'DROP DATABASE "{database}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def fresh_schema():
    """A throwaway store schema per call, like conftest's `pg_url`, for several syncs in one test."""
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    schemas: list[str] = []

    def make() -> str:
        schemas.append(f"test_{uuid.uuid4().hex}")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schemas[-1]}"'))
        url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schemas[-1]}"})
        return url.render_as_string(hide_password=False)

    yield make
    with admin.connect() as conn:
        for schema in schemas:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def admin_state(mocks, system: str) -> dict:
    return httpx.get(f"{mocks.base_urls[system]}/_admin/state", timeout=10).json()


def sync(executor, mocks, make_settings, fresh_schema, dagster_instance) -> dict:
    """Sync the fixture plant with `executor` on reset mocks; what the store and the mocks then hold."""
    with httpx.Client(timeout=10) as client:
        for base_url in mocks.base_urls.values():
            client.post(f"{base_url}/_admin/reset").raise_for_status()
    settings = make_settings(fresh_schema(), mocks.urls)
    instance = dagster_instance()
    outcome = run_full_sync(settings, instance, executor=executor)
    assert outcome.success, outcome

    store = HubStore(settings.database_url)
    decisions = {
        d.permit_id: (d.decision, sorted((r.code, r.device_id or "") for r in d.reasons))
        for d in store.latest_gate_decisions()
    }
    store.dispose()
    holds = {
        ticket: sorted((h["action"], sorted((r["code"], r.get("deviceId") or "") for r in h["reasons"])) for h in held)
        for ticket, held in admin_state(mocks, "ptw")["holds"].items()
    }
    ledger = Counter(
        (d["DocumentReferenceID"], d["CompanyCode"], d["GLAccount"], d["CostCenter"], d["Amount"])
        for d in admin_state(mocks, "erp")["documents"]
    )
    every_run = [instance.get_run_by_id(run_id) for run_id in outcome.run_ids]
    # The sites' runs; the permits of sites outside HUB_SITES are one more run, made in this process.
    runs = [run for run in every_run if run.job_name == "full_sync"]
    others = [run.job_name for run in every_run if run.job_name != "full_sync"]
    events = {run.run_id: instance.all_logs(run.run_id) for run in runs}
    return {"decisions": decisions, "holds": holds, "ledger": ledger, "runs": runs, "others": others, "events": events}


def assert_same_outcome(expected: dict, actual: dict) -> None:
    assert actual["decisions"] == expected["decisions"]
    assert actual["holds"] == expected["holds"]
    assert actual["ledger"] == expected["ledger"]
    assert set(actual["ledger"].values()) == {1}, "an entry was booked more than once"


def assert_one_run_per_site(synced: dict) -> None:
    assert sorted(run.tags["dagster/partition"] for run in synced["runs"]) == sorted(SITES)
    assert len({run.run_id for run in synced["runs"]}) == len(SITES)
    # Then the permits of sites outside HUB_SITES, once for the whole plant.
    assert synced["others"] == ["other_sites_sync"]


def pids_of(entries, event_type: DagsterEventType) -> set[int]:
    return {e.dagster_event.pid for e in entries if e.dagster_event and e.dagster_event.event_type == event_type}


def step_pids(entries) -> set[int]:
    """The processes that executed the steps (the orchestrator logs other step events itself)."""
    return pids_of(entries, DagsterEventType.STEP_START)


def run_pid(entries) -> int:
    [pid] = pids_of(entries, DagsterEventType.RUN_START)
    return pid


@pytest.fixture
def in_process(fresh_mocks, make_settings, fresh_schema, dagster_instance) -> dict:
    synced = sync("in_process", fresh_mocks, make_settings, fresh_schema, dagster_instance)
    assert_one_run_per_site(synced)
    # The fixture plant's gate and ledger, so that "the same" cannot mean "the same nothing".
    assert Counter(decision for decision, _ in synced["decisions"].values()) == {"block": 21, "allow": 8}
    assert len(synced["ledger"]) == 83 and {key[1] for key in synced["ledger"]} == set(SITES)
    for run_id, entries in synced["events"].items():
        assert step_pids(entries) == {os.getpid()}, run_id
    return synced


def test_multiprocess_runs_sites_in_their_own_processes(in_process, fresh_mocks, make_settings, fresh_schema, dagster_instance):
    synced = sync("multiprocess", fresh_mocks, make_settings, fresh_schema, dagster_instance)
    assert_same_outcome(in_process, synced)
    assert_one_run_per_site(synced)
    orchestrators = {run_pid(entries) for entries in synced["events"].values()}
    assert len(orchestrators) == len(SITES) and os.getpid() not in orchestrators
    for entries in synced["events"].values():
        pids = step_pids(entries)
        assert pids and not pids & (orchestrators | {os.getpid()})


def test_celery_runs_steps_on_the_workers_it_starts(in_process, fresh_mocks, make_settings, fresh_schema, dagster_instance):
    synced = sync("celery", fresh_mocks, make_settings, fresh_schema, dagster_instance)
    assert_same_outcome(in_process, synced)
    assert_one_run_per_site(synced)
    orchestrators = {run_pid(entries) for entries in synced["events"].values()}
    workers = set()
    for entries in synced["events"].values():
        pids = step_pids(entries)
        assert pids and not pids & (orchestrators | {os.getpid()})
        workers |= {
            e.dagster_event.event_specific_data.metadata["Celery worker"].value
            for e in entries
            if e.dagster_event and e.dagster_event.event_type == DagsterEventType.ENGINE_EVENT
            and "Celery worker" in (e.dagster_event.event_specific_data.metadata or {})
        }
    # The two workers of this sync, named after its own queue, took the steps of both runs.
    assert len(workers) == 2 and all(name.startswith("hub-sync-") for name in workers)
    assert len({name.split("-")[2] for name in workers}) == 1


def test_sync_command_refuses_a_site_outside_hub_sites(tmp_path):
    from typer.testing import CliRunner

    from hub.cli import app

    env = {"DAGSTER_HOME": str(tmp_path), "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.db'}"}
    result = CliRunner().invoke(app, ["sync", "--executor", "multiprocess", "--sites", "NJ01,XX09"], env=env)
    assert result.exit_code == 2
    assert "XX09" in result.output and "NJ01, HZ02" in result.output
