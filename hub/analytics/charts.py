"""PNG charts for the analytics assets and the report: bytes in memory, so logic stays free of files.

Matplotlib's Agg backend draws without a display; each chart is a fresh figure closed after
rendering, so charts can be drawn side by side in one process.

Drawing is a third of what the analytics cost, and it needs none of the step's data after it
is asked for: `aside` draws in a worker process on a core the step does not use, while the
step goes on computing. What the worker has not begun when it is needed is drawn here, as is
everything on one core or when the worker cannot be started, dies or does not answer in time:
a chart is never lost to the worker, nor waited for longer than drawing it here would take.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from io import BytesIO

import matplotlib

matplotlib.use("Agg")

from matplotlib import font_manager  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402  (after the backend is chosen)
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from hub.memory import high_water_rss_kib  # noqa: E402

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
    # At a fixed height: left to find its own, the title measures every tick label first.
    axes.set_title(title, y=1.0)
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


# ------------------------------------------------------------------ drawing beside the step

#: How long a chart may take in the worker before it is drawn here instead.
ASIDE_TIMEOUT_S = 60.0
_workers: dict[int, ProcessPoolExecutor] = {}  # by the pid that started them: a fork starts its own
_workers_lock = threading.Lock()
_aside_allowed: set[int] = set()  # the pids whose owner said a worker pays off here


def allow_drawing_aside() -> None:
    """Let this process draw charts in a worker: called by what runs sites' steps in this one
    process (`hub sync` in process, the bench). A step process of the multiprocess or Celery
    executor lives for one step, so a worker would cost more than it saves; those draw in the step."""
    _aside_allowed.add(os.getpid())


def _spare_core() -> bool:
    return os.getpid() in _aside_allowed and len(os.sched_getaffinity(0)) > 1


def _worker() -> ProcessPoolExecutor | None:
    """This process's drawing worker, started on first use; None on a single core."""
    if not _spare_core():
        return None
    with _workers_lock:
        pool = _workers.get(os.getpid())
        if pool is None:
            # Spawned, not forked: a fork of a process with threads (Dagster's) may inherit a held lock.
            pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_end_with, initargs=(os.getpid(),)
            )
            _workers[os.getpid()] = pool
        return pool


def _end_with(parent: int) -> None:
    """In the worker: end when the process that started it is gone (a process ended by a signal
    or `os._exit` never shuts its pool down, and its worker would wait for work forever)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="hub-chart-parent-watch", daemon=True).start()


def worker_peak_rss_kib() -> int:
    """The high-water RSS of this process's drawing worker, as the worker reads it (0: none)."""
    with _workers_lock:
        pool = _workers.get(os.getpid())
    if pool is None:
        return 0
    try:
        return pool.submit(high_water_rss_kib).result(timeout=ASIDE_TIMEOUT_S)
    except Exception:
        return 0


def close_workers() -> None:
    """Stop this process's drawing worker and wait for it; the next `aside` starts a new one."""
    with _workers_lock:
        pool = _workers.pop(os.getpid(), None)
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(close_workers)


class Drawing:
    """A chart being drawn. `png()` takes it from the worker if the worker has begun it (waiting at
    most ASIDE_TIMEOUT_S), and otherwise draws it here: a chart still queued is never waited for,
    so a worker slow to start, or behind, costs no more than drawing here."""

    def __init__(self, draw: Callable[..., bytes], args: tuple, kwargs: dict, future: Future | None):
        self._draw, self._args, self._kwargs, self._future = draw, args, kwargs, future

    def png(self) -> bytes:
        if self._future is not None and not self._future.cancel():  # begun (or done) in the worker
            try:
                return self._future.result(timeout=ASIDE_TIMEOUT_S)
            except Exception:  # the worker died, hung or failed: the chart is drawn here instead
                _forget_worker()
        return self._draw(*self._args, **self._kwargs)


def _forget_worker() -> None:
    """A worker that failed once is not asked again; the next `aside` starts a fresh one."""
    with _workers_lock:
        pool = _workers.pop(os.getpid(), None)
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


def aside(draw: Callable[..., bytes], *args, **kwargs) -> Drawing:
    """Start drawing `draw(*args, **kwargs)` (`bar_chart`, `line_chart`) in the worker; its PNG
    is byte for byte the one drawn here."""
    pool = _worker()
    future = None
    if pool is not None:
        try:
            future = pool.submit(draw, *args, **kwargs)
        except Exception:  # e.g. a daemonic process may not start children
            _forget_worker()
    return Drawing(draw, args, kwargs, future)
