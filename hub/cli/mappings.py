"""`hub mappings`: check mapping files, and see what they make of sample vendor records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from hub.mappings import KINDS, Mapping, load_mapping, packaged_mappings, site_overlays
from hub.mappings.preview import MappingDiff, PreviewResult, diff, preview
from hub.mappings.source import PACKAGE_DIR
from hub.yamlfile import ConfigError

app = typer.Typer(help="Mapping files: validate, preview and compare.", no_args_is_help=True)


def _default_files() -> list[Path]:
    return [PACKAGE_DIR / f"{name}.yaml" for name in packaged_mappings()] + site_overlays()


@app.command()
def validate(
    paths: list[Path] = typer.Argument(None, help="Mapping files (default: every packaged mapping and site overlay)."),
) -> None:
    """Check mapping files; print every problem as file:line:column: field: message."""
    failed = False
    for path in paths or _default_files():
        try:
            mapping = load_mapping(path)
        except ConfigError as exc:
            failed = True
            for problem in exc.problems:
                typer.echo(str(problem))
            continue
        typer.echo(f"ok {path} ({mapping.name}, sha256 {mapping.sha256[:12]})")
    if failed:
        raise typer.Exit(1)


def _load(system_or_path: str) -> Mapping:
    try:
        return load_mapping(system_or_path)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(1) from None


def _sample(path: Path, mapping: Mapping, kind: str | None) -> dict[str, list[Any]]:
    """Records per kind from a JSON file holding a list of vendor records or {"kind": [records]}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"{path}: cannot read JSON: {exc}", param_hint="--sample") from None
    kinds = mapping.inbound_kinds
    if not kinds:
        raise typer.BadParameter(f"{mapping.name} maps nothing inbound; there is nothing to preview", param_hint="KIND")
    if kind is not None and kind not in kinds:
        raise typer.BadParameter(f"{mapping.name} does not map {kind!r} inbound; it maps {', '.join(kinds)}",
                                 param_hint="--kind")
    if isinstance(data, list):
        if kind is None and len(kinds) > 1:
            raise typer.BadParameter(f"{mapping.name} maps {', '.join(kinds)}: choose one", param_hint="--kind")
        return {kind or kinds[0]: data}
    if isinstance(data, dict):
        given = {k: v for k, v in data.items() if k in KINDS and isinstance(v, list)}
        chosen = {k: v for k, v in given.items() if k == kind or (kind is None and k in kinds)}
        if chosen:
            return chosen
    found = ", ".join(data) if isinstance(data, dict) else type(data).__name__
    raise typer.BadParameter(
        f"{path}: expected a list of vendor records or an object keyed by record kind "
        f"({', '.join([kind] if kind else kinds)}); found {found}",
        param_hint="--sample",
    )


def _lines(values: dict[str, Any]) -> str:
    return "\n".join(f"{name}: {value}" for name, value in values.items() if value is not None)


def _render_preview(console: Console, result: PreviewResult) -> None:
    table = Table(title=f"{result.mapping}: {result.kind} ({len(result.mapped)} mapped, "
                  f"{len(result.quarantined)} quarantined)", show_lines=True)
    for column in ("key", "vendor record", "canonical record"):
        table.add_column(column, overflow="fold")
    for row in result.rows:
        outcome = _lines(row.canonical) if row.canonical is not None else "[red]quarantined[/]"
        table.add_row(row.key, _lines(row.vendor), outcome)
    console.print(table)
    console.print(f"[bold]Quarantined ({len(result.quarantined)}):[/]")
    for row in result.quarantined:
        assert row.rejected is not None
        console.print(f"  {row.rejected.reason}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"[bold]Unmapped vendor fields ({len(result.unmapped)}):[/]")
    for path, count in result.unmapped.items():
        plural = "" if count == 1 else "s"
        console.print(f"  {path} (in {count} record{plural})", markup=False, highlight=False, soft_wrap=True)


# The read each system's flavor file describes, used to fetch live records for a preview.
LIVE_READS = {"ptw": "permits_changed", "eam": "maintenance", "mes": "parameters"}


def _live(system_or_path: str, mapping: Mapping, ids: list[str], site: str | None) -> dict[str, list[Any]]:
    """Records straight from the configured system (HUB_* settings), through this mapping's endpoint."""
    from hub.resources import resources_from_settings
    from hub.settings import HubSettings

    if mapping.system not in LIVE_READS:
        raise typer.BadParameter(f"--live reads from ptw, eam or mes, not {mapping.system}", param_hint="--live")
    if mapping.system != "ptw" and not ids:
        raise typer.BadParameter(f"--live on {mapping.system} needs --ids (device IDs or material names)")
    settings = HubSettings()
    endpoint = getattr(settings, mapping.system).model_copy(update={"mapping": system_or_path})
    client = resources_from_settings(settings.model_copy(update={mapping.system: endpoint}))[mapping.system].client()
    # Equipment is (site, number): the EAM is asked at one site, the first configured by default.
    where = {"site": (site or settings.sites[0]).strip().upper()} if mapping.system == "eam" else {}
    with client:
        if mapping.system == "ptw":
            return next(client.pages(LIVE_READS["ptw"], since=None), {})
        return client.fetch(LIVE_READS[mapping.system], ids=ids, **where)


@app.command("preview")
def preview_command(
    system_or_path: str = typer.Argument(..., help="A packaged mapping (ptw, eam, mes) or a mapping file."),
    sample: Path = typer.Option(None, "--sample", help="JSON: a list of vendor records, or {kind: [records]}."),
    live: bool = typer.Option(False, "--live", help="Fetch records from the system configured by HUB_* settings."),
    ids: str = typer.Option("", "--ids", help="With --live on eam or mes: comma-separated device IDs or materials."),
    site: str = typer.Option(None, "--site", help="With --live on eam: the site the devices are at (default: the first of HUB_SITES)."),
    kind: str = typer.Option(None, "--kind", help="Record kind, when the mapping maps several."),
) -> None:
    """Show vendor records (a sample file or live) next to the canonical records they become."""
    if (sample is None) == (not live):
        raise typer.BadParameter("give exactly one of --sample FILE or --live")
    mapping = _load(system_or_path)
    if live:
        fetched = _live(system_or_path, mapping, [i.strip() for i in ids.split(",") if i.strip()], site)
        records_by_kind = {k: v for k, v in fetched.items() if kind in (None, k)}
    else:
        records_by_kind = _sample(sample, mapping, kind)
    console = Console()
    for chosen, records in records_by_kind.items():
        _render_preview(console, preview(mapping, chosen, records))


def _render_diff(result: MappingDiff) -> None:
    counts: dict[str, int] = {}
    for change in result.changes:
        counts[change.change] = counts.get(change.change, 0) + 1
    summary = ", ".join(f"{n} {what}" for what, n in counts.items()) or "no changes"
    typer.echo(f"{result.old.mapping} -> {result.new.mapping}, {result.new.kind}: {summary}; "
               f"{result.unchanged} unchanged")
    for change in result.changes:
        if change.change == "changed":
            typer.echo(f"{change.key}: changed")
            for f in change.fields:
                typer.echo(f"  {f.field}: {f.old!r} → {f.new!r}")
        elif change.change == "no longer quarantined":
            typer.echo(f"{change.key}: no longer quarantined")
            for f in change.fields:
                typer.echo(f"  {f.field}: {f.new!r}")
        elif change.reason is not None:
            typer.echo(f"{change.key}: {change.change}: {change.reason}")
        else:
            typer.echo(f"{change.key}: {change.change}")


@app.command("diff")
def diff_command(
    old: str = typer.Argument(..., help="The mapping in use (packaged name or file)."),
    new: str = typer.Argument(..., help="The changed mapping file."),
    sample: Path = typer.Option(..., "--sample", help="JSON: a list of vendor records, or {kind: [records]}."),
    kind: str = typer.Option(None, "--kind", help="Record kind, when the mappings map several."),
) -> None:
    """Map a sample with two mappings and show what changes in the canonical records."""
    old_mapping, new_mapping = _load(old), _load(new)
    for chosen, records in _sample(sample, new_mapping, kind).items():
        if chosen not in old_mapping.inbound_kinds:
            raise typer.BadParameter(f"{old_mapping.name} does not map {chosen!r} inbound", param_hint="OLD")
        _render_diff(diff(preview(old_mapping, chosen, records), preview(new_mapping, chosen, records)))
