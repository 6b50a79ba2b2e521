"""`hub serve`: the gate-check service the PTW calls before it approves a permit."""

from __future__ import annotations

from typing import Annotated

import typer


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8110,
    workers: Annotated[
        int, typer.Option(min=1, help="Server processes; each checks on its own (the rate limit is per process).")
    ] = 1,
) -> None:
    """Serve the gate-check API (POST /api/v1/gate-checks; OpenAPI at /docs) until stopped.

    Exit code 2 when the service is not configured (HUB_GATE_API__TOKEN unset)."""
    import uvicorn

    from hub.service import GateApiNotConfigured, create_app
    from hub.settings import HubSettings

    try:
        app = create_app(HubSettings())  # also checks the configuration before any worker starts
    except GateApiNotConfigured as exc:
        typer.echo(f"hub serve: {exc}", err=True)
        raise typer.Exit(2) from None
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level="info")
    else:
        uvicorn.run("hub.service:app_from_environment", factory=True, host=host, port=port, workers=workers, log_level="info")


def register(app: typer.Typer) -> None:
    """Add `serve` to the `hub` command."""
    app.command()(serve)
