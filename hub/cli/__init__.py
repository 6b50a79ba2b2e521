"""The `hub` command: the demo run, the sync and store administration.

Every command's failures go through `hub.cli.errors` (one or two lines, a documented exit
code; `hub --verbose` for the trace) and its output through `hub.cli.output.console`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub.cli.errors import EXIT_CODES_HELP, FAILED, HubGroup, Problem, database_errors, fail, run_problem, targets
from hub.cli.output import choices, console, emit_json

app = typer.Typer(
    cls=HubGroup,
    pretty_exceptions_show_locals=False,  # a trace must not print the secrets in its frames
    help=f"Permit integration hub: PTW, EAM, MES and ERP on Dagster.\n\n{EXIT_CODES_HELP}",
    no_args_is_help=True,
)
db_app = typer.Typer(help="The hub's own store.", no_args_is_help=True)
app.add_typer(db_app, name="db")

# Command groups that live in their own modules are registered at the end of this file.

REPO_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


Flavor = choices(
    "Flavor",
    ("standard", "alternate", "real-apis"),  # hub.demo.FLAVORS (not imported here: it loads Dagster)
    "`hub.demo.FLAVORS`: which faces of the mock EAM and MES the demo talks to.",
)
Executor = choices("Executor", ("in_process", "multiprocess", "celery"), "`hub.sync.EXECUTORS`.")
LogLevel = choices(
    "LogLevel",
    ("debug", "info", "warning", "error", "critical"),
    "The least severe Dagster log line shown in the terminal (the run log keeps them all).",
)


JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON (keys in docs/cli.md).")]
DatabaseUrlOption = Annotated[
    str | None, typer.Option("--database-url", envvar="HUB_DATABASE_URL", help="Defaults to the hub's settings.")
]


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="On an error, show the full trace.")] = False,
) -> None:
    """Permit integration hub: PTW, EAM, MES and ERP on Dagster."""


@app.command(epilog=EXIT_CODES_HELP)
def demo(
    fixtures: Annotated[Path, typer.Option(help="Fixture plant loaded into the mock systems.")] = REPO_FIXTURES,
    workdir: Annotated[Path, typer.Option(help="Where the SQLite store, Dagster home and mock state live.")] = Path(".hub"),
    fresh: Annotated[bool, typer.Option("--fresh", help="Start from an empty store and fresh mock systems.")] = False,
    flavor: Annotated[
        Flavor,
        typer.Option(
            help="standard: EAM over SOAP, MES over B2MML REST; alternate: EAM over Maximo OSLC, MES over SAP OData; "
            "real-apis: EAM over Maximo's REST API (mxapiasset, mxapiwodetail), MES over S/4HANA's batch "
            "characteristics (API_BATCH_SRV, API_CLFN_CHARACTERISTIC_SRV), ERP over SAP's journal-entry SOAP service "
            "(JournalEntryBulkCreateRequest)."
        ),
    ] = Flavor.standard,
    as_json: JsonOption = False,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Then start the gate-check service and the Dagster daemon, approve a permit, open a work "
            "order on its equipment and print when the hub suspended the work.",
        ),
    ] = False,
) -> None:
    """Start the mock systems, materialize every asset once and print what happened."""
    from hub.demo import run_demo
    from hub.demo_live import LiveDemo, live_scenario
    from hub.sync import stop_on_signals

    live_report = LiveDemo()
    # With --json, stdout is the JSON alone: progress goes to stderr.
    progress = (lambda m: typer.echo(m, err=True)) if as_json else (lambda m: console.print(f"[dim]{m}[/]"))
    scenario = live_scenario(live_report, workdir.resolve(), progress) if live else None
    with stop_on_signals():
        try:
            report = run_demo(fixtures, workdir, fresh=fresh, flavor=flavor.value, live=scenario)
        except KeyboardInterrupt:
            raise typer.Exit(_interrupted_exit_code()) from None
    if as_json:
        emit_json({**asdict(report), **({"live": asdict(live_report)} if live else {})})
    else:
        _print_demo(report)
        if live:
            _print_live_demo(live_report)
    if not report.success:
        if not as_json:
            console.print("[red]The sync run failed; see the Dagster run log.[/]")
        raise typer.Exit(FAILED)
    if live and not live_report.suspended:
        raise typer.Exit(FAILED)


def _print_live_demo(report) -> None:
    table = Table(title=f"Live gate: permit {report.ticket}")
    table.add_column("when (UTC)")
    table.add_column("what")
    for what, at in report.steps:
        table.add_row(at, what)
    console.print(table)
    if report.suspended:
        console.print(
            f"[bold]Suspended by the hub {report.latency_s} s after the work order was opened[/] "
            f"(hold reasons: {', '.join(report.reasons)})"
        )
    else:
        console.print(f"[red]{report.problem}[/]")


def _print_demo(report) -> None:
    console.print(f"[bold]Permits synced:[/] {report.permits_synced}")
    console.print(f"[bold]Devices looked up:[/] {report.devices_looked_up} in {report.eam_calls} EAM call(s)")
    console.print(f"[bold]Materials and quality rates:[/] {report.mes_calls} MES call(s)")
    blocked = Table(title=f"Blocked permits ({len(report.blocked)})", show_lines=True)
    blocked.add_column("permit")
    blocked.add_column("reasons")
    for permit_id, reasons in sorted(report.blocked.items()):
        blocked.add_row(permit_id, "\n".join(reasons))
    console.print(blocked)
    console.print(f"[bold]Allowed work-at-height permits:[/] {', '.join(sorted(report.allowed)) or 'none'}")
    for problem in report.site_problems:
        console.print(f"[bold yellow]Outside the gate:[/] {problem}", highlight=False, soft_wrap=True)
    console.print(f"[bold]Holds written to the PTW this run:[/] {report.holds_written}")
    postings = Table(title=f"ERP safety-cost entries ({len(report.postings)})")
    for column in ("entry", "amount", "document"):
        postings.add_column(column)
    for key, amount, document in report.postings:
        postings.add_row(key, amount, document or "[red]unconfirmed[/]")
    console.print(postings)
    console.print(f"[bold]ERP posts received this run:[/] {report.erp_posts_received}")
    console.print(f"[bold]Quarantined records ({len(report.quarantined)}):[/]")
    for line in report.quarantined:
        console.print(f"  {line}", markup=False)


# What `hub sync` counts, summed over its runs' materializations as (asset, metadata key)
# pairs: the figures `hub demo` prints, read from Dagster instead of the mocks.
SYNC_COUNTS: dict[str, tuple[tuple[str, str], ...]] = {
    "permits_synced": (("permits", "dagster/row_count"),),
    "blocked": (("permit_gate_decisions", "blocked"), ("permits_of_other_sites", "blocked_site_not_configured")),
    "holds_written": (("permit_gate_decisions", "holds_written"), ("permits_of_other_sites", "holds_written")),
    "entries_posted": (("erp_postings", "posted_now"),),
}


def sync_counts(instance, run_ids: list[str], database_url: str, since: datetime) -> dict[str, int]:
    """SYNC_COUNTS over the runs, and the records quarantined since `since` from the store: one
    pull can feed several assets, so their metadata would count a record more than once."""
    from dagster import DagsterEventType

    from hub.store.repository import HubStore

    found: dict[tuple[str, str], int] = {}
    for run_id in run_ids:
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
            materialization = entry.asset_materialization
            asset = materialization.asset_key.to_user_string()
            for key, value in materialization.metadata.items():
                if isinstance(value.value, (int, float)) and not isinstance(value.value, bool):
                    found[(asset, key)] = found.get((asset, key), 0) + int(value.value)
    counts = {name: sum(found.get(pair, 0) for pair in pairs) for name, pairs in SYNC_COUNTS.items()}
    with HubStore(database_url) as store:
        counts["records_quarantined"] = sum(row["created_at"] >= since for row in store.list_quarantine())
    return counts


@contextmanager
def _site_progress(shown: bool) -> Iterator[Callable[[str, str], None] | None]:
    """Each site's run as a line that ticks while it runs (a terminal only; gone when the sync ends)."""
    if not shown:
        yield None
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.fields[state]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        tasks: dict[str, int] = {}

        def told(label: str, state: str) -> None:
            if state == "started":
                again = " (gated again on stored data)" if label in tasks else ""
                tasks[label] = progress.add_task(f"{label}{again}", total=1, state="running")
            else:
                progress.update(tasks[label], completed=1, state=state)

        yield told


@app.command(epilog=EXIT_CODES_HELP)
def sync(
    ctx: typer.Context,
    executor: Annotated[
        Executor, typer.Option(help="in_process: sites one after another here; multiprocess or celery: sites side by side.")
    ] = Executor.in_process,
    sites: Annotated[str | None, typer.Option(help="Comma-separated sites to sync (default: HUB_SITES).")] = None,
    dagster_yaml: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Dagster instance config, e.g. deploy/dagster.yaml (default: DAGSTER_HOME's)."),
    ] = None,
    lock_wait: Annotated[
        float,
        typer.Option("--lock-wait", min=0, help="Seconds to wait for a site another process is syncing before reporting it not run."),
    ] = 5.0,
    log_level: Annotated[
        LogLevel, typer.Option("--log-level", help="Dagster log lines shown from this level up (all are in the run log).")
    ] = LogLevel.critical,
    analytics: Annotated[
        bool,
        typer.Option("--analytics", help="Compute the analytics now, due or not (default: when HUB_ANALYTICS_EVERY_MIN has passed)."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run the full-sync job once per site against the systems configured by HUB_* settings.

    Exit code 1 when a site's run failed, whatever the cause (the first cause is named, with its system and URL), or was not run (another process was syncing it); 4 when the hub's database cannot be used before any run.
    """
    from hub.settings import HubSettings
    from hub.sync import SyncInterrupted, run_full_sync, stop_grace_s, stop_on_signals

    _python_logs(log_level)
    settings = HubSettings()
    started = datetime.now(timezone.utc)
    chosen = [site for site in sites.split(",") if site.strip()] if sites else None
    with stop_on_signals(grace_s=stop_grace_s(executor.value)):
        try:
            with _instance(dagster_yaml, log_level) as instance, _site_progress(not as_json and console.is_terminal) as progress:
                try:
                    with database_errors(settings.database_url):
                        outcome = run_full_sync(
                            settings,
                            instance,
                            executor=executor.value,
                            sites=chosen,
                            log_level=log_level.value.upper(),
                            lock_wait_s=lock_wait,
                            progress=progress,
                            analytics=analytics,
                        )
                except ValueError as exc:
                    raise typer.BadParameter(str(exc)) from None
                with database_errors(settings.database_url):
                    counts = sync_counts(instance, outcome.run_ids, settings.database_url, started)
                problem, trace = run_problem(instance, _failed_run_ids(outcome), targets(settings))
        except SyncInterrupted as stopped:
            code = _interrupted_exit_code()
            console.print(f"[red]Sync stopped by {_signal_name(code)}[/]; sites not synced: {', '.join(stopped.outcome.failed_sites)}")
            raise typer.Exit(code) from None
        except KeyboardInterrupt:
            code = _interrupted_exit_code()
            console.print(f"[red]Sync stopped by {_signal_name(code)}[/] before any site's run started")
            raise typer.Exit(code) from None
    problem = _sync_problem(outcome, problem)
    if as_json:
        emit_json(_sync_json(outcome, counts, problem))
    elif not _not_synced(outcome):
        _print_sync(outcome, counts)
    if problem is not None:
        if ctx.find_root().params.get("verbose") and trace:
            typer.echo(trace, err=True)
        fail(problem)


@contextmanager
def _instance(dagster_yaml: Path | None, level: LogLevel):
    """The Dagster instance, logging at `level` in the step processes too: they log with the
    instance's python_log_level (DEBUG when unset), not with the run's loggers."""
    from dagster import DagsterInstance

    from hub.instance import open_instance

    with open_instance(dagster_yaml) as instance:
        if instance.is_ephemeral:
            yield instance
            return
        ref = instance.get_ref()
        python_logs = {**(ref.settings.get("python_logs") or {}), "python_log_level": level.value.upper()}
        with DagsterInstance.from_ref(ref._replace(settings={**ref.settings, "python_logs": python_logs})) as quiet:
            yield quiet


def _python_logs(level: LogLevel) -> None:
    """The hub's own Python log lines (e.g. a circuit opening) follow --log-level too; without a
    handler, Python would print every warning to stderr."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(name)s - %(levelname)s - %(message)s"))
    logger = logging.getLogger("hub")
    logger.handlers[:] = [handler]
    logger.setLevel(level.value.upper())


def _failed_run_ids(outcome) -> list[str]:
    runs = [*outcome.runs, *([outcome.other_sites] if outcome.other_sites else [])]
    return [run.run_id for run in runs if run.run_id and not run.success]


def _not_synced(outcome) -> list[str]:
    other = [outcome.other_sites] if outcome.other_sites is not None else []
    return [run.site for run in [*outcome.runs, *other] if not run.success]


def _sync_problem(outcome, from_runs: Problem | None) -> Problem | None:
    """What `hub sync` failed of, in one or two lines: the first failed step's cause, a site
    not run and why, or sites nobody knows (the runs then succeeded and are printed too)."""
    not_synced = _not_synced(outcome)
    if from_runs is not None:
        return Problem(f"sync failed for {', '.join(not_synced)}: {from_runs.message}", FAILED)
    not_run = [
        f"{run.site}: not run: {run.message or 'its process ended before the run was made'}"
        for run in outcome.runs
        if run.run_id is None
    ]
    if not_run:
        return Problem(f"sync failed for {'; '.join(not_run)}", FAILED)
    if not outcome.success:
        return Problem("; ".join(outcome.unknown_sites) or f"sync failed for {', '.join(not_synced)}", FAILED)
    return None


def _run_json(job: str, run) -> dict:
    return {"job": job, **asdict(run)}


def _sync_json(outcome, counts: dict[str, int], problem: Problem | None) -> dict:
    runs = [
        *(_run_json("full_sync", run) for run in outcome.runs),
        *(_run_json("gate_only", run) for run in outcome.gate_reruns),
        *([_run_json("other_sites_sync", outcome.other_sites)] if outcome.other_sites else []),
    ]
    return {
        "success": problem is None,
        "exit_code": problem.exit_code if problem else 0,
        "error": problem.message if problem else None,
        "runs": runs,
        "counts": counts,
        "outside_the_gate": [*outcome.unconfigured_sites, *outcome.unknown_sites],
    }


def _print_sync(outcome, counts: dict[str, int]) -> None:
    """When every run succeeded: a line per run (its id for the Dagster UI), the counts, then
    whatever is outside the gate. A failed run is told by the error alone, in one or two lines."""
    for run in outcome.runs:
        skipped = "" if run.analytics else " (analytics not due)"
        console.print(f"full_sync {run.site}: run {run.run_id} succeeded in {run.duration_s:.1f} s{skipped}", highlight=False)
    if outcome.other_sites is not None:
        run = outcome.other_sites
        console.print(f"other_sites_sync: run {run.run_id} succeeded in {run.duration_s:.1f} s", highlight=False)
    counted = ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in counts.items())
    console.print(counted, highlight=False, soft_wrap=True)
    for problem in outcome.unconfigured_sites:
        console.print(f"[yellow]{problem}[/]", highlight=False, soft_wrap=True)


def _interrupted_exit_code() -> int:
    """128 + the signal that stopped the command (SIGINT when it cannot tell)."""
    import signal

    from hub.sync import received_signal

    return 128 + int(received_signal(wait_s=1.0) or signal.SIGINT)


def _signal_name(code: int) -> str:
    import signal

    return signal.Signals(code - 128).name


@app.command(epilog=EXIT_CODES_HELP)
def dev(port: Annotated[int, typer.Option(help="Port of the Dagster UI.")] = 3000) -> None:
    """Open the Dagster UI and daemon on this project (DAGSTER_HOME defaults to .hub/dagster_home).

    Runs `dagster dev -w workspace.yaml`, not `dg dev`: dg serves projects
    laid out for it (a tool.dg table, definitions in a defs package) and
    needs dagster-dg-cli; the hub is one code location, hub.definitions,
    built from HUB_* settings, which workspace.yaml names.
    """
    import os
    import sys

    from hub.instance import ensure_dagster_home

    ensure_dagster_home(Path(".hub/dagster_home"))
    dagster = Path(sys.executable).with_name("dagster")
    workspace = Path(__file__).resolve().parents[2] / "workspace.yaml"
    os.execv(dagster, [str(dagster), "dev", "-w", str(workspace), "-p", str(port)])


@db_app.command("upgrade", epilog=EXIT_CODES_HELP)
def db_upgrade(database_url: DatabaseUrlOption = None) -> None:
    """Create or migrate the hub's tables (alembic)."""
    from hub.cli.errors import safe_url
    from hub.settings import HubSettings
    from hub.store.migrate import upgrade

    url = database_url or HubSettings().database_url
    with database_errors(url):
        upgrade(url)
    console.print(f"store at head: {safe_url(url)}", highlight=False)


# --- command groups in their own modules (one line each) ---
from hub.cli.quarantine import app as quarantine_app  # noqa: E402

app.add_typer(quarantine_app, name="quarantine")

from hub.cli.audit import app as audit_app  # noqa: E402

app.add_typer(audit_app, name="audit")

from hub.cli.mappings import app as mappings_app  # noqa: E402

app.add_typer(mappings_app, name="mappings")

from hub.cli.rules import app as rules_app  # noqa: E402

app.add_typer(rules_app, name="rules")

from hub.cli.serve import register as register_serve  # noqa: E402

register_serve(app)  # adds the serve command

import hub.cli.harness  # noqa: E402,F401  (adds the crashtest and chaos commands)

import hub.cli.generate  # noqa: E402,F401  (adds the generate command)

import hub.cli.bench  # noqa: E402,F401  (adds the bench command)

import hub.cli.report  # noqa: E402,F401  (adds the report command)
