"""`hub quarantine`: see what was set aside and why, and replay it after a fix."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from hub.cli import DatabaseUrlOption, JsonOption, console, emit_json
from hub.cli.output import choices
from hub.cli.errors import EXIT_CODES_HELP, FAILED, USAGE, Problem, database_errors

app = typer.Typer(help="Records that failed validation, with their reasons.", no_args_is_help=True)


System = choices(
    "System", ("ptw", "eam", "mes", "erp", "hub"), "Where a quarantined record came from (`hub` for records the hub itself set aside)."
)


def _rows(database_url: str | None, include_resolved: bool) -> list[dict]:
    from hub.settings import HubSettings
    from hub.store.repository import HubStore

    url = database_url or HubSettings().database_url
    with database_errors(url):
        return HubStore(url).list_quarantine(include_resolved)


def _state(row: dict) -> str:
    return "replayed" if row["replayed_at"] else ("resolved" if row["resolved"] else "open")


@app.command("list", epilog=EXIT_CODES_HELP)
def list_(
    include_resolved: Annotated[bool, typer.Option("--all", help="Also show replayed and resolved records.")] = False,
    system: Annotated[System | None, typer.Option(help="Only this system's records.")] = None,
    show_payload: Annotated[bool, typer.Option("--payload", help="Print each record's payload too.")] = False,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """List quarantined records, oldest first."""
    rows = [r for r in _rows(database_url, include_resolved) if system in (None, r["system"])]
    if as_json:
        keys = ("id", "system", "record_kind", "source_key", "field", "reason")
        emit_json(
            {
                "count": len(rows),
                "records": [
                    {
                        **{key: r[key] for key in keys},
                        "state": _state(r),
                        "received": r["created_at"].isoformat(timespec="seconds"),
                        **({"payload": r["payload"]} if show_payload else {}),
                    }
                    for r in rows
                ],
            }
        )
        return
    for r in rows:
        received = r["created_at"].isoformat(timespec="seconds")
        console.print(
            f"#{r['id']} {r['system']}/{r['record_kind']} {r['source_key'] or '(no key)'} "
            f"[{r['field'] or '-'}] {_state(r)}, received {received}: {r['reason']}",
            markup=False,
            soft_wrap=True,
        )
    console.print(f"{len(rows)} record(s)")
    if show_payload:
        for r in rows:
            console.print(f"#{r['id']}: {json.dumps(r['payload'], ensure_ascii=False)}", markup=False)


def _refuse_ids_not_open(store, ids: list[int]) -> None:
    """An id that names no open record would otherwise be skipped without a word."""
    states = {r["id"]: _state(r) for r in store.list_quarantine(True)}
    unknown = [str(i) for i in ids if i not in states]
    if unknown:
        raise Problem(f"no quarantined record with id {', '.join(unknown)} (see hub quarantine list --all)", USAGE)
    closed = [f"{i} ({states[i]})" for i in ids if states[i] != "open"]
    if closed:
        raise Problem(f"quarantined record {', '.join(closed)} is no longer open; nothing to replay", USAGE)


@app.command(epilog=EXIT_CODES_HELP)
def replay(
    ids: Annotated[list[int] | None, typer.Argument(help="Quarantine ids; default: every open record.")] = None,
    database_url: DatabaseUrlOption = None,
    cost_rules_file: Annotated[str | None, typer.Option(envvar="HUB_COST_RULES_FILE")] = None,
) -> None:
    """Map quarantined records again with the (fixed) mapping and store those that now pass.

    Exits 1 when a record still fails, 2 when an id is not a quarantined record."""
    from hub.logic.rules import load_cost_rules
    from hub.quarantine import replay as replay_records
    from hub.resources import resources_from_settings
    from hub.settings import HubSettings
    from hub.store.repository import HubStore

    settings = HubSettings()
    url = database_url or settings.database_url
    resources = resources_from_settings(settings)

    def client_of(system: str):
        return resources[system].process_config_and_initialize().client()

    with database_errors(url):
        store = HubStore(url)
        if ids:
            _refuse_ids_not_open(store, ids)
        outcome = replay_records(store, load_cost_rules(cost_rules_file), ids or None, client_of)
    for label in outcome.replayed:
        console.print(f"replayed {label}", markup=False, soft_wrap=True)
    for label, reason in outcome.still_failing:
        console.print(f"still failing {label}: {reason}", markup=False, soft_wrap=True)
    console.print(f"{len(outcome.replayed)} replayed, {len(outcome.still_failing)} still failing")
    if outcome.still_failing:
        raise typer.Exit(FAILED)
