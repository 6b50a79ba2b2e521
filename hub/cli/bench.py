"""`hub bench`: the hub's sync beside what the mocks can serve and a per-record connector."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hub.bench.scales import SCALES
from hub.cli import Executor, app, console
from hub.cli.output import choices


Scale = choices("Scale", SCALES, "`hub.bench.scales.SCALES`: the generated plant's size.")
Database = choices("Database", ("sqlite", "postgres"), "The database a bench phase stores into.")


@app.command()
def bench(
    scale: Annotated[Scale, typer.Option(help="The generated plant's size.")] = Scale.small,
    db: Annotated[Database, typer.Option(help="The hub's store (a fresh database).")] = Database.sqlite,
    dagster_storage: Annotated[
        Database | None, typer.Option(help="Dagster's storage; postgres goes through deploy/dagster.yaml (default: as --db).")
    ] = None,
    executor: Annotated[Executor, typer.Option(help="How the hub's sync runs: as `hub sync --executor`.")] = Executor.in_process,
    fixtures: Annotated[
        Path | None, typer.Option(exists=True, file_okay=False, help="Run on this plant instead of generating one.")
    ] = None,
    workdir: Annotated[Path, typer.Option(help="Generated plants and run folders live here.")] = Path(".hub/bench"),
    json_path: Annotated[Path | None, typer.Option("--json", help="Default: WORKDIR/bench-SCALE-DB.json.")] = None,
    naive_sample: Annotated[
        int | None, typer.Option(min=1, help="Permits the per-record connector runs before extrapolating (large: 2000).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generated plant and of its changes.")] = 1,
    pg_url: Annotated[
        str | None, typer.Option(envvar="BENCH_PG_URL", help="PostgreSQL server the fresh databases are made on.")
    ] = None,
    hub_only: Annotated[
        bool, typer.Option("--hub-only", help="Only the hub's full and incremental syncs (no floor, no naive connector).")
    ] = False,
    live: Annotated[
        bool,
        typer.Option("--live", help="Measure the live gate instead: the gate-check service under load, and plant events to holds."),
    ] = False,
    rate: Annotated[float, typer.Option(min=1, help="--live: gate checks per second.")] = 200.0,
    load_s: Annotated[float, typer.Option(min=1, help="--live: how long the service is loaded.")] = 60.0,
    stream_s: Annotated[float, typer.Option(min=1, help="--live: how long plant events are sent.")] = 120.0,
) -> None:
    """Time a full and an incremental sync against the floor and a naive connector; print one table.

    With --live: the live gate on the plant (docs in hub/bench/live.py), one table and JSON
    (default WORKDIR/bench-live-SCALE.json). Exit code 1 when a phase could not be measured."""
    from hub.bench.databases import DEFAULT_PG_URL
    from hub.bench.plant import PlantUnavailable
    from hub.bench.report import print_report
    from hub.bench.run import BenchFailed, BenchOptions, run_bench
    from hub.bench.scales import SCALES

    if live:
        _live(SCALES[scale.value], seed, workdir, json_path, rate, load_s, stream_s, pg_url or DEFAULT_PG_URL)
        return
    options = BenchOptions(
        scale=SCALES[scale.value],
        db=db.value,
        dagster_storage=(dagster_storage or db).value,
        fixtures=fixtures,
        workdir=workdir,
        naive_sample=naive_sample,
        executor=executor.value,
        seed=seed,
        pg_url=pg_url or DEFAULT_PG_URL,
        hub_only=hub_only,
    )
    path = json_path or workdir / f"bench-{scale.value}-{db.value}.json"
    _measure(run_bench, options, print_report, path, (BenchFailed, PlantUnavailable))


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
