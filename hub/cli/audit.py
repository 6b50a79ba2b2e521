"""`hub audit`: check the hash-chained audit log of gate decisions and ERP postings."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from hub.cli import DatabaseUrlOption, JsonOption, console, emit_json
from hub.cli.errors import EXIT_CODES_HELP, FAILED, database_errors

app = typer.Typer(help="The tamper-evident audit log of gate decisions and ERP postings.", no_args_is_help=True)

HEAD_CAVEAT = (
    "The chain cannot show rows removed from its end, nor a chain rewritten from some row on:\n"
    "compare this head with a copy kept outside the database (hub audit head; verify --expect-head)."
)


def _verdict(database_url: str | None, expect_head: str | None = None):
    from hub.audit import verify
    from hub.settings import HubSettings
    from hub.store.repository import HubStore

    url = database_url or HubSettings().database_url
    with database_errors(url), HubStore(url) as store:
        return verify(store.iter_audit(), expect_head=expect_head)


@app.command("verify", epilog=EXIT_CODES_HELP)
def verify_command(
    database_url: DatabaseUrlOption = None,
    expect_head: Annotated[
        str | None,
        typer.Option("--expect-head", metavar="HASH", help="A head hash kept earlier (hub audit head): it must still be in the log."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Walk the audit log's hash chain; exit 1 at the first altered, missing or misplaced row,
    or when the row of --expect-head is gone (rows removed from the end)."""
    verdict = _verdict(database_url, expect_head)
    if as_json:
        emit_json({"ok": verdict.ok, **asdict(verdict)})
    else:
        head = "none (empty log)" if verdict.head_id is None else f"row {verdict.head_id}, hash {verdict.head_hash}"
        if verdict.ok:
            console.print(f"audit log intact: {verdict.rows_checked} rows checked", highlight=False)
            console.print(f"head: {head}", highlight=False, soft_wrap=True)
            if expect_head is None:
                console.print(HEAD_CAVEAT, highlight=False, soft_wrap=True)
        else:
            console.print(f"AUDIT LOG TAMPERED: {verdict.problem}", highlight=False, soft_wrap=True)
            console.print(f"intact before it: {verdict.rows_checked} rows; last intact: {head}", highlight=False, soft_wrap=True)
    if not verdict.ok:
        raise typer.Exit(FAILED)


@app.command("head", epilog=EXIT_CODES_HELP)
def head_command(database_url: DatabaseUrlOption = None) -> None:
    """Print the hash of the log's last intact row, to keep outside the database for verify --expect-head."""
    verdict = _verdict(database_url)
    typer.echo(verdict.head_hash)
    if not verdict.ok:
        typer.echo(f"hub: the chain breaks after it: {verdict.problem}", err=True)
        raise typer.Exit(FAILED)
