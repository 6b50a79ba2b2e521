"""Child-process entry of one measured phase: `python -m hub.bench.phase {hub,naive,floor} --out FILE ...`.

Each phase runs in a process of its own so that its peak RSS is its own; the parent reads
that from the child's rusage and times the child from the outside. Settings come from the
`HUB_*` variables the parent sets, as for any hub process. The child writes to `--out`
when its work started and ended (so the parent can tell start-up from work) and how many
records it handled.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from hub.settings import HubSettings


# Records handled, by kind: (asset, metadata key) pairs whose figures add up to it.
HUB_RECORDS = {
    "permits": [("permits", "fetched")],
    "equipment": [("equipment", "dagster/row_count")],
    "work_orders": [("maintenance_records", "dagster/row_count")],
    "materials": [("process_parameters", "materials_requested")],
    "erp_entries": [("erp_postings", "posted_now"), ("erp_postings", "rejected_now")],
}


def hub_phase(args: argparse.Namespace) -> Callable[[], dict]:
    from dagster import DagsterEventType, DagsterInstance, RunsFilter

    from hub.sync import run_full_sync

    def figures_of_runs(instance, since: datetime) -> tuple[dict[str, int], list[str]]:
        """Sum the assets' metadata over every run this phase started (one per site, if the sync is split)."""
        found: dict[tuple[str, str], int] = {}
        failed: list[str] = []
        for record in instance.get_run_records(RunsFilter(created_after=since)):
            run_id = record.dagster_run.run_id
            for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
                materialization = entry.asset_materialization
                asset = materialization.asset_key.to_user_string()
                for key, value in materialization.metadata.items():
                    if isinstance(value.value, (int, float)):
                        found[(asset, key)] = found.get((asset, key), 0) + int(value.value)
            failed += [e.step_key for e in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)]
        records = {kind: sum(found.get(pair, 0) for pair in pairs) for kind, pairs in HUB_RECORDS.items()}
        return records, failed

    def work() -> dict:
        since = datetime.now(timezone.utc)
        with DagsterInstance.get() as instance:
            result = run_full_sync(HubSettings(), instance, executor=args.executor)
            records, failed = figures_of_runs(instance, since)
        notes = [f"failed steps: {', '.join(failed)}"] if failed else []
        return {"success": result.success, "records": records, "notes": notes}

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
    "naive": naive_phase,
    "floor": floor_phase,
}


def peak_rss_mib() -> float:
    """This process's own high-water RSS (VmHWM). Not rusage's ru_maxrss: that also counts the
    parent's memory this process was forked from before it exec'd Python."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("/proc/self/status has no VmHWM line")


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
