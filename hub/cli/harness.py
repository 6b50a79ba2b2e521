"""`hub crashtest` and `hub chaos`: prove the hub loses nothing, posts nothing twice and allows nothing unsafe."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hub.cli import REPO_FIXTURES, app, console
from hub.cli.errors import EXIT_CODES_HELP

PROGRESS_EVERY = 50


def _failures(verdicts) -> str:
    return "; ".join(f"{v.invariant}: {', '.join(v.problems[:3])}" for v in verdicts if not v.held)


@app.command(epilog=EXIT_CODES_HELP)
def crashtest(
    kills: Annotated[int, typer.Option("--kills", min=1, help="How many kill points to draw.")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Draws the kill points; the same seed, the same points.")] = 1,
    keep_going: Annotated[bool, typer.Option("--keep-going", help="Run every kill point even after a violation.")] = False,
    fixtures: Annotated[Path, typer.Option(help="Fixture plant loaded into the mock systems.")] = REPO_FIXTURES,
) -> None:
    """SIGKILL `hub sync` at failpoints or blindly, recover, and check the invariants after each kill."""
    from hub.harness.crash import draw_kill_points, run_crashtest

    def progress(outcome) -> None:
        state = "ok" if outcome.ok else "[red]VIOLATED[/]"
        console.print(f"  {outcome.point.label}: died={outcome.died} recovery={outcome.recovery_runs} {state} ({outcome.seconds:.1f} s)")

    outcomes = run_crashtest(draw_kill_points(kills, seed), fixtures, keep_going=keep_going, progress=progress)
    table = Table(title=f"Crash test, seed {seed}")
    table.add_column("kill point", no_wrap=True)
    for column in ("died?", "left broken by the kill", "recovery runs", "invariants ok", "seconds"):
        table.add_column(column)
    for o in outcomes:
        held = "yes" if o.ok else f"[red]no[/] {_failures(o.verdicts) or 'recovery sync failed'}"
        died = "SIGKILL" if o.died else f"no (exit {o.exit_code})"
        broken = ", ".join(o.broken_by_kill) or "nothing"
        table.add_row(o.point.label, died, broken, str(o.recovery_runs), held, f"{o.seconds:.1f}")
    console.print(table)
    killed = sum(o.died for o in outcomes)
    failed = [o for o in outcomes if not o.ok]
    mean = sum(o.seconds for o in outcomes) / len(outcomes)
    console.print(f"{mean:.1f} s per kill point")
    if failed:
        console.print(f"[red]{len(outcomes)} kill points, {killed} killed mid-run, {len(failed)} with violations[/]")
        for o in failed:
            console.print(f"--- {o.point.label}\n{o.log_tail}", markup=False)
        raise typer.Exit(1)
    console.print(f"{len(outcomes)} kill points, {killed} killed mid-run, all invariants held")


@app.command(epilog=EXIT_CODES_HELP)
def chaos(
    runs: Annotated[int, typer.Option("--runs", min=1, help="How many fault schedules to run.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Draws the fault schedules; the same seed, the same schedules.")] = 1,
    fixtures: Annotated[Path, typer.Option(help="Fixture plant loaded into the mock systems.")] = REPO_FIXTURES,
) -> None:
    """Sync through random plant faults, recover, and check the invariants after every run."""
    from hub.harness.chaos import FAULT_KINDS, MAX_RECOVERY_RUNS, run_chaos
    from hub.harness.invariants import INVARIANTS

    def progress(outcome) -> None:
        index = outcome.schedule.index
        if not outcome.ok:
            problem = _failures(outcome.verdicts) or "no recovery sync succeeded"
            console.print(f"run {index} VIOLATED ({outcome.schedule.describe()}): {problem}", markup=False, style="red")
        elif (index + 1) % PROGRESS_EVERY == 0:
            console.print(f"  {index + 1} of {runs} runs done")

    outcomes = run_chaos(runs, seed, fixtures, progress=progress)
    kinds = Counter(kind for o in outcomes for kind in {f.kind for f in o.schedule.faults})
    faults = Table(title=f"Fault kinds in {runs} schedules, seed {seed}")
    faults.add_column("fault kind")
    faults.add_column("schedules", justify="right")
    for kind in FAULT_KINDS:
        faults.add_row(kind, str(kinds[kind]))
    console.print(faults)

    recovered = f"a clean sync succeeded within {MAX_RECOVERY_RUNS} recovery syncs"
    verdicts = Table(title="Invariants after recovery")
    verdicts.add_column("invariant", no_wrap=True)
    verdicts.add_column("meaning")
    verdicts.add_column("held", justify="right")
    verdicts.add_column("violated", justify="right")
    held = Counter(v.invariant for o in outcomes for v in o.verdicts if v.held)
    for name, meaning in INVARIANTS.items():
        verdicts.add_row(name, meaning, str(held[name]), str(len(outcomes) - held[name]))
    recoveries = sum(o.recovered for o in outcomes)
    verdicts.add_row("recovered", recovered, str(recoveries), str(len(outcomes) - recoveries))
    console.print(verdicts)

    failed = [o for o in outcomes if not o.ok]
    mean = sum(o.seconds for o in outcomes) / len(outcomes)
    faulted_failed = sum(not o.faulted_run_succeeded for o in outcomes)
    needed = Counter(o.recovery_runs for o in outcomes)
    console.print(
        f"{len(outcomes)} runs, {sum(o.faults_fired for o in outcomes)} requests faulted, "
        f"{faulted_failed} faulted syncs failed; recovery syncs needed: "
        + ", ".join(f"{n}: {needed[n]} runs" for n in sorted(needed))
        + f"; {mean:.1f} s per run"
    )
    if failed:
        console.print(f"[red]{len(failed)} of {len(outcomes)} runs violated an invariant[/]")
        raise typer.Exit(1)
    console.print(f"{len(outcomes)} runs, all invariants held")
