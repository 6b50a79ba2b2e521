"""`hub mappings`: check mapping files, and see what they make of sample vendor records."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from hub.cli import JsonOption, console, emit_json
from hub.cli.output import choices
from hub.cli.errors import EXIT_CODES_HELP, FAILED
from hub.mappings import KINDS, Mapping, load_mapping, packaged_mappings, site_overlays
from hub.connectors.eam import parse_reply
from hub.connectors.retry import TransientError
from hub.mappings.draft import draft
from hub.mappings.preview import MappingDiff, PreviewResult, diff, preview
from hub.mappings.selector import records_in
from hub.mappings.source import PACKAGE_DIR
from hub.yamlfile import ConfigError

app = typer.Typer(help="Mapping files: validate, preview and compare.", no_args_is_help=True)

# The canonical record kinds, as the choices of --kind.
Kind = choices("Kind", KINDS, "A canonical record kind a mapping file maps.")
KindOption = Annotated[Kind | None, typer.Option("--kind", help="Record kind, when the mapping maps several.")]
SampleHelp = "JSON: a list of vendor records, or {kind: [records]}."


def _default_files() -> list[Path]:
    return [PACKAGE_DIR / f"{name}.yaml" for name in packaged_mappings()] + site_overlays()


@app.command(epilog=EXIT_CODES_HELP)
def validate(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Mapping files (default: every packaged mapping and site overlay).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check mapping files; print every problem as file:line:column: field: message. Exits 1 on any problem."""
    files = []
    for path in paths or _default_files():
        try:
            mapping = load_mapping(path)
        except ConfigError as exc:
            files.append({"path": str(path), "ok": False, "problems": [asdict(p) for p in exc.problems], "warnings": []})
            if not as_json:
                for problem in exc.problems:
                    typer.echo(str(problem))
            continue
        # A gate input the file invents without a reason is refused; with one, or declared unavailable, warned about.
        refused = [f.problem for f in mapping.gate_findings if f.refused]
        warned = [f.problem for f in mapping.gate_findings if not f.refused]
        files.append({"path": str(path), "ok": not refused, "mapping": mapping.name, "sha256": mapping.sha256,
                      "problems": [asdict(p) for p in refused], "warnings": [asdict(p) for p in warned]})
        if not as_json:
            for problem in refused:
                typer.echo(str(problem))
            for problem in warned:
                typer.echo(f"warning: {problem}")
            if not refused:
                typer.echo(f"ok {path} ({mapping.name}, sha256 {mapping.sha256[:12]})")
    ok = all(f["ok"] for f in files)
    if as_json:
        emit_json({"ok": ok, "files": files})
    if not ok:
        raise typer.Exit(FAILED)


def _load(system_or_path: str) -> Mapping:
    try:
        return load_mapping(system_or_path)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(FAILED) from None


def _read_reply(path: Path) -> Any:
    """A captured reply: JSON, or a SOAP envelope (its response's child elements, by element name)."""
    try:
        raw = path.read_bytes()
        if raw.lstrip().startswith(b"<"):
            return parse_reply(raw)
        return json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, TransientError) as exc:
        raise typer.BadParameter(f"{path}: cannot read JSON or a SOAP reply: {exc}", param_hint="--sample") from None


def _sample(path: Path, mapping: Mapping, kind: str | None) -> dict[str, list[Any]]:
    """Records per kind from a list of vendor records, {"kind": [records]}, or a reply as the vendor sent it."""
    data = _read_reply(path)
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
        # A reply as the vendor sent it: the endpoint's record selectors say where its records are.
        found = records_in(mapping.spec.endpoint, data, (kind,) if kind else kinds)
        if len(found) > 1 and len({id(v) for v in found.values()}) < len(found):
            raise typer.BadParameter(f"{path}: the same records could be {', '.join(found)}: choose one",
                                     param_hint="--kind")
        if any(found.values()):  # a reply holding no records has nothing to preview
            return found
    found = ", ".join(data) if isinstance(data, dict) else type(data).__name__
    raise typer.BadParameter(
        f"{path}: expected a list of vendor records or an object keyed by record kind "
        f"({', '.join([kind] if kind else kinds)}); found {found}",
        param_hint="--sample",
    )


def _lines(values: dict[str, Any]) -> str:
    return "\n".join(f"{name}: {value}" for name, value in values.items() if value is not None)


def _render_preview(result: PreviewResult) -> None:
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


@app.command("preview", epilog=EXIT_CODES_HELP)
def preview_command(
    system_or_path: Annotated[str, typer.Argument(help="A packaged mapping (ptw, eam, mes) or a mapping file.")],
    sample: Annotated[Path | None, typer.Option("--sample", help=SampleHelp)] = None,
    live: Annotated[bool, typer.Option("--live", help="Fetch records from the system configured by HUB_* settings.")] = False,
    ids: Annotated[str, typer.Option("--ids", help="With --live on eam or mes: comma-separated device IDs or materials.")] = "",
    site: Annotated[
        str | None, typer.Option("--site", help="With --live on eam: the site the devices are at (default: the first of HUB_SITES).")
    ] = None,
    kind: KindOption = None,
) -> None:
    """Show vendor records (a sample file or live) next to the canonical records they become."""
    if (sample is None) == (not live):
        raise typer.BadParameter("give exactly one of --sample FILE or --live")
    mapping = _load(system_or_path)
    chosen_kind = kind.value if kind else None
    if live:
        fetched = _live(system_or_path, mapping, [i.strip() for i in ids.split(",") if i.strip()], site)
        records_by_kind = {k: v for k, v in fetched.items() if chosen_kind in (None, k)}
    else:
        records_by_kind = _sample(sample, mapping, chosen_kind)
    for chosen, records in records_by_kind.items():
        _render_preview(preview(mapping, chosen, records))


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


@app.command("diff", epilog=EXIT_CODES_HELP)
def diff_command(
    old: Annotated[str, typer.Argument(help="The mapping in use (packaged name or file).")],
    new: Annotated[str, typer.Argument(help="The changed mapping file.")],
    sample: Annotated[Path, typer.Option("--sample", help=SampleHelp)],
    kind: KindOption = None,
) -> None:
    """Map a sample with two mappings and show what changes in the canonical records."""
    old_mapping, new_mapping = _load(old), _load(new)
    for chosen, records in _sample(sample, new_mapping, kind.value if kind else None).items():
        if chosen not in old_mapping.inbound_kinds:
            raise typer.BadParameter(f"{old_mapping.name} does not map {chosen!r} inbound", param_hint="OLD")
        _render_diff(diff(preview(old_mapping, chosen, records), preview(new_mapping, chosen, records)))


@app.command("new", epilog=EXIT_CODES_HELP)
def new_command(
    system: Annotated[str, typer.Argument(help="The system the flavor is for (eam, mes, ptw, erp).")],
    from_sample: Annotated[Path, typer.Option("--from-sample", help="A reply captured from the vendor (JSON or SOAP).")],
    kind: KindOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the draft here (default: print it).")] = None,
) -> None:
    """Draft a flavor file from a captured reply; its gate inputs stay to-dos that validate refuses."""
    if kind is None:
        raise typer.BadParameter("say which canonical record kind the reply holds", param_hint="--kind")
    text = draft(system, kind.value, _read_reply(from_sample))
    if output is None:
        typer.echo(text, nl=False)
        return
    if output.exists():
        raise typer.BadParameter(f"{output} exists; a draft never overwrites a file", param_hint="--output")
    output.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {output}; decide every 'todo:', then run: hub mappings validate {output}")
