"""`hub report`: the permit analytics as a static HTML page with its charts, from the store."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer

from hub.cli import DatabaseUrlOption, app, console
from hub.cli.errors import EXIT_CODES_HELP, USAGE, Problem, database_errors


@app.command(epilog=EXIT_CODES_HELP)
def report(
    out: Annotated[Path, typer.Option("--out", help="Directory for index.html and its PNG charts (created).")],
    site: Annotated[list[str] | None, typer.Option("--site", help="A site to report on (repeatable); default: every configured site.")] = None,
    days: Annotated[int, typer.Option("--days", min=1, help="Permits submitted in the last N days.")] = 7,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Write the permit analytics report: KPIs, charts, the overdue TOP 5, alerts with root causes, the gate's figures,
    work at height against MES quality and lifting against EAM failures."""
    from hub.analytics.report import build_report
    from hub.logic.analytics_rules import load_analytics_rules
    from hub.logic.cross_system_rules import load_cross_system_rules
    from hub.settings import HubSettings
    from hub.steps.analytics import read_analytics
    from hub.store.repository import HubStore

    settings = HubSettings()
    sites = site or list(settings.sites)
    unknown = sorted(set(sites) - set(settings.sites))
    if unknown:
        raise Problem(f"--site {', '.join(unknown)}: not a configured site (HUB_SITES: {', '.join(settings.sites)})", USAGE)
    # Read before the store, so a bad rule file is told (naming it) without touching the database.
    rules = _rules(load_analytics_rules, settings.analytics_rules_file, "HUB_ANALYTICS_RULES_FILE")
    cross_rules = _rules(load_cross_system_rules, settings.cross_system_rules_file, "HUB_CROSS_SYSTEM_RULES_FILE")
    url = database_url or settings.database_url
    with database_errors(url), HubStore(url) as store:
        data = read_analytics(store, sites)
    page, charts = build_report(data, rules, cross_rules, datetime.now(timezone.utc), days)
    out.mkdir(parents=True, exist_ok=True)
    for name, png in charts.items():
        (out / name).write_bytes(png)
    (out / "index.html").write_text(page, encoding="utf-8")
    console.print(f"report written: {out / 'index.html'} ({len(charts)} charts)", highlight=False)


def _rules(load, path: Path | None, variable: str):
    """The rule file loaded, or a usage error naming it (and the variable that chose it)."""
    from hub.yamlfile import ConfigError

    try:
        return load(path)
    except ConfigError as exc:
        chosen = f" (chosen by {variable})" if path else ""
        raise Problem(f"rule file refused{chosen}:\n{exc}", USAGE) from None
