"""Small-scale correctness smoke test for the benchmark plant: a full sync agrees with the pure logic,
and the bench reads the analytics assets' share of it from the runs' event log.

A generated plant is served by the mocks and synced through Dagster. The expected gate
decisions and ledger are computed here straight from the generated files, mapped by the hub's
mappings and run through the pure decision and cost logic, never read back from the store.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from dagster import DagsterEventType, DagsterInstance

from hub.bench.phase import RunFigures, figures_of_runs
from hub.definitions import ANALYTICS
from hub.demo import EAM_WSDL
from hub.logic.clearance import SiteEam, build_profiles
from hub.logic.costs import cost_entries
from hub.logic.gate import decide, invalid_permit_decision
from hub.logic.rules import load_cost_rules, load_gate_rules
from hub.mappings.engine import load_mapping
from hub.settings import HubSettings, SystemEndpoint
from hub.store.repository import HubStore
from hub.synthetic_plant import generate_plant
from hub.sync import SyncOutcome, run_full_sync
from mock_systems.servers import start_systems

# Permits whose devices and materials the hub pulls (README: submitted, approved, active, suspended).
SCOPE = ("submitted", "approved", "active", "suspended")


def read(plant: Path, relative: str) -> list[dict]:
    return json.loads((plant / relative).read_text(encoding="utf-8"))


def decision_summary(decision) -> tuple[str, list[tuple[str, str | None]]]:
    return decision.decision, sorted((r.code, r.device_id or "") for r in decision.reasons)


def expected_decisions(plant: Path, now: datetime) -> dict[str, tuple]:
    rules = load_gate_rules()
    permits = load_mapping("ptw").inbound("permit", read(plant, "ptw/permits.json"))
    in_scope = [p for p in permits.records if p.status in SCOPE]
    wanted = {d for p in in_scope for d in p.device_ids}
    eam = load_mapping("eam")
    equipment = eam.inbound("equipment", [a for a in read(plant, "eam/assets.json") if a["assetnum"] in wanted])
    orders = eam.inbound(
        "maintenance_record", [o for o in read(plant, "eam/workorders.json") if o["assetnum"] in wanted]
    )
    expected = {}
    for site in sorted({p.site for p in permits.records}):
        # A device is (site, number): each site's permits are judged on that site's equipment only.
        devices = sorted({d for p in in_scope if p.site == site for d in p.device_ids})
        invalid = defaultdict(list)
        for rejected in orders.quarantined + equipment.quarantined:
            if rejected.partial.get("device_id") and rejected.partial.get("site", site) == site:
                invalid[rejected.partial["device_id"]].append(rejected.reason)
        view = SiteEam(
            site, {e.device_id: e for e in equipment.records if e.site == site}, orders.records,
            dict.fromkeys(devices, now), invalid,
        )
        profiles = build_profiles(devices, view, rules, now)
        for permit in permits.records:
            if permit.site == site and (decision := decide(permit, profiles, rules, now)) is not None:
                expected[permit.permit_id] = decision_summary(decision)
    for rejected in permits.quarantined:
        partial = rejected.partial
        if partial.get("status", "approved") in rules.gated_statuses and (
            partial.get("permit_type", "work_at_height") in rules.gated_permit_types
        ):
            decision = invalid_permit_decision(rejected.source_key, rejected.reason, rules, now)
            expected[rejected.source_key] = decision_summary(decision)
    return expected


def expected_ledger(plant: Path) -> Counter:
    rules = load_cost_rules(plant / "rules/costs.yaml")
    permits = load_mapping("ptw").inbound("permit", read(plant, "ptw/permits.json")).records
    return Counter(
        (e.entry_key, e.site, e.gl_account, e.cost_center, e.amount)
        for p in permits
        if p.status == "closed"
        for e in cost_entries(p, rules)
    )


@dataclass(frozen=True)
class RunsRead:
    figures: RunFigures
    analytics_steps: set[str]  # the steps the analytics assets' materializations came from
    outcome: SyncOutcome


def analytics_materialized_by(instance, run_ids: list[str]) -> set[str]:
    keys = {key for assets in ANALYTICS for key in assets.keys}
    return {
        entry.step_key
        for run_id in run_ids
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
        if entry.asset_materialization.asset_key in keys
    }


@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    """(plant, store, ERP documents, when the sync finished, what the bench read of its runs) after
    one full sync of a generated plant."""
    root = tmp_path_factory.mktemp("bench")
    plant = root / "plant"
    generate_plant(plant, sites=2, permits=1000, devices=200, work_orders=2000, materials=40, seed=21)
    database_url = f"sqlite:///{root / 'hub.db'}"
    with start_systems(plant) as systems:
        settings = HubSettings(
            database_url=database_url,
            **{name: SystemEndpoint(url=systems.urls[name]) for name in ("ptw", "eam", "mes", "erp")},
            eam_wsdl=str(EAM_WSDL),
            cost_rules_file=plant / "rules/costs.yaml",
        )
        with DagsterInstance.ephemeral() as instance:
            since = datetime.now(timezone.utc)
            result = run_full_sync(settings, instance)
            runs = RunsRead(figures_of_runs(instance, since), analytics_materialized_by(instance, result.run_ids), result)
        finished = datetime.now(timezone.utc)
        documents = httpx.get(f"{systems.base_urls['erp']}/_admin/state", timeout=30).json()["documents"]
    assert result.success
    return plant, HubStore(database_url), documents, finished, runs


def test_gate_decisions_equal_the_pure_logic_on_the_generated_records(synced) -> None:
    plant, store, _, finished, _ = synced
    actual = {d.permit_id: decision_summary(d) for d in store.latest_gate_decisions()}
    expected = expected_decisions(plant, finished)
    assert actual == expected
    assert {d for d, _ in expected.values()} == {"allow", "block"}


def test_erp_ledger_holds_each_expected_cost_entry_exactly_once(synced) -> None:
    plant, _, documents, _, _ = synced
    booked = Counter(
        (d["DocumentReferenceID"], d["CompanyCode"], d["GLAccount"], d["CostCenter"], Decimal(d["Amount"]))
        for d in documents
    )
    expected = expected_ledger(plant)
    assert set(expected.values()) == {1}
    assert booked == expected
    assert {site for _, site, *_ in booked} == {"NJ01", "HZ02"}


def test_quarantine_holds_exactly_the_malformed_permits(synced) -> None:
    plant, store, _, _, _ = synced
    manifest = json.loads((plant / "manifest.json").read_text(encoding="utf-8"))
    quarantined = {q["source_key"] for q in store.list_quarantine() if q["system"] == "ptw"}
    assert quarantined == {m["key"] for m in manifest["malformed"] if m["file"] == "ptw/permits.json"}


def test_bench_times_the_analytics_steps_of_each_site_run(synced) -> None:
    *_, runs = synced
    # Single-asset ops: the steps the bench times by op name are those the analytics materialized from.
    assert runs.analytics_steps == {assets.op.name for assets in ANALYTICS}
    assert not runs.figures.failed
    site_runs_s = sum(run.duration_s for run in runs.outcome.runs)
    assert 0 < runs.figures.analytics_s < site_runs_s
