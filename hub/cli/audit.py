"""`hub audit`: check the hash-chained audit log of gate decisions and ERP postings."""

from __future__ import annotations

import typer

app = typer.Typer(help="The tamper-evident audit log of gate decisions and ERP postings.", no_args_is_help=True)

HEAD_CAVEAT = (
    "The chain cannot show rows removed from its end, nor a chain rewritten from some row on:\n"
    "compare this head with a copy kept outside the database."
)


@app.command("verify")
def verify_command(
    database_url: str = typer.Option(None, envvar="HUB_DATABASE_URL", help="Defaults to the hub's settings."),
) -> None:
    """Walk the audit log's hash chain; exit 1 at the first altered, missing or misplaced row."""
    from hub.audit import verify
    from hub.settings import HubSettings
    from hub.store.repository import HubStore, SchemaNotReadyError

    url = database_url or HubSettings().database_url
    try:
        store = HubStore(url)
    except SchemaNotReadyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    with store:
        verdict = verify(store.iter_audit())
    head = "none (empty log)" if verdict.head_id is None else f"row {verdict.head_id}, hash {verdict.head_hash}"
    if verdict.ok:
        typer.echo(f"audit log intact: {verdict.rows_checked} rows checked")
        typer.echo(f"head: {head}")
        typer.echo(HEAD_CAVEAT)
        return
    typer.echo(f"AUDIT LOG TAMPERED: {verdict.problem}")
    typer.echo(f"intact before it: {verdict.rows_checked} rows; last intact: {head}")
    raise typer.Exit(1)
