"""`hub serve`: the gate-check service the PTW calls before it approves a permit."""

from __future__ import annotations

import typer


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8110, help="Port to listen on."),
) -> None:
    """Serve the gate-check API (POST /api/v1/gate-checks; OpenAPI at /docs) until stopped."""
    import uvicorn

    from hub.service import GateApiNotConfigured, create_app
    from hub.settings import HubSettings

    try:
        app = create_app(HubSettings())
    except GateApiNotConfigured as exc:
        typer.echo(f"hub serve: {exc}", err=True)
        raise typer.Exit(2) from None
    uvicorn.run(app, host=host, port=port, log_level="info")


def register(app: typer.Typer) -> None:
    """Add `serve` to the `hub` command."""
    app.command()(serve)
