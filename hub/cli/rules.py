"""`hub rules`: check a gate rule file, and see which blocks a change would lift before loading it."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer

from hub.cli import DatabaseUrlOption, console
from hub.cli.errors import EXIT_CODES_HELP, FAILED, database_errors

app = typer.Typer(help="Gate rule files.", no_args_is_help=True)


@app.command("diff", epilog=EXIT_CODES_HELP)
def diff(
    old: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The rule file in force.")],
    new: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The rule file to compare it with.")],
    database_url: DatabaseUrlOption = None,
) -> None:
    """List the permits the hub holds now that NEW would allow although OLD blocks them (and the reverse).

    Exits 1 when NEW would lift any block, so a script can stop a rollout for review; 2 when a rule file is invalid.
    """
    from hub.logic.rules import load_gate_rules
    from hub.settings import HubSettings
    from hub.steps.rules_diff import diff_rules
    from hub.store.repository import HubStore

    old_rules, new_rules = load_gate_rules(old), load_gate_rules(new)
    settings = HubSettings()
    url = database_url or settings.database_url
    with database_errors(url):
        result = diff_rules(HubStore(url), old_rules, new_rules, settings.sites, datetime.now(timezone.utc))
    console.print(f"{old_rules.version} -> {new_rules.version} on {', '.join(settings.sites)}")
    if new_rules.disabled:
        console.print(f"[red]{new} switches the gate off: {new_rules.gate_disabled_reason}[/]")
    for site, permit_id, codes in result.lifted:
        console.print(f"would ALLOW {site} {permit_id} (blocked now: {codes})", markup=False)
    for site, permit_id, codes in result.added:
        console.print(f"would BLOCK {site} {permit_id} ({codes})", markup=False)
    console.print(f"{len(result.lifted)} block(s) lifted, {len(result.added)} added")
    if result.lifted:
        raise typer.Exit(FAILED)
