"""The bench's figures as one table and as JSON.

JSON keys (`--json`):

- `machine`: `cores`, `python`, `dagster`, `platform`;
- `run`: `scale`, `seed`, `db`, `dagster_storage`, `date` (UTC, ISO 8601), `plant`;
- `phases`: `floor`, `naive`, `hub_full`, `analytics`, `hub_incremental`, each with `wall_s`,
  `startup_s`, `calls` (`ptw`, `eam`, `mes`, `erp`), `records`, `records_per_s`, `peak_rss_mib` (the
  phase process's own high-water RSS plus its chart worker's),
  `analytics_s` (the hub's phases: seconds in the analytics assets' steps, STEP_START to
  STEP_SUCCESS or STEP_FAILURE, summed over the runs; null for the others), `steps_s` (the hub's
  phases: the same for every step key, longest first), `note`. `analytics`
  is the analytics assets materialized alone, for every site, on the store the full sync left;
  its `records` are the rows they produced;
- `ratios`: a list of `name`, `description`, `value`, `target`, `comparison` (`<=` or `>=`),
  `met` (true, false, or null when a figure is missing);
- `notes`: what the reader must know to read the figures (sampling, a truncated log, ...).

Targets are reported, never enforced: a missed one is a finding, not a failure.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

SYSTEMS = ("ptw", "eam", "mes", "erp")
PHASE_LABELS = {
    "floor": "floor",
    "naive": "naive",
    "hub_full": "hub full",
    "analytics": "analytics",
    "hub_incremental": "hub incremental",
}
TARGET_SCALE = "large"
TABLE_MIN_WIDTH = 110  # piped output defaults to 80 columns, which would cut the figures short


@dataclass
class PhaseFigures:
    wall_s: float
    startup_s: float
    calls: dict[str, int]
    records: int
    peak_rss_mib: float
    analytics_s: float | None = None  # hub phases: time in the analytics assets' steps
    steps_s: dict[str, float] | None = None  # hub phases: seconds per step key, summed over the runs, longest first
    note: str = ""

    @property
    def records_per_s(self) -> float:
        return self.records / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    limit: float
    comparison: str  # "<=" or ">="

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value <= self.limit if self.comparison == "<=" else value >= self.limit


TARGETS = (
    Target("hub_vs_floor", "hub full ÷ floor, wall time", 1.5, "<="),
    Target("naive_vs_hub", "naive ÷ hub full, wall time", 20.0, ">="),
    Target("incremental_vs_full", "hub incremental ÷ hub full, wall time", 0.05, "<="),
    Target("hub_peak_rss_mib", "peak RSS of the hub, MiB", 1024.0, "<="),
    Target("analytics_vs_full", "analytics steps in the hub full ÷ hub full, wall time", 0.10, "<="),
    Target("analytics_peak_rss_vs_full", "analytics ÷ hub full, peak RSS", 1.0, "<="),
)


def _quotient(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def ratio_values(phases: dict[str, PhaseFigures]) -> dict[str, float | None]:
    def figure(phase: str, name: str) -> float | None:
        return getattr(phases[phase], name) if phase in phases else None

    def walls(numerator: str, denominator: str) -> float | None:
        return _quotient(figure(numerator, "wall_s"), figure(denominator, "wall_s"))

    hub_rss = [phases[p].peak_rss_mib for p in ("hub_full", "analytics", "hub_incremental") if p in phases]
    return {
        "hub_vs_floor": walls("hub_full", "floor"),
        "naive_vs_hub": walls("naive", "hub_full"),
        "incremental_vs_full": walls("hub_incremental", "hub_full"),
        "hub_peak_rss_mib": max(hub_rss) if hub_rss else None,
        "analytics_vs_full": _quotient(figure("hub_full", "analytics_s"), figure("hub_full", "wall_s")),
        "analytics_peak_rss_vs_full": _quotient(figure("analytics", "peak_rss_mib"), figure("hub_full", "peak_rss_mib")),
    }


@dataclass
class BenchReport:
    machine: dict[str, object]
    run: dict[str, object]
    phases: dict[str, PhaseFigures]
    notes: list[str] = field(default_factory=list)

    def ratios(self) -> list[dict[str, object]]:
        values = ratio_values(self.phases)
        return [
            {
                "name": t.name,
                "description": t.description,
                "value": values[t.name],
                "target": t.limit,
                "comparison": t.comparison,
                "met": t.met(values[t.name]),
            }
            for t in TARGETS
        ]

    def to_json(self) -> dict[str, object]:
        phases = {name: {**asdict(p), "records_per_s": p.records_per_s} for name, p in self.phases.items()}
        return {"machine": self.machine, "run": self.run, "phases": phases, "ratios": self.ratios(), "notes": self.notes}

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _verdict(met: bool | None) -> str:
    return {True: "[green]met[/]", False: "[red]missed[/]", None: "[yellow]no figure[/]"}[met]


def print_report(report: BenchReport, console: Console) -> None:
    run, machine = report.run, report.machine
    table = Table(
        title=f"hub bench: {run['scale']} plant, seed {run['seed']}, store {run['db']}, Dagster storage {run['dagster_storage']}",
        caption=(
            f"{machine['cores']} cores, Python {machine['python']}, dagster {machine['dagster']}, "
            f"{machine['platform']}, {run['date']}"
        ),
    )
    table.add_column("phase", no_wrap=True)
    for column in ("wall s", "start-up s", *(s.upper() for s in SYSTEMS), "records", "records/s", "peak RSS MiB"):
        table.add_column(column, justify="right")
    phase_notes = []
    for name, label in PHASE_LABELS.items():
        figures = report.phases.get(name)
        if figures is None:
            continue
        table.add_row(
            label,
            f"{figures.wall_s:.2f}",
            f"{figures.startup_s:.2f}",
            *(f"{figures.calls.get(s, 0):,}" for s in SYSTEMS),
            f"{figures.records:,}",
            f"{figures.records_per_s:,.0f}",
            f"{figures.peak_rss_mib:,.0f}",
        )
        if figures.analytics_s is not None:
            phase_notes.append(f"{label}: {figures.analytics_s:.2f} s of it in the analytics assets' steps")
        if figures.note:
            phase_notes.append(f"{label}: {figures.note}")
    if not console.is_terminal:
        console.width = max(console.width, TABLE_MIN_WIDTH)
    console.print(table)
    for ratio in report.ratios():
        value = "n/a" if ratio["value"] is None else f"{ratio['value']:,.3f}"
        console.print(
            f"{ratio['description']}: [bold]{value}[/] (target {ratio['comparison']} {ratio['target']:g}) "
            f"{_verdict(ratio['met'])}"
        )
    if run["scale"] != TARGET_SCALE:
        console.print(f"The targets are set for the {TARGET_SCALE} plant; at {run['scale']} they are shown for reference.")
    for note in [*phase_notes, *report.notes]:
        console.print(f"note: {note}", markup=False)
