"""Charts draw the plant's Chinese area and workshop names with a CJK font when one is installed
(`.ci/run` installs Debian's fonts-wqy-microhei), rather than as empty boxes; drawn in a worker
process beside the step, they are the same bytes, and a worker that fails loses none."""

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
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


@pytest.fixture(autouse=True)
def _aside_allowed():
    charts.allow_drawing_aside()
    yield
    charts._aside_allowed.discard(os.getpid())
    charts.close_workers()


def test_a_process_not_allowed_draws_in_the_step():
    """A step process of the multiprocess or Celery executor: no worker for one step."""
    charts._aside_allowed.discard(os.getpid())
    assert charts.aside(os.getpid).png() == os.getpid()
    assert os.getpid() not in charts._workers


def _drawn_here(labels: list[str]) -> bytes:
    return charts.bar_chart(labels, [1.0] * len(labels), title="permits")


def _drawn_by(labels: list[str], values: list[float]) -> tuple[int, bytes]:
    return os.getpid(), charts.bar_chart(labels, values, title="permits")


def test_a_chart_drawn_aside_is_the_chart_drawn_here():
    labels, values = [AREA, "罐区", "公用工程"], [1.0, 2.0, 3.0]
    _worker_pid()
    for _ in range(300):  # not begun by the worker when asked for, it is drawn here: ask again
        by, png = charts.aside(_drawn_by, labels, values).png()
        if by != os.getpid():
            break
        time.sleep(0.1)
    assert by != os.getpid() and png == charts.bar_chart(labels, values, title="permits")


def test_a_worker_that_dies_loses_no_chart_and_the_next_chart_gets_a_fresh_worker():
    worker = _worker_pid()
    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert charts.aside(_drawn_here, ["a"]).png() == _drawn_here(["a"])  # drawn here instead
    assert _worker_pid() != worker
    assert charts.aside(_drawn_here, ["b"]).png() == _drawn_here(["b"])


def test_on_one_core_charts_are_drawn_here_without_a_worker(monkeypatch):
    charts.close_workers()
    monkeypatch.setattr(charts.os, "sched_getaffinity", lambda pid: {0})
    assert charts.aside(os.getpid).png() == os.getpid()
    assert charts.aside(_drawn_here, ["a"]).png() == _drawn_here(["a"])
    assert os.getpid() not in charts._workers


def test_the_worker_ends_with_a_process_that_never_shut_it_down(tmp_path):
    """A sync ended at once (`os._exit` after its grace period, a kill) leaves no worker behind."""
    script = (
        "import multiprocessing, os\n"
        "from hub.analytics import charts\n"
        "if __name__ == '__main__':\n"
        "    charts.allow_drawing_aside()\n"
        "    while charts.aside(os.getpid).png() == os.getpid(): pass\n"
        "    print(*[p.pid for p in multiprocessing.active_children()], flush=True)\n"
        "    os._exit(1)\n"
    )
    (tmp_path / "ends.py").write_text(script, encoding="utf-8")
    done = subprocess.run([sys.executable, str(tmp_path / "ends.py")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True, timeout=120, cwd=tmp_path)
    (worker,) = [int(pid) for pid in done.stdout.split()]
    deadline = time.monotonic() + 30
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(worker)


def _worker_pid() -> int:
    """The worker's pid, from work it ran: what it has not begun yet is run here, so ask until it has."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pid = charts.aside(os.getpid).png()
        if pid != os.getpid():
            return pid
        time.sleep(0.1)
    raise AssertionError("the worker never ran anything")


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat", encoding="ascii").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_the_workers_memory_is_read_by_the_worker():
    """What the bench adds to a phase's peak RSS: the worker's own high-water mark, not its
    rusage (which would count this process's memory the fork shared)."""
    worker = _worker_pid()
    status = open(f"/proc/{worker}/status", encoding="ascii").read()
    own = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
    assert 0 < charts.worker_peak_rss_kib() and abs(charts.worker_peak_rss_kib() - own) < 50_000
    charts.close_workers()
    assert charts.worker_peak_rss_kib() == 0
