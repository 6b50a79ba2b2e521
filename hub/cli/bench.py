"""`hub bench`: the hub's sync beside what the mocks can serve and a per-record connector."""

from __future__ import annotations

from pathlib import Path

import typer

from hub.cli import app, console


@app.command()
def bench(
    scale: str = typer.Option("small", "--scale", help="small, medium or large plant."),
    db: str = typer.Option("sqlite", "--db", help="The hub's store: sqlite or postgres (a fresh database)."),
    dagster_storage: str | None = typer.Option(
        None,
        "--dagster-storage",
        help="sqlite, or postgres through deploy/dagster.yaml on a fresh database (default: as --db).",
    ),
    executor: str = typer.Option("in_process", "--executor", help="How the hub's sync runs: as `hub sync --executor`."),
    fixtures: Path | None = typer.Option(
        None, "--fixtures", exists=True, file_okay=False, help="Run on this plant instead of generating one."
    ),
    workdir: Path = typer.Option(Path(".hub/bench"), "--workdir", help="Generated plants and run folders live here."),
    json_path: Path | None = typer.Option(None, "--json", help="Default: WORKDIR/bench-SCALE-DB.json."),
    naive_sample: int | None = typer.Option(
        None, "--naive-sample", min=1, help="Permits the per-record connector runs before extrapolating (large: 2000)."
    ),
    seed: int = typer.Option(1, "--seed", help="Seed of the generated plant and of its changes."),
    pg_url: str | None = typer.Option(
        None, "--pg-url", envvar="BENCH_PG_URL", help="PostgreSQL server the fresh databases are made on."
    ),
    hub_only: bool = typer.Option(
        False, "--hub-only", help="Only the hub's full and incremental syncs (no floor, no naive connector)."
    ),
    live: bool = typer.Option(
        False, "--live", help="Measure the live gate instead: the gate-check service under load, and plant events to holds."
    ),
    rate: float = typer.Option(200.0, "--rate", min=1, help="--live: gate checks per second."),
    load_s: float = typer.Option(60.0, "--load-s", min=1, help="--live: how long the service is loaded."),
    stream_s: float = typer.Option(120.0, "--stream-s", min=1, help="--live: how long plant events are sent."),
) -> None:
    """Time a full and an incremental sync against the floor and a naive connector; print one table.

    With --live: the live gate on the plant (docs in hub/bench/live.py), one table and JSON
    (default WORKDIR/bench-live-SCALE.json)."""
    from hub.bench.databases import DEFAULT_PG_URL
    from hub.bench.plant import PlantUnavailable
    from hub.bench.report import print_report
    from hub.bench.run import BenchFailed, BenchOptions, run_bench
    from hub.bench.scales import SCALES

    if executor not in ("in_process", "multiprocess", "celery"):
        raise typer.BadParameter("choose in_process, multiprocess or celery", param_hint="--executor")
    if scale not in SCALES:
        raise typer.BadParameter(f"choose one of {', '.join(SCALES)}", param_hint="--scale")
    if live:
        _live(SCALES[scale], seed, workdir, json_path, rate, load_s, stream_s, pg_url or DEFAULT_PG_URL)
        return
    dagster_storage = dagster_storage or db
    for value, hint in ((db, "--db"), (dagster_storage, "--dagster-storage")):
        if value not in ("sqlite", "postgres"):
            raise typer.BadParameter("choose sqlite or postgres", param_hint=hint)
    options = BenchOptions(
        scale=SCALES[scale],
        db=db,
        dagster_storage=dagster_storage,
        fixtures=fixtures,
        workdir=workdir,
        naive_sample=naive_sample,
        executor=executor,
        seed=seed,
        pg_url=pg_url or DEFAULT_PG_URL,
        hub_only=hub_only,
    )
    _measure(run_bench, options, print_report, json_path or workdir / f"bench-{scale}-{db}.json", (BenchFailed, PlantUnavailable))


def _measure(run, options, print_report, path: Path, failures: tuple[type[Exception], ...]) -> None:
    """Run a benchmark, print its table and write its JSON; one that could not be measured exits 1."""
    try:
        report = run(options, progress=lambda message: console.print(f"[dim]{message}[/]"))
    except failures as exc:
        console.print(str(exc), style="red", markup=False)
        raise typer.Exit(1) from None
    print_report(report, console)
    report.write_json(path)
    console.print(f"JSON: {path}")


def _live(scale, seed: int, workdir: Path, json_path: Path | None, rate: float, load_s: float, stream_s: float, pg_url: str) -> None:
    from hub.bench.live import LiveOptions, print_live_report, run_live_bench
    from hub.bench.plant import PlantUnavailable
    from hub.bench.run import BenchFailed
    from hub.live import LiveGateFailed

    options = LiveOptions(scale=scale, seed=seed, workdir=workdir, rate=rate, load_s=load_s, stream_s=stream_s, pg_url=pg_url)
    path = json_path or workdir / f"bench-live-{scale.name}.json"
    _measure(run_live_bench, options, print_live_report, path, (BenchFailed, PlantUnavailable, LiveGateFailed))
