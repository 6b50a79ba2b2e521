"""`mock-systems serve`: start the plant-system mocks until Ctrl-C or SIGTERM.

The same conventions as `hub`: Annotated options, an error in one line on stderr, the exit
codes in the help, `--verbose` for the trace.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from .base import AuthConfigError
from .faults import FaultPlanError
from .fixtures import FixtureError
from .servers import DEFAULT_PORTS, SYSTEMS, fault_plans, start_systems

EXIT_CODES_HELP = (
    "Exit codes: 0 stopped by Ctrl-C or SIGTERM; 1 a mock could not start (fixtures, port in use); "
    "2 bad usage (an option or a --faults/--auth file)."
)

app = typer.Typer(help="Mock PTW, EAM, MES and ERP systems.", no_args_is_help=True, add_completion=False)


@app.callback()
def options(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="On an error, show the full trace.")] = False,
) -> None:
    ctx.obj = {"verbose": verbose}


def _port(name: str) -> Any:
    return Annotated[
        int, typer.Option(f"--{name.replace('_', '-')}-port", help=f"The {name} mock's port; 0: any free port.")
    ]


def _fail(ctx: typer.Context, message: str, code: int, exc: BaseException) -> None:
    if ctx.obj["verbose"]:
        raise exc
    typer.echo(f"mock-systems: {str(message).strip().splitlines()[0]}", err=True)
    raise typer.Exit(code)


def _json_file(ctx: typer.Context, option: str, path: Path | None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path else None
    except (OSError, ValueError) as exc:
        _fail(ctx, f"cannot use {option} {path}: {exc}", 2, exc)


@app.command(epilog=EXIT_CODES_HELP)
def serve(
    ctx: typer.Context,
    fixtures: Annotated[Path, typer.Option(help="The fixtures folder.")] = Path("fixtures"),
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    ptw_port: _port("ptw") = DEFAULT_PORTS["ptw"],
    eam_port: _port("eam") = DEFAULT_PORTS["eam"],
    mes_port: _port("mes") = DEFAULT_PORTS["mes"],
    erp_port: _port("erp") = DEFAULT_PORTS["erp"],
    eam_oslc_port: _port("eam_oslc") = DEFAULT_PORTS["eam_oslc"],
    mes_odata_port: _port("mes_odata") = DEFAULT_PORTS["mes_odata"],
    faults: Annotated[
        Path | None, typer.Option(help=f"Fault plan JSON: keyed by system ({', '.join(SYSTEMS)}) or one plan for all.")
    ] = None,
    state_dir: Annotated[Path | None, typer.Option(help="Keep PTW holds and ERP documents here across restarts.")] = None,
    auth: Annotated[
        Path | None, typer.Option(help='Credentials JSON keyed by system, e.g. {"erp": {"bearer": "TOKEN"}}.')
    ] = None,
    only: Annotated[
        str | None,
        typer.Option(help=f"Serve only these systems, comma-separated ({', '.join(SYSTEMS)}): one process per system, as plants run them."),
    ] = None,
) -> None:
    """Start all mocks (or those of --only) on loopback; print each one's URL, then serve until stopped."""
    chosen = None if only is None else [name.strip() for name in only.split(",") if name.strip()]
    if chosen is not None and (not chosen or set(chosen) - set(SYSTEMS)):
        message = f"--only {only!r}: name systems among {', '.join(SYSTEMS)}"
        _fail(ctx, message, 2, ValueError(message))
    plan = _json_file(ctx, "--faults", faults)
    try:
        plans = fault_plans(plan) if plan is not None else None
    except (FaultPlanError, ValueError) as exc:
        _fail(ctx, f"cannot use --faults {faults}: {exc}", 2, exc)
    credentials = _json_file(ctx, "--auth", auth)
    ports = {
        "ptw": ptw_port, "eam": eam_port, "mes": mes_port, "erp": erp_port,
        "eam_oslc": eam_oslc_port, "mes_odata": mes_odata_port,
    }

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        running = start_systems(
            fixtures, ports=ports, faults=plans, state_dir=state_dir, host=host, auth=credentials, only=chosen
        )
    except OSError as exc:
        asked = ", ".join(f"{name} {host}:{port}" for name, port in ports.items() if port)
        _fail(ctx, f"{exc.strerror or exc} (ports asked: {asked}; 0 picks a free one)", 1, exc)
    except (FixtureError, FaultPlanError, AuthConfigError, RuntimeError) as exc:
        _fail(ctx, str(exc), 1, exc)
    with running:
        for name, url in running.urls.items():
            print(f"{name}: {url}", flush=True)
        print("mock systems running; Ctrl-C to stop", flush=True)
        while not stop.wait(0.5):
            pass
    print("mock systems stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    """The `mock-systems` command; returns its exit code."""
    try:
        # Not standalone: an Exit comes back as its code instead of ending the process here.
        return app(args=argv, prog_name="mock-systems", standalone_mode=False) or 0
    except typer.TyperException as usage:
        usage.show()
        return usage.exit_code


if __name__ == "__main__":
    sys.exit(main())
