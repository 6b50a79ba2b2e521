"""`hub quarantine`: see what was set aside and why, and replay it after a fix."""

from __future__ import annotations

import json

import typer
from rich.console import Console

app = typer.Typer(help="Records that failed validation, with their reasons.", no_args_is_help=True)
console = Console()


def _store(database_url: str | None):
    from hub.settings import HubSettings
    from hub.store.repository import HubStore

    return HubStore(database_url or HubSettings().database_url)


@app.command("list")
def list_(
    include_resolved: bool = typer.Option(False, "--all", help="Also show replayed and resolved records."),
    system: str | None = typer.Option(None, help="Only this system (ptw, eam, mes, erp, hub)."),
    show_payload: bool = typer.Option(False, "--payload", help="Print each record's payload too."),
    database_url: str | None = typer.Option(None, envvar="HUB_DATABASE_URL"),
) -> None:
    """List quarantined records, oldest first."""
    rows = [r for r in _store(database_url).list_quarantine(include_resolved) if system in (None, r["system"])]
    for r in rows:
        state = "replayed" if r["replayed_at"] else ("resolved" if r["resolved"] else "open")
        received = r["created_at"].isoformat(timespec="seconds")
        console.print(
            f"#{r['id']} {r['system']}/{r['record_kind']} {r['source_key'] or '(no key)'} "
            f"[{r['field'] or '-'}] {state}, received {received}: {r['reason']}",
            markup=False,
            soft_wrap=True,
        )
    console.print(f"{len(rows)} record(s)")
    if show_payload:
        for r in rows:
            console.print(f"#{r['id']}: {json.dumps(r['payload'], ensure_ascii=False)}", markup=False)


@app.command()
def replay(
    ids: list[int] = typer.Argument(None, help="Quarantine ids; default: every open record."),
    database_url: str | None = typer.Option(None, envvar="HUB_DATABASE_URL"),
    cost_rules_file: str | None = typer.Option(None, envvar="HUB_COST_RULES_FILE"),
) -> None:
    """Map quarantined records again with the (fixed) mapping and store those that now pass."""
    from hub.logic.rules import load_cost_rules
    from hub.quarantine import replay as replay_records

    outcome = replay_records(_store(database_url), load_cost_rules(cost_rules_file), ids or None)
    for label in outcome.replayed:
        console.print(f"replayed {label}", markup=False, soft_wrap=True)
    for label, reason in outcome.still_failing:
        console.print(f"still failing {label}: {reason}", markup=False, soft_wrap=True)
    console.print(f"{len(outcome.replayed)} replayed, {len(outcome.still_failing)} still failing")
    if outcome.still_failing:
        raise typer.Exit(1)
