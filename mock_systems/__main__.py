"""`mock-systems serve`: start the plant-system mocks until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from .base import AuthConfigError
from .faults import FaultPlanError
from .fixtures import FixtureError
from .servers import DEFAULT_PORTS, SYSTEMS, fault_plans, start_systems


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mock-systems", description="Mock PTW, EAM, MES and ERP systems.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start all mocks on loopback")
    serve.add_argument("--fixtures", type=Path, default=Path("fixtures"), help="fixtures folder (default: fixtures)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    for name in SYSTEMS:
        serve.add_argument(
            f"--{name.replace('_', '-')}-port",
            type=int,
            default=DEFAULT_PORTS[name],
            help=f"default {DEFAULT_PORTS[name]}; 0: any free port",
        )
    serve.add_argument(
        "--faults", type=Path, help=f"fault plan JSON: keyed by system ({', '.join(SYSTEMS)}) or one plan for all"
    )
    serve.add_argument("--state-dir", type=Path, help="keep PTW holds and ERP documents here across restarts")
    serve.add_argument(
        "--auth", type=Path, help='credentials JSON keyed by system, e.g. {"erp": {"bearer": "TOKEN"}}'
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        faults = fault_plans(json.loads(args.faults.read_text(encoding="utf-8"))) if args.faults else None
    except (OSError, ValueError) as exc:
        print(f"mock-systems: cannot use --faults {args.faults}: {exc}", file=sys.stderr)
        return 2
    try:
        auth = json.loads(args.auth.read_text(encoding="utf-8")) if args.auth else None
    except (OSError, ValueError) as exc:
        print(f"mock-systems: cannot use --auth {args.auth}: {exc}", file=sys.stderr)
        return 2
    ports = {name: getattr(args, f"{name}_port") for name in SYSTEMS}

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        running = start_systems(
            args.fixtures, ports=ports, faults=faults, state_dir=args.state_dir, host=args.host, auth=auth
        )
    except (FixtureError, FaultPlanError, AuthConfigError, OSError, RuntimeError) as exc:
        print(f"mock-systems: {exc}", file=sys.stderr)
        return 1
    with running:
        for name, url in running.urls.items():
            print(f"{name}: {url}", flush=True)
        print("mock systems running; Ctrl-C to stop", flush=True)
        while not stop.wait(0.5):
            pass
    print("mock systems stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
