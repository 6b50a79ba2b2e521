"""Charts draw the plant's Chinese area and workshop names with a CJK font when one is installed
(`.ci/run` installs Debian's fonts-wqy-microhei), rather than as empty boxes; drawn in a worker
process beside the step, they are the same bytes, and a worker that fails loses none."""

import multiprocessing
import os
import shutil
import signal
import subprocess
import warnings

import pytest

from hub.analytics import charts

AREA = "裂解车间"
PNG = b"\x89PNG\r\n\x1a\n"


def _installed_cjk_fonts() -> str:
    if not shutil.which("fc-list"):
        return ""
    return subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=30).stdout.strip()


@pytest.mark.skipif(not _installed_cjk_fonts(), reason="fc-list shows no CJK font (Debian: apt-get install fonts-wqy-microhei)")
def test_a_chart_with_a_chinese_area_name_has_every_glyph():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drawn = [
            charts.bar_chart([AREA, "罐区"], [3, 5], title=f"{AREA}: 动火作业"),
            charts.line_chart(["2026-11", "2026-12"], {f"NJ01 {AREA}": [0.5, 1.0]}, title="高处作业与不良率"),
        ]
    assert all(png.startswith(PNG) for png in drawn)
    missing = [str(w.message) for w in caught if "Glyph" in str(w.message) and "missing" in str(w.message)]
    assert missing == []
    # A font the system has, not one matplotlib happened to know: the charts name it.
    assert set(charts.matplotlib.rcParams["font.family"]) & set(charts.CJK_FAMILIES)


def _drawn_here(labels: list[str]) -> bytes:
    return charts.bar_chart(labels, [1.0] * len(labels), title="permits")


def test_a_chart_drawn_aside_is_the_chart_drawn_here():
    labels = [AREA, "罐区", "公用工程"]
    drawing = charts.aside(charts.bar_chart, labels, [1.0, 2.0, 3.0], title="permits")
    assert drawing.png() == charts.bar_chart(labels, [1.0, 2.0, 3.0], title="permits")
    assert charts.aside(charts.line_chart, ["d1", "d2"], {"NJ01": [1, 2]}, title="t").png() == charts.line_chart(
        ["d1", "d2"], {"NJ01": [1, 2]}, title="t"
    )


def test_a_worker_that_dies_loses_no_chart_and_the_next_chart_gets_a_fresh_worker():
    charts.aside(_drawn_here, ["warm"]).png()  # the worker is up
    (worker,) = [p for p in multiprocessing.active_children() if p.is_alive()]
    os.kill(worker.pid, signal.SIGKILL)
    worker.join(10)
    assert charts.aside(_drawn_here, ["a"]).png() == _drawn_here(["a"])  # drawn here instead
    assert charts.aside(_drawn_here, ["b"]).png() == _drawn_here(["b"])
    assert [p.pid for p in multiprocessing.active_children()] != [worker.pid]


def test_on_one_core_charts_are_drawn_here_without_a_worker(monkeypatch):
    charts.close_workers()
    monkeypatch.setattr(charts.os, "sched_getaffinity", lambda pid: {0})
    assert charts.aside(_drawn_here, ["a"]).png() == _drawn_here(["a"])
    assert multiprocessing.active_children() == []
