"""PNG charts for the analytics assets and the report: bytes in memory, so logic stays free of files.

Matplotlib's Agg backend draws without a display; each chart is a fresh figure closed after
rendering, so charts can be drawn side by side in one process.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from io import BytesIO
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib import font_manager  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402  (after the backend is chosen)
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from dagster import MetadataValue  # noqa: E402

# Area and workshop names are Chinese: a CJK font, where installed, draws the glyphs DejaVu lacks
# (Debian: fonts-wqy-microhei, which .ci/run installs, or fonts-noto-cjk); matplotlib falls back
# glyph by glyph.
CJK_FAMILIES = ("WenQuanYi Micro Hei", "Noto Sans CJK SC")


def _cjk_families() -> list[str]:
    """The CJK families matplotlib can draw with. Its font cache is built once, so a font
    installed after it is not in it: then fontconfig's Chinese fonts are added to this process's
    font list. Only families found are named, so matplotlib does not log each one it misses."""
    def known() -> list[str]:
        names = {font.name for font in font_manager.fontManager.ttflist}
        return [family for family in CJK_FAMILIES if family in names]

    if not known() and shutil.which("fc-list"):
        try:
            listed = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            listed = ""
        for path in sorted({line.rsplit(":", 1)[0].strip() for line in listed.splitlines() if line.strip()}):
            try:
                font_manager.fontManager.addfont(path)
            except (OSError, RuntimeError, ValueError):
                continue  # a font matplotlib cannot read: the others may do
    return known()


matplotlib.rcParams["font.family"] = ["DejaVu Sans", *_cjk_families()]

_SIZE = (7.0, 3.6)
_DPI = 80
#: Labelled ticks on an axis of categories (days, permits): a year of days, each labelled, costs
#: seconds to lay out and cannot be read anyway.
MAX_TICKS = 12
#: Bars drawn at most; the callers order their bars by importance, and the title says how many more.
MAX_BARS = 30
#: Up to this many points a line marks each one; a longer line is drawn plain.
MARKED_POINTS = 60
#: Above this many points, the legend goes top left: matplotlib's "best" place tries every
#: position against every point.
BEST_LEGEND_POINTS = 200


def _png(figure: Figure) -> bytes:
    buffer = BytesIO()
    # Fixed margins, room for rotated labels: a tight layout draws the chart twice.
    figure.subplots_adjust(left=0.1, right=0.98, top=0.9, bottom=0.34)
    figure.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def _axes(title: str, ylabel: str):
    # A bare Figure (not pyplot) keeps no global state between charts.
    figure = Figure(figsize=_SIZE)
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_ylabel(ylabel)
    axes.grid(axis="y", alpha=0.3)
    return figure, axes


def bar_chart(
    labels: Sequence[str], values: Sequence[float], *, title: str, ylabel: str = "", threshold: float | None = None
) -> bytes:
    """One bar per label (the first `MAX_BARS`); a dashed line marks a threshold when one is given."""
    if len(labels) > MAX_BARS:
        title = f"{title} (first {MAX_BARS} of {len(labels)})"
        labels, values = list(labels)[:MAX_BARS], list(values)[:MAX_BARS]
    figure, axes = _axes(title, ylabel)
    if labels:
        positions = range(len(labels))  # labelled explicitly: see `line_chart`
        axes.bar(positions, [float(v) for v in values], color="#4878a8")
        many = len(labels) > 12
        axes.set_xticks(positions, [str(label) for label in labels], rotation=0 if len(labels) <= 4 else 45 if many else 30,
                        ha="center" if len(labels) <= 4 else "right", fontsize=7 if many else None)
    else:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
    if threshold is not None:
        axes.axhline(threshold, color="#c0392b", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        axes.legend(loc="best")
    return _png(figure)


def line_chart(
    x: Sequence, series: Mapping[str, Sequence[float]], *, title: str, ylabel: str = "", threshold: float | None = None
) -> bytes:
    """One line per named series over the shared x values (days, usually)."""
    figure, axes = _axes(title, ylabel)
    xs = [str(value) for value in x]
    # Drawn at positions 0..n-1 and labelled from `xs`: given as strings, matplotlib would try
    # each one as a date first, which costs more than drawing the chart.
    positions = range(len(xs))
    for name, values in series.items():
        axes.plot(positions, [float(v) for v in values], marker="o" if len(xs) <= MARKED_POINTS else None, label=str(name))
    if not xs:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
    if threshold is not None:
        axes.axhline(threshold, color="#c0392b", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    if series or threshold is not None:
        axes.legend(loc="best" if len(xs) * max(len(series), 1) <= BEST_LEGEND_POINTS else "upper left")
    axes.xaxis.set_major_locator(MaxNLocator(nbins=MAX_TICKS, integer=True))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: xs[int(v)] if v == int(v) and 0 <= v < len(xs) else ""))
    axes.tick_params(axis="x", labelrotation=30 if len(xs) > 6 else 0)
    return _png(figure)


def chart_metadata(png: bytes, path: Path) -> dict[str, MetadataValue]:
    """Writes the PNG and returns the metadata that shows it in the Dagster UI (embedded) and names its file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    embedded = base64.b64encode(png).decode("ascii")
    return {
        "chart": MetadataValue.md(f"![{path.stem}](data:image/png;base64,{embedded})"),
        "chart_file": MetadataValue.path(str(path)),
    }
