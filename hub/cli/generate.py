"""`hub generate`: write a synthetic plant group for the mock systems, for load tests and benchmarks."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from hub.cli import app, console
from hub.cli.errors import EXIT_CODES_HELP
from hub.synthetic_plant import DEFAULT_ANCHOR, MANIFEST_FILE, MAX_SITES, generate_plant


@app.command(epilog=EXIT_CODES_HELP)
def generate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write: absent, empty, or an earlier generated plant.")],
    sites: Annotated[
        int, typer.Option("--sites", min=1, max=MAX_SITES, help="Sites (company codes); the first two are the fixture plant's.")
    ] = 2,
    permits: Annotated[int, typer.Option("--permits", min=1, help="PTW permits.")] = 1000,
    devices: Annotated[int, typer.Option("--devices", min=1, help="EAM assets (at least 10 per site).")] = 200,
    work_orders: Annotated[int, typer.Option("--work-orders", min=0, help="EAM work orders.")] = 2000,
    materials: Annotated[int, typer.Option("--materials", min=1, help="MES materials; the fixture's 18 come first.")] = 40,
    seed: Annotated[int, typer.Option("--seed", help="The same seed and arguments give byte-identical files.")] = 1,
    anchor: Annotated[
        datetime,
        typer.Option(
            "--anchor",
            formats=["%Y-%m-%d"],
            help="The plant's 'today': open permits cluster around it, every change stamp lies before it.",
        ),
    ] = DEFAULT_ANCHOR.isoformat(),
    effects: Annotated[
        bool,
        typer.Option(
            "--effects/--no-effects",
            help="Plant a workshop whose work at height and defect rate rise together, and lifted devices "
            "that fail ever sooner (what the cross-system analyses look for).",
        ),
    ] = True,
) -> None:
    """Generate a seeded synthetic plant in the fixture format the mock systems serve (fixtures/README.md)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST_FILE).is_file())):
        raise typer.BadParameter(f"{out} exists and is not an empty folder or a generated plant", param_hint="--out")
    started = time.perf_counter()
    try:
        manifest = generate_plant(
            out, sites=sites, permits=permits, devices=devices, work_orders=work_orders, materials=materials,
            seed=seed, anchor=anchor.date(), effects=effects,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    seconds = time.perf_counter() - started
    counts = manifest["counts"]
    malformed = counts["malformed"]
    console.print(f"plant written to {out} in {seconds:.1f} s (seed {seed})")
    for label, key, file in (
        ("permits", "permits", "ptw/permits.json"),
        ("assets", "assets", "eam/assets.json"),
        ("work orders", "work_orders", "eam/workorders.json"),
        ("materials", "materials", "mes/materials.json"),
    ):
        console.print(f"  {label:<12} {counts[key]:>9,}  malformed {malformed[file]:>6,}", markup=False)
    console.print(f"  {'sites':<12} {counts['company_codes']:>9,}", markup=False)
    states = ", ".join(f"{state} {n:,}" for state, n in counts["permit_states"].items())
    console.print(f"  permit states: {states}", markup=False)
