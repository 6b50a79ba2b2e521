"""`hub bench`: the floor replays the hub's requests, the naive connector is per record and agrees
with the hub, the report's arithmetic, and the command end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from dagster import DagsterInstance

from hub.assets.common import SYNC_SCOPE_STATUSES
from hub.bench.floor import replay
from hub.bench.mocks_process import PLANT_SYSTEMS
from hub.bench.naive import run_naive
from hub.bench.report import BenchReport, PhaseFigures
from hub.bench.run import EAM_WSDL, ChildRun, _extrapolated
from hub.logic.costs import cost_entries
from hub.logic.rules import load_cost_rules
from hub.mappings.engine import load_mapping
from hub.settings import HubSettings, SystemEndpoint
from hub.store.repository import HubStore
from hub.sync import run_full_sync

REPO_ROOT = Path(__file__).parents[1]
FIXTURES = REPO_ROOT / "fixtures"


def received(mocks, system: str) -> list[dict]:
    return httpx.get(f"{mocks.base_urls[system]}/_admin/received", timeout=30).json()


def reset(mocks) -> None:
    for base_url in mocks.base_urls.values():
        httpx.post(f"{base_url}/_admin/reset", timeout=30).raise_for_status()


def sent(entries: list[dict]) -> list[tuple]:
    return [(e["method"], e["path"], e["query"], e["body"], e["headers"]) for e in entries]


def decision_summary(decisions) -> dict[str, tuple]:
    return {d.permit_id: (d.decision, sorted((r.code, r.device_id or "") for r in d.reasons)) for d in decisions}


@pytest.fixture(scope="module")
def hub_run(mock_systems, tmp_path_factory):
    """One full hub sync of the fixture plant: what it sent to each system and what it decided."""
    reset(mock_systems)
    database_url = f"sqlite:///{tmp_path_factory.mktemp('hub') / 'hub.db'}"
    settings = HubSettings(
        database_url=database_url,
        eam_wsdl=str(EAM_WSDL),
        **{system: SystemEndpoint(url=mock_systems.urls[system]) for system in PLANT_SYSTEMS},
    )
    with DagsterInstance.ephemeral() as instance:
        assert run_full_sync(settings, instance).success
    requests = {system: received(mock_systems, system) for system in PLANT_SYSTEMS}
    return requests, decision_summary(HubStore(database_url).latest_gate_decisions())


def test_floor_replays_exactly_the_hubs_requests(hub_run, fresh_mocks):
    requests, _ = hub_run
    assert all(requests[system] for system in PLANT_SYSTEMS)

    assert replay(requests, fresh_mocks.urls, dict.fromkeys(PLANT_SYSTEMS, 3)) == 0  # the statuses the hub got

    for system in PLANT_SYSTEMS:
        replayed = sent(received(fresh_mocks, system))
        # Reads in the hub's order; writes in the same runs, in any order within a run.
        assert [r for r in replayed if r[0] == "GET"] == [r for r in sent(requests[system]) if r[0] == "GET"], system
        assert sorted(map(repr, replayed)) == sorted(map(repr, sent(requests[system]))), system


def test_naive_connector_calls_per_record_and_decides_as_the_hub(hub_run, fresh_mocks, make_settings, tmp_path):
    _, hub_decisions = hub_run
    settings = make_settings(f"sqlite:///{tmp_path / 'naive.db'}", fresh_mocks.urls)

    outcome = run_naive(settings)

    permits = load_mapping("ptw").inbound("permit", json.loads((FIXTURES / "ptw/permits.json").read_text())).records
    # Permits of sites outside HUB_SITES are blocked without a lookup, by the hub and the naive connector alike.
    in_scope = [p for p in permits if p.status in SYNC_SCOPE_STATUSES and p.site in settings.sites]
    rules = load_cost_rules(None)
    entries = [e for p in permits if p.status == "closed" for e in cost_entries(p, rules)]
    eam, mes, erp, ptw = (received(fresh_mocks, s) for s in ("eam", "mes", "erp", "ptw"))
    assert len(eam) == sum(len(p.device_ids) for p in in_scope)  # one call per device occurrence
    assert all(e["body"].count("assetnum>") == 2 for e in eam)  # one assetnum each: opening and closing tag
    assert all("siteid>" in e["body"] for e in eam)  # each asked at its permit's site
    assert len(mes) == sum(len(p.material_names) for p in in_scope)
    assert [e["path"] for e in erp] == ["/api/v1/journal-entries"] * len(entries)
    assert outcome.erp_entries == len(entries) > 0
    assert decision_summary(outcome.decisions) == hub_decisions
    blocked = sum(1 for decision, _ in hub_decisions.values() if decision == "block")
    assert sum(1 for e in ptw if e["method"] == "PUT") == blocked > 0


def figures(wall_s: float, rss: float = 100.0, calls: int = 1, analytics_s: float | None = None) -> PhaseFigures:
    calls_of = dict.fromkeys(PLANT_SYSTEMS, calls)
    return PhaseFigures(wall_s=wall_s, startup_s=1.0, calls=calls_of, records=1000, peak_rss_mib=rss, analytics_s=analytics_s)


def report_of(**phases: PhaseFigures) -> BenchReport:
    run = {"scale": "large", "seed": 1, "db": "sqlite", "dagster_storage": "sqlite", "date": "2026-11-29T00:00:00+00:00", "plant": "p"}
    machine = {"cores": 2, "python": "3.11", "dagster": "1.13.27", "platform": "linux"}
    return BenchReport(machine=machine, run=run, phases=phases)


def test_report_computes_ratios_and_verdicts():
    met = report_of(
        floor=figures(10),
        naive=figures(400),
        hub_full=figures(12, 900, analytics_s=0.6),
        analytics=figures(3, 600),
        hub_incremental=figures(0.5, 950),
    )
    assert {r["name"]: (pytest.approx(r["value"]), r["met"]) for r in met.ratios()} == {
        "hub_vs_floor": (pytest.approx(1.2), True),
        "naive_vs_hub": (pytest.approx(400 / 12), True),
        "incremental_vs_full": (pytest.approx(0.5 / 12), True),
        "hub_peak_rss_mib": (pytest.approx(950), True),
        "analytics_vs_full": (pytest.approx(0.05), True),
        "analytics_peak_rss_vs_full": (pytest.approx(600 / 900), True),
    }
    missed = report_of(
        floor=figures(10),
        naive=figures(100),
        hub_full=figures(20, 2000, analytics_s=5),
        analytics=figures(4, 2100),
        hub_incremental=figures(2),
    )
    assert {r["name"]: r["met"] for r in missed.ratios()} == dict.fromkeys(
        ("hub_vs_floor", "naive_vs_hub", "incremental_vs_full", "hub_peak_rss_mib", "analytics_vs_full", "analytics_peak_rss_vs_full"),
        False,
    )
    assert {r["name"]: r["met"] for r in report_of(hub_full=figures(12)).ratios()}["hub_vs_floor"] is None


@pytest.mark.parametrize(
    ("full_analytics_s", "analytics_rss", "shares", "met"),
    [
        (1.0, 400.0, (0.1, 1.0), True),  # both at their limits
        (1.5, 401.0, (0.15, 1.0025), False),
        (None, None, (None, None), None),  # the full sync gave no step times, the analytics phase did not run
    ],
)
def test_analytics_ratios_share_of_the_full_sync(full_analytics_s, analytics_rss, shares, met):
    phases = {"hub_full": figures(10, 400, analytics_s=full_analytics_s)}
    if analytics_rss is not None:
        phases["analytics"] = figures(99, analytics_rss, analytics_s=1.0)  # its own wall and steps do not count
    ratios = {r["name"]: r for r in report_of(**phases).ratios()}
    for name, share in zip(("analytics_vs_full", "analytics_peak_rss_vs_full"), shares):
        assert ratios[name]["value"] == (None if share is None else pytest.approx(share)), name
        assert ratios[name]["met"] is met, name


def test_analytics_ratios_need_the_full_sync():
    ratios = {r["name"]: r["value"] for r in report_of(analytics=figures(3, 200, analytics_s=1.0)).ratios()}
    assert ratios["analytics_vs_full"] is None
    assert ratios["analytics_peak_rss_vs_full"] is None


def test_sampled_naive_run_is_extrapolated_by_permit_count():
    outcome = {"notes": [], "success": True, "records": {"permits": 10}, "listing_s": 3.0, "listing_calls": 2}
    child = ChildRun(wall_s=15.0, startup_s=2.0, peak_rss_mib=150.0, outcome=outcome)
    scaled = _extrapolated(child, dict.fromkeys(PLANT_SYSTEMS, 7), records=5000, every=10, total=100)
    assert scaled.wall_s == pytest.approx(2.0 + 3.0 + 10.0 * 10)  # start-up and listing are paid once
    assert scaled.calls == {**dict.fromkeys(PLANT_SYSTEMS, 70), "ptw": 2 + 5 * 10}
    assert scaled.records == 5000
    assert scaled.note == "sampled every 10th permit (10 of 100), per-permit work extrapolated"


def test_naive_sample_is_spread_over_the_whole_listing(fresh_mocks, make_settings, tmp_path):
    settings = make_settings(f"sqlite:///{tmp_path / 'naive.db'}", fresh_mocks.urls)
    outcome = run_naive(settings, every=5)
    listed = json.loads((FIXTURES / "ptw/permits.json").read_text())
    assert outcome.permits_listed == len(listed) == 69
    assert outcome.permits_synced == 14  # positions 0, 5, ..., 65
    assert outcome.listing_calls == sum(1 for e in received(fresh_mocks, "ptw") if e["method"] == "GET") >= 1


def test_json_has_the_documented_keys(tmp_path):
    report = report_of(
        floor=figures(10), naive=figures(400), hub_full=figures(12, analytics_s=1), analytics=figures(2), hub_incremental=figures(1)
    )
    report.write_json(tmp_path / "bench.json")
    data = json.loads((tmp_path / "bench.json").read_text())
    assert set(data) == {"machine", "run", "phases", "ratios", "notes"}
    assert set(data["machine"]) == {"cores", "python", "dagster", "platform"}
    assert set(data["run"]) == {"scale", "seed", "db", "dagster_storage", "date", "plant"}
    assert set(data["phases"]) == {"floor", "naive", "hub_full", "analytics", "hub_incremental"}
    for phase in data["phases"].values():
        assert set(phase) == {
            "wall_s", "startup_s", "calls", "records", "records_per_s", "peak_rss_mib", "analytics_s", "steps_s", "note"
        }
        assert set(phase["calls"]) == set(PLANT_SYSTEMS)
    for ratio in data["ratios"]:
        assert set(ratio) == {"name", "description", "value", "target", "comparison", "met"}


def test_hub_bench_end_to_end_prints_the_table(tmp_path):
    hub = Path(sys.executable).with_name("hub")
    json_path = tmp_path / "bench.json"
    done = subprocess.run(
        [str(hub), "bench", "--fixtures", str(FIXTURES), "--scale", "small", "--workdir", str(tmp_path), "--json", str(json_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for label in ("floor", "naive", "hub full", "analytics", "hub incremental", "hub full ÷ floor", "peak RSS"):
        assert label in done.stdout
    data = json.loads(json_path.read_text())
    phases = data["phases"]
    assert phases["floor"]["calls"] == phases["hub_full"]["calls"]
    assert 0 < phases["hub_full"]["analytics_s"] < phases["hub_full"]["wall_s"]
    steps = phases["hub_full"]["steps_s"]  # where the time went, longest step first
    assert list(steps.values()) == sorted(steps.values(), reverse=True)
    assert steps["permit_analytics"] == pytest.approx(phases["hub_full"]["analytics_s"])
    assert {"permits", "permit_gate_decisions"} <= set(steps)
    assert phases["analytics"]["steps_s"].keys() == {"permit_analytics"}
    assert phases["analytics"]["calls"] == dict.fromkeys(PLANT_SYSTEMS, 0)  # the analytics read the store only
    assert phases["analytics"]["records"] > 0 and phases["analytics"]["peak_rss_mib"] > 0
    ratios = {r["name"]: r for r in data["ratios"]}
    for name in ("analytics_vs_full", "analytics_peak_rss_vs_full"):
        assert isinstance(ratios[name]["value"], float) and ratios[name]["met"] in (True, False), name
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # a finished run cleans up
