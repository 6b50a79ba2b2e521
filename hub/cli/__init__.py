"""The `hub` command: the demo run and store administration."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Permit integration hub: PTW, EAM, MES and ERP on Dagster.", no_args_is_help=True)
db_app = typer.Typer(help="The hub's own store.", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console()

# Command groups that live in their own modules are registered at the end of this file.

REPO_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


@app.command()
def demo(
    fixtures: Path = typer.Option(REPO_FIXTURES, help="Fixture plant loaded into the mock systems."),
    workdir: Path = typer.Option(Path(".hub"), help="Where the SQLite store, Dagster home and mock state live."),
    fresh: bool = typer.Option(False, "--fresh", help="Start from an empty store and fresh mock systems."),
    flavor: str = typer.Option(
        "standard",
        help="standard: EAM over SOAP, MES over B2MML REST; alternate: EAM over Maximo OSLC, MES over SAP OData.",
    ),
) -> None:
    """Start the mock systems, materialize every asset once and print what happened."""
    from hub.demo import FLAVORS, run_demo
    from hub.sync import stop_on_signals

    if flavor not in FLAVORS:
        raise typer.BadParameter(f"choose one of {', '.join(FLAVORS)}", param_hint="--flavor")
    with stop_on_signals():
        try:
            report = run_demo(fixtures, workdir, fresh=fresh, flavor=flavor)
        except KeyboardInterrupt:
            raise typer.Exit(_interrupted_exit_code()) from None
    console.print(f"[bold]Permits synced:[/] {report.permits_synced}")
    console.print(
        f"[bold]Devices looked up:[/] {report.devices_looked_up} in {report.eam_calls} EAM call(s); "
        f"materials in {report.mes_calls} MES call(s)"
    )
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
    if not report.success:
        console.print("[red]The sync run failed; see the Dagster run log.[/]")
        raise typer.Exit(1)


@app.command()
def sync(
    executor: str = typer.Option(
        "in_process", help="in_process: sites one after another here; multiprocess or celery: sites side by side."
    ),
    sites: str = typer.Option(None, help="Comma-separated sites to sync (default: HUB_SITES)."),
    dagster_yaml: Path = typer.Option(
        None, exists=True, dir_okay=False, help="Dagster instance config, e.g. deploy/dagster.yaml (default: DAGSTER_HOME's)."
    ),
    lock_wait: float = typer.Option(
        5.0, "--lock-wait", min=0, help="Seconds to wait for a site another process is syncing before reporting it not run."
    ),
) -> None:
    """Run the full-sync job once per site against the systems configured by HUB_* settings.

    Exit code 0 when every site's run succeeded, 1 when one failed or was not run (another
    process was syncing it), 130 or 143 when stopped by Ctrl-C or SIGTERM.
    """
    from hub.instance import open_instance
    from hub.settings import HubSettings
    from hub.sync import EXECUTORS, SyncInterrupted, run_full_sync, stop_grace_s, stop_on_signals

    if executor not in EXECUTORS:
        raise typer.BadParameter(f"choose one of {', '.join(EXECUTORS)}", param_hint="--executor")
    chosen = [site for site in sites.split(",") if site.strip()] if sites else None
    with stop_on_signals(grace_s=stop_grace_s(executor)):
        try:
            with open_instance(dagster_yaml) as instance:
                try:
                    outcome = run_full_sync(
                        HubSettings(), instance, executor=executor, sites=chosen, lock_wait_s=lock_wait
                    )
                except ValueError as exc:
                    raise typer.BadParameter(str(exc)) from None
        except SyncInterrupted as stopped:
            _print_runs(stopped.outcome)
            code = _interrupted_exit_code()
            console.print(f"[red]Sync stopped by {_signal_name(code)}[/]; sites not synced: {', '.join(stopped.outcome.failed_sites)}")
            raise typer.Exit(code) from None
        except KeyboardInterrupt:
            code = _interrupted_exit_code()
            console.print(f"[red]Sync stopped by {_signal_name(code)}[/] before any site's run started")
            raise typer.Exit(code) from None
    _print_runs(outcome)
    if not outcome.success:
        if outcome.failed_sites:
            console.print(f"[red]Sites not synced:[/] {', '.join(outcome.failed_sites)}")
        raise typer.Exit(1)


def _print_runs(outcome) -> None:
    for run in outcome.runs:
        if run.run_id is None and run.message:
            console.print(f"full_sync {run.site}: not run: {run.message}", markup=False)
            continue
        console.print(f"full_sync {run.site}: {_run_line(run)}")
    for run in outcome.gate_reruns:
        console.print(f"gate_only {run.site} (its sync failed; gated again on stored data): {_run_line(run)}")
    if outcome.other_sites is not None:
        console.print(f"other_sites_sync: {_run_line(outcome.other_sites)}")
    for problem in outcome.unconfigured_sites:
        console.print(f"[yellow]{problem}[/]", highlight=False)
    for problem in outcome.unknown_sites:
        console.print(f"[red]{problem}[/]", highlight=False)


def _run_line(run) -> str:
    took = f"{run.duration_s:.1f} s" if run.duration_s is not None else "-"
    return f"run {run.run_id or '(not started)'} {'succeeded' if run.success else 'FAILED'} in {took}"


def _interrupted_exit_code() -> int:
    """128 + the signal that stopped the command (SIGINT when it cannot tell)."""
    import signal

    from hub.sync import received_signal

    return 128 + int(received_signal(wait_s=1.0) or signal.SIGINT)


def _signal_name(code: int) -> str:
    import signal

    return signal.Signals(code - 128).name


@app.command()
def dev(port: int = typer.Option(3000, help="Port of the Dagster UI.")) -> None:
    """Open the Dagster UI on this project (DAGSTER_HOME defaults to .hub/dagster_home)."""
    import os
    import sys

    from hub.instance import ensure_dagster_home

    ensure_dagster_home(Path(".hub/dagster_home"))
    dagster = Path(sys.executable).with_name("dagster")
    workspace = Path(__file__).resolve().parents[2] / "workspace.yaml"
    os.execv(dagster, [str(dagster), "dev", "-w", str(workspace), "-p", str(port)])


@db_app.command("upgrade")
def db_upgrade(
    database_url: str = typer.Option(None, envvar="HUB_DATABASE_URL", help="Defaults to the hub's settings."),
) -> None:
    """Create or migrate the hub's tables (alembic)."""
    from hub.settings import HubSettings
    from hub.store.migrate import upgrade

    url = database_url or HubSettings().database_url
    upgrade(url)
    console.print(f"store at head: {url.split('@')[-1]}")


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
