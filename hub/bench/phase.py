"""Child-process entry of one measured phase: `python -m hub.bench.phase {hub,analytics,naive,floor} --out FILE ...`.

Each phase runs in a process of its own so that its peak RSS is its own; the parent reads
that from the child's rusage and times the child from the outside. Settings come from the
`HUB_*` variables the parent sets, as for any hub process. The child writes to `--out`
when its work started and ended (so the parent can tell start-up from work), how many
records it handled and, for the hub's phases, the seconds its runs spent in each step
(`steps_s`) and in the analytics assets' steps (`analytics_s`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from hub.memory import high_water_rss_kib
from hub.settings import HubSettings


# Records handled, by kind: (asset, metadata key) pairs whose figures add up to it.
HUB_RECORDS = {
    "permits": [("permits", "fetched")],
    "equipment": [("equipment", "dagster/row_count")],
    "work_orders": [("maintenance_records", "dagster/row_count")],
    "materials": [("process_parameters", "materials_requested")],
    "erp_entries": [("erp_postings", "posted_now"), ("erp_postings", "rejected_now")],
}
# The console log level `hub sync` runs at by default, so the analytics phase logs as the sync does.
SYNC_LOGGING = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class RunFigures:
    """What the event log of a phase's runs says: numeric asset metadata summed per (asset, key),
    the steps that failed, and the seconds spent in the analytics assets' steps."""

    metadata: dict[tuple[str, str], int]
    failed: list[str]
    analytics_s: float
    steps_s: dict[str, float]  # step key: seconds, summed over the runs


def figures_of_runs(instance, since: datetime) -> RunFigures:
    """Read every run this phase started (one per site, if the sync is split).

    A step's time is its STEP_START to its STEP_SUCCESS or STEP_FAILURE. The analytics assets
    are single-asset ops, so their step keys are their op names (a failed step has no
    materialization to name its asset, so the names come from the definitions).
    """
    from dagster import DagsterEventType, RunsFilter

    from hub.definitions import ANALYTICS

    analytics_steps = {assets.op.name for assets in ANALYTICS}
    ends = {DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
    wanted = {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.STEP_START, *ends}
    found: dict[tuple[str, str], int] = {}
    failed: list[str] = []
    steps_s: dict[str, float] = {}
    for record in instance.get_run_records(RunsFilter(created_after=since)):
        started: dict[str, float] = {}
        for entry in instance.all_logs(record.dagster_run.run_id, of_type=wanted):
            kind = entry.dagster_event.event_type
            if kind == DagsterEventType.ASSET_MATERIALIZATION:
                materialization = entry.asset_materialization
                asset = materialization.asset_key.to_user_string()
                for key, value in materialization.metadata.items():
                    if isinstance(value.value, (int, float)):
                        found[(asset, key)] = found.get((asset, key), 0) + int(value.value)
            elif kind == DagsterEventType.STEP_START:
                started[entry.step_key] = entry.timestamp
            else:
                if entry.step_key in started:
                    steps_s[entry.step_key] = steps_s.get(entry.step_key, 0.0) + entry.timestamp - started.pop(entry.step_key)
                if kind == DagsterEventType.STEP_FAILURE:
                    failed.append(entry.step_key)
    analytics_s = sum(seconds for step, seconds in steps_s.items() if step in analytics_steps)
    return RunFigures(found, failed, analytics_s, steps_s)


def _outcome(success: bool, figures: RunFigures, records: dict[str, int], notes: list[str]) -> dict:
    failed = [f"failed steps: {', '.join(figures.failed)}"] if figures.failed else []
    return {
        "success": success,
        "records": records,
        "analytics_s": figures.analytics_s,
        "steps_s": dict(sorted(figures.steps_s.items(), key=lambda item: -item[1])),
        "notes": [*notes, *failed],
    }


def hub_phase(args: argparse.Namespace) -> Callable[[], dict]:
    from dagster import DagsterInstance

    from hub.sync import run_full_sync

    # Side by side, the steps' times add up to more than the wall time they take.
    notes = [] if args.executor == "in_process" else [f"analytics s sums steps that ran side by side ({args.executor})"]

    def work() -> dict:
        since = datetime.now(timezone.utc)
        with DagsterInstance.get() as instance:
            result = run_full_sync(HubSettings(), instance, executor=args.executor)
            figures = figures_of_runs(instance, since)
        records = {kind: sum(figures.metadata.get(pair, 0) for pair in pairs) for kind, pairs in HUB_RECORDS.items()}
        return _outcome(result.success, figures, records, notes)

    return work


def analytics_phase(args: argparse.Namespace) -> Callable[[], dict]:
    """The analytics assets alone, for every site, on the store a full sync left: the full-sync
    job restricted to them, so each site's run has the sync's partitions, resources and logging."""
    from dagster import DagsterInstance

    from hub.definitions import ANALYTICS, build_definitions

    keys = [key for assets in ANALYTICS for key in assets.keys]
    names = {key.to_user_string() for key in keys}

    def work() -> dict:
        from hub.analytics.charts import allow_drawing_aside

        allow_drawing_aside()  # as `hub sync` in process does
        settings = HubSettings()
        job = build_definitions(settings).resolve_job_def("full_sync")
        since = datetime.now(timezone.utc)
        with DagsterInstance.get() as instance:
            results = [
                job.execute_in_process(
                    instance=instance, partition_key=site, asset_selection=keys, raise_on_error=False, run_config=SYNC_LOGGING
                )
                for site in settings.sites
            ]
            figures = figures_of_runs(instance, since)
        rows = sum(n for (asset, key), n in figures.metadata.items() if asset in names and key == "dagster/row_count")
        notes = ["records: rows the analytics assets produced"]
        return _outcome(all(r.success for r in results), figures, {"analytics_rows": rows}, notes)

    return work


def naive_phase(args: argparse.Namespace) -> Callable[[], dict]:
    from hub.bench.naive import run_naive

    def work() -> dict:
        outcome = run_naive(HubSettings(), args.every)
        records = {
            "permits": outcome.permits_synced,
            "equipment": len(outcome.devices),
            "work_orders": len(outcome.work_orders),
            "materials": len(outcome.materials),
            "erp_entries": outcome.erp_entries,
        }
        notes = [f"{outcome.permits_in_scope:,} of the sampled permits were in scope for EAM and MES calls"]
        return {
            "success": True,
            "records": records,
            "listing_s": outcome.listing_s,
            "listing_calls": outcome.listing_calls,
            "notes": notes if args.every > 1 else [],
        }

    return work


def floor_phase(args: argparse.Namespace) -> Callable[[], dict]:
    from hub.bench.floor import replay
    from hub.mappings.engine import load_mapping

    settings = HubSettings()
    systems = {"ptw": settings.ptw, "eam": settings.eam, "mes": settings.mes, "erp": settings.erp}
    # As wide as the hub sends: its flavor files say how many requests may be in flight.
    widths = {name: load_mapping(endpoint.mapping or name).spec.endpoint.concurrency for name, endpoint in systems.items()}

    def work() -> dict:
        urls = {name: endpoint.url for name, endpoint in systems.items()}
        differing = replay(json.loads(args.requests.read_text(encoding="utf-8")), urls, widths)
        notes = [f"{differing} replies had another status than the hub's"] if differing else []
        return {"success": True, "records": {}, "notes": notes}

    return work


# Each loader imports what its phase needs before the clock starts, and nothing more:
# the floor must not pay for importing Dagster.
PHASES: dict[str, Callable[[argparse.Namespace], Callable[[], dict]]] = {
    "hub": hub_phase,
    "analytics": analytics_phase,
    "naive": naive_phase,
    "floor": floor_phase,
}


def peak_rss_mib() -> float:
    """This process's own high-water RSS plus that of the worker that draws the charts beside the
    analytics step: an upper bound of what they held together."""
    charts = sys.modules.get("hub.analytics.charts")
    worker_kib = charts.worker_peak_rss_kib() if charts is not None else 0
    return (high_water_rss_kib() + worker_kib) / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hub.bench.phase")
    parser.add_argument("phase", choices=PHASES)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--every", type=int, default=1, help="naive: every N-th permit of the listing only")
    parser.add_argument("--executor", default="in_process", help="hub: how the sync runs (hub sync --executor)")
    parser.add_argument("--requests", type=Path, help="floor: the hub's requests per system (JSON)")
    args = parser.parse_args(argv)
    work = PHASES[args.phase](args)
    started = time.time()
    outcome = work()
    outcome.update(work_started=started, work_ended=time.time(), peak_rss_mib=peak_rss_mib())
    args.out.write_text(json.dumps(outcome), encoding="utf-8")


if __name__ == "__main__":
    main()
