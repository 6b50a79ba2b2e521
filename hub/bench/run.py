"""One bench run: five phases against the same mock plant, each measured in a child process of its own.

Phase order, and the mock state each phase starts from:

1. **hub full** (c): the mocks are reset to the plant's fixtures; the hub syncs every asset onto
   an empty store and a fresh Dagster instance. The mocks' request logs are kept afterwards:
   they are exactly the requests the hub made.
2. **analytics**: straight after (c), on its store and instance, with the mocks as (c) left
   them: the analytics assets alone, for every site, as the full sync's last steps computed
   them, so their peak memory is seen apart from the pulls'. They call no system.
3. **hub incremental** (d): the plant is copied with 1 % of permits and work orders changed, and
   the mocks restart on the copy with the same state dir, so the PTW holds and ERP documents
   written in (c) are still there, as in a real plant. The hub syncs again onto the same store
   and instance. It comes after (c) because it needs (c)'s state on both sides (the analytics
   in between only read the store).
4. **floor** (a): the mocks restart on the original plant and are reset, which is the state (c)
   started from, and the requests of (c) are sent again by a bare client.
5. **naive** (b): the mocks are reset once more, so the per-record connector finds what (c)
   found (no holds, no documents); it writes to a store of its own.

Calls per phase are the mocks' request counts since the phase's start or reset (the analytics':
since the full sync's end). The parent times each child from the outside and takes its peak RSS from the child's rusage.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

from hub.bench.databases import DEFAULT_PG_URL, FreshDatabases
from hub.bench.mocks_process import PLANT_SYSTEMS, MocksProcess
from hub.bench.plant import PlantUnchangeable, changed_plant, cost_rules_file, generated_plant, plant_sites
from hub.bench.report import BenchReport, PhaseFigures
from hub.bench.scales import Scale

REPO = Path(__file__).resolve().parents[2]
DEPLOY_DAGSTER_YAML = REPO / "deploy" / "dagster.yaml"
EAM_WSDL = REPO / "mock_systems" / "eam.wsdl"
SQLITE_DAGSTER_YAML = "telemetry:\n  enabled: false\n"


class BenchFailed(RuntimeError):
    """A phase could not be measured; the message says which and where its log is."""


@dataclass(frozen=True)
class BenchOptions:
    scale: Scale
    db: str = "sqlite"
    dagster_storage: str = "sqlite"
    fixtures: Path | None = None
    workdir: Path = Path(".hub/bench")
    naive_sample: int | None = None  # None: the scale's default
    executor: str = "in_process"
    seed: int = 1
    pg_url: str = DEFAULT_PG_URL
    dagster_yaml: Path = DEPLOY_DAGSTER_YAML
    hub_only: bool = False  # the hub's full and incremental syncs only: no floor, no naive connector


@dataclass(frozen=True)
class ChildRun:
    wall_s: float
    startup_s: float
    peak_rss_mib: float
    outcome: dict


def run_child(phase_args: list[str], env: dict[str, str], folder: Path, name: str) -> ChildRun:
    """Run `python -m hub.bench.phase ...`, timed from here; the child reports its own peak RSS."""
    out, log_path = folder / f"{name}.json", folder / f"{name}.log"
    command = [sys.executable, "-m", "hub.bench.phase", *phase_args, "--out", str(out)]
    with log_path.open("w", encoding="utf-8") as log:
        spawned, started = time.time(), time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        status = child.wait()
        wall = time.perf_counter() - started
    if status != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise BenchFailed(f"phase {name} exited with {status}; end of {log_path}:\n{tail}")
    outcome = json.loads(out.read_text(encoding="utf-8"))
    return ChildRun(wall, outcome["work_started"] - spawned, outcome["peak_rss_mib"], outcome)


def _figures(child: ChildRun, calls: dict[str, int], records: int, note: str = "") -> PhaseFigures:
    """A phase's figures as the parent saw them, with what the child said about its runs."""
    notes = [note, *child.outcome["notes"]]
    if not child.outcome["success"]:
        notes.append("the run FAILED")
    return PhaseFigures(
        wall_s=child.wall_s,
        startup_s=child.startup_s,
        calls=calls,
        records=records,
        peak_rss_mib=child.peak_rss_mib,
        analytics_s=child.outcome.get("analytics_s"),
        steps_s=child.outcome.get("steps_s"),
        note="; ".join(n for n in notes if n),
    )


def _in_process_note(options: BenchOptions) -> str:
    """The analytics phase always runs in process; with another executor the full sync's peak RSS
    is its orchestrating process's only, which the analytics' is then not comparable to."""
    if options.executor == "in_process":
        return ""
    return f"run in process, while the full sync ran {options.executor} (its peak RSS is the orchestrating process's)"


def _extrapolated(child: ChildRun, calls: dict[str, int], records: int, every: int, total: int) -> PhaseFigures:
    """Every `every`-th permit ran; the per-permit work and its calls are scaled by the sample's
    share of the permits. Start-up and the paging through the PTW were paid in full, so they
    are not scaled.

    Records are the whole plant's, as the hub full sync counted them: distinct devices and
    materials do not grow linearly with permits, so scaling the sample's would overstate them.
    """
    ran = child.outcome["records"]["permits"]
    factor = total / ran
    listing_s, listing_calls = child.outcome["listing_s"], child.outcome["listing_calls"]
    scaled_calls = {system: round(n * factor) for system, n in calls.items()}
    scaled_calls["ptw"] = listing_calls + round((calls["ptw"] - listing_calls) * factor)
    note = f"sampled every {every}th permit ({ran:,} of {total:,}), per-permit work extrapolated"
    figures = _figures(child, scaled_calls, records, note)
    per_permit_s = child.wall_s - child.startup_s - listing_s
    return replace(figures, wall_s=child.startup_s + listing_s + per_permit_s * factor)


class Environment:
    """The `HUB_*` variables (and Dagster home) each child gets; nothing is inherited from the caller's."""

    def __init__(self, dagster_home: Path, cost_rules: Path | None, dagster_pg_url: str | None, sites: list[str]):
        base = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        base.update(DAGSTER_HOME=str(dagster_home), HUB_EAM_WSDL=str(EAM_WSDL), HUB_SITES=",".join(sites))
        if cost_rules is not None:
            base["HUB_COST_RULES_FILE"] = str(cost_rules)
        if dagster_pg_url is not None:
            base["DAGSTER_PG_URL"] = dagster_pg_url
        self._base = base

    def for_phase(self, urls: dict[str, str], database_url: str) -> dict[str, str]:
        return {
            **self._base,
            "HUB_DATABASE_URL": database_url,
            **{f"HUB_{system.upper()}__URL": urls[system] for system in PLANT_SYSTEMS},
        }


def _dagster_home(options: BenchOptions, folder: Path, databases: FreshDatabases) -> tuple[Path, str | None]:
    """A fresh Dagster home: SQLite in the run folder, or the deployment's Postgres config on a new database."""
    home = folder / "dagster_home"
    home.mkdir(parents=True)
    if options.dagster_storage == "sqlite":
        (home / "dagster.yaml").write_text(SQLITE_DAGSTER_YAML, encoding="utf-8")
        return home, None
    if not options.dagster_yaml.exists():
        raise BenchFailed(f"--dagster-storage postgres uses {options.dagster_yaml}, which does not exist here")
    shutil.copyfile(options.dagster_yaml, home / "dagster.yaml")
    return home, databases.postgres_url("dagster")


def machine_facts() -> dict[str, object]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "dagster": version("dagster"),
        "platform": platform.platform(),
    }


def _baselines(
    mocks: MocksProcess,
    options: BenchOptions,
    full: ChildRun,
    requests_file: Path,
    env: Environment,
    hub_store: str,
    naive_store: str,
    folder: Path,
    progress: Callable[[str], None],
) -> dict[str, PhaseFigures]:
    """The floor (the hub's requests replayed bare) and the naive per-record connector."""
    full_records = sum(full.outcome["records"].values())
    mocks.reset()
    progress("floor: replaying the hub's requests")
    floor = run_child(["floor", "--requests", str(requests_file)], env.for_phase(mocks.urls, hub_store), folder, "floor")
    phases = {"floor": _figures(floor, mocks.request_counts(), full_records, "the hub full sync's requests")}

    mocks.reset()
    total = full.outcome["records"]["permits"]
    sample = options.naive_sample or options.scale.naive_sample
    every = max(1, -(-total // sample)) if sample else 1
    progress(f"naive per-record connector ({f'every {every}th of {total:,}' if every > 1 else 'all'} permits)")
    naive = run_child(["naive", "--every", str(every)], env.for_phase(mocks.urls, naive_store), folder, "naive")
    naive_calls = mocks.request_counts()
    if every > 1:
        phases["naive"] = _extrapolated(naive, naive_calls, full_records, every, total)
    else:
        phases["naive"] = _figures(naive, naive_calls, sum(naive.outcome["records"].values()))
    return phases


def run_bench(options: BenchOptions, progress: Callable[[str], None] = print) -> BenchReport:
    scale = options.scale
    workdir = options.workdir.resolve()
    if options.fixtures is not None:
        plant = options.fixtures.resolve()
    else:
        progress(f"generating the {scale.name} plant (seed {options.seed}), once per scale and seed")
        plant = generated_plant(scale, options.seed, workdir)
    started = datetime.now(timezone.utc)
    folder = workdir / "runs" / f"{scale.name}-{options.db}-{started:%Y%m%dT%H%M%S}"
    folder.mkdir(parents=True)
    state_dir, mocks_log = folder / "mock_state", folder / "mocks.log"
    notes: list[str] = []
    phases: dict[str, PhaseFigures] = {}

    with FreshDatabases(options.db, folder, options.pg_url) as databases:
        home, dagster_pg_url = _dagster_home(options, folder, databases)
        env = Environment(home, cost_rules_file(plant), dagster_pg_url, plant_sites(plant))
        hub_store, naive_store = databases.store_url("hub"), databases.store_url("naive")

        with MocksProcess(plant, state_dir, mocks_log) as mocks:
            mocks.reset()
            progress("hub full sync")
            hub_args = ["hub", "--executor", options.executor]
            full = run_child(hub_args, env.for_phase(mocks.urls, hub_store), folder, "hub_full")
            calls = mocks.request_counts()
            phases["hub_full"] = _figures(full, calls, sum(full.outcome["records"].values()))
            hub_requests = {system: mocks.received(system) for system in PLANT_SYSTEMS}
            progress("analytics assets alone")
            analytics = run_child(["analytics"], env.for_phase(mocks.urls, hub_store), folder, "analytics")
            since_full = {system: n - calls[system] for system, n in mocks.request_counts().items()}
            analytics_records = sum(analytics.outcome["records"].values())
            phases["analytics"] = _figures(analytics, since_full, analytics_records, _in_process_note(options))
        lost = {s: calls[s] - len(hub_requests[s]) for s in PLANT_SYSTEMS if calls[s] > len(hub_requests[s])}
        if lost:
            notes.append(f"the mocks' logs let go of the oldest requests ({lost}); the floor replays the rest only")
        requests_file = folder / "hub_requests.json"
        requests_file.write_text(json.dumps(hub_requests, ensure_ascii=False), encoding="utf-8")

        changed, unchanged_because = folder / "plant-changed", ""
        try:
            changed_plant(plant, changed, options.seed)
        except PlantUnchangeable as exc:
            changed, unchanged_because = plant, f"{exc}: synced the unchanged plant again"
        with MocksProcess(changed, state_dir, mocks_log) as mocks:
            progress("hub incremental sync")
            incremental = run_child(hub_args, env.for_phase(mocks.urls, hub_store), folder, "hub_incremental")
            phases["hub_incremental"] = _figures(
                incremental, mocks.request_counts(), sum(incremental.outcome["records"].values()), unchanged_because
            )

        if options.hub_only:
            notes.append("hub phases only (--hub-only): no floor, no naive connector")
        else:
            with MocksProcess(plant, state_dir, mocks_log) as mocks:
                phases.update(_baselines(mocks, options, full, requests_file, env, hub_store, naive_store, folder, progress))

    shutil.rmtree(folder)  # kept when a phase fails, for its logs
    run = {
        "scale": scale.name,
        "seed": options.seed,
        "db": options.db,
        "dagster_storage": options.dagster_storage,
        "executor": options.executor,
        "date": started.isoformat(timespec="seconds"),
        "plant": str(plant),
    }
    return BenchReport(machine=machine_facts(), run=run, phases=phases, notes=notes)
