"""One sync per site at a time, and `hub sync` stopping cleanly on SIGTERM.

The lock is tested on its own on SQLite and PostgreSQL; then real `hub sync` processes, with
the `HUB_*` settings pointing at the mocks, race each other for a site and are sent SIGTERM
while the ERP is slow. What reached the mocks is read back from their received logs, and
what the hub recorded from its store.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from dagster import DagsterInstance

from hub.settings import settings_environment
from hub.store.locks import SiteBusy, lock_key, site_lock
from hub.store.repository import HubStore
from hub.sync import STOP_GRACE_S, run_full_sync
from mock_systems.servers import start_systems

REPO = Path(__file__).parents[1]
HUB = Path(sys.executable).with_name("hub")
SITE = "NJ01"
BULK_POST = "/api/v1/journal-entries/bulk"
HOLD_PATH = re.compile(r"^/api/v1/permits/[^/]+/holds/integration-hub$")
# Small pages and batches: more requests, so two syncs of one site overlap for longer.
TUNING = {"ptw_page_size": 10, "erp_batch_size": 5}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    return request.getfixturevalue("pg_url")


# ----------------------------------------------------------------------------- the lock itself


def _try_in_thread(url: str, site: str, wait_s: float) -> tuple[BaseException | None, float]:
    """Try the lock from another thread (its own connection or file handle): (error, seconds waited)."""
    result: list = []

    def attempt() -> None:
        started = time.monotonic()
        try:
            with site_lock(url, site, wait_s=wait_s):
                result.append((None, time.monotonic() - started))
        except SiteBusy as exc:
            result.append((exc, time.monotonic() - started))

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join(30)
    return result[0]


def test_a_second_holder_waits_then_is_told_who_holds_the_site(database_url):
    with site_lock(database_url, SITE, wait_s=0):
        error, waited = _try_in_thread(database_url, SITE, wait_s=0.6)
        assert isinstance(error, SiteBusy)
        assert waited >= 0.6
        assert str(error) == (
            f"site {SITE} is already being synced by another process (pid {os.getpid()}); try again when it finishes"
        )
        # Another site, and another scope of the same site, are not held.
        assert _try_in_thread(database_url, "HZ02", wait_s=0)[0] is None
        with site_lock(database_url, SITE, wait_s=0, scope="erp-postings"):
            pass
    # Released: the next one gets it at once.
    assert _try_in_thread(database_url, SITE, wait_s=0) == (None, pytest.approx(0, abs=0.5))


def test_a_waiter_gets_the_site_as_soon_as_the_holder_lets_go(database_url):
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with site_lock(database_url, SITE, wait_s=0):
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    threading.Timer(0.5, release.set).start()
    started = time.monotonic()
    with site_lock(database_url, SITE, wait_s=10):
        waited = time.monotonic() - started
    holder.join(10)
    assert 0.4 <= waited < 5


def test_the_lock_is_released_when_the_body_raises(database_url):
    with pytest.raises(RuntimeError, match="boom"):
        with site_lock(database_url, SITE, wait_s=0):
            raise RuntimeError("boom")
    with site_lock(database_url, SITE, wait_s=0):
        pass


def test_a_killed_holder_leaves_the_site_free(database_url, tmp_path):
    code = (
        "import os, signal, sys\n"
        "from hub.store.locks import site_lock\n"
        "with site_lock(sys.argv[1], 'NJ01', wait_s=0):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, database_url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        error, _ = _try_in_thread(database_url, SITE, wait_s=0.3)
        assert isinstance(error, SiteBusy) and f"(pid {holder.pid})" in str(error)
        holder.kill()
        holder.wait(10)
    finally:
        if holder.poll() is None:
            holder.kill()
    # PostgreSQL notices the closed connection, the kernel drops the file lock.
    assert _try_in_thread(database_url, SITE, wait_s=5)[0] is None


def test_lock_keys_are_stable_and_distinct():
    assert lock_key("hub-sync:NJ01@public") == lock_key("hub-sync:NJ01@public")
    assert -(2**63) <= lock_key("hub-sync:NJ01@public") < 2**63
    keys = {lock_key(f"hub-{scope}:{site}@public") for scope in ("sync", "erp-postings") for site in ("NJ01", "HZ02")}
    assert len(keys) == 4


def test_sqlite_lock_file_lies_beside_the_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    with site_lock(url, SITE, wait_s=0):
        assert (tmp_path / f"hub.db.sync-{SITE}.lock").exists()
    # In-memory databases have no file to sit beside; the lock still works.
    with site_lock("sqlite://", SITE, wait_s=0):
        error, _ = _try_in_thread("sqlite://", SITE, wait_s=0)
        assert isinstance(error, SiteBusy)


# ----------------------------------------------------------------------------- real `hub sync` processes


def _received(base_url: str) -> list[dict]:
    return httpx.get(f"{base_url}/_admin/received", timeout=10).json()


def _faults(base_url: str, plan: dict) -> None:
    httpx.put(f"{base_url}/_admin/faults", json=plan, timeout=10).raise_for_status()


def _posted_uuids(erp_base_url: str) -> Counter:
    return Counter(
        entry["MessageHeader"]["UUID"]
        for request in _received(erp_base_url)
        if request["method"] == "POST" and request["path"] == BULK_POST
        for entry in request["body"]["JournalEntryCreateRequest"]
    )


def _hold_puts(ptw_base_url: str) -> Counter:
    return Counter(r["path"] for r in _received(ptw_base_url) if r["method"] == "PUT" and HOLD_PATH.match(r["path"]))


def _ledger(erp_base_url: str) -> Counter:
    documents = httpx.get(f"{erp_base_url}/_admin/state", timeout=10).json()["documents"]
    return Counter(d["DocumentReferenceID"] for d in documents)


def _sync_env(settings, home: Path) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("HUB_") and k != "DAGSTER_HOME"}
    return {**inherited, **settings_environment(settings), "DAGSTER_HOME": str(home)}


def _start_sync(settings, workdir: Path, name: str, *args: str) -> subprocess.Popen:
    """`hub sync` of SITE in a process of its own, with a Dagster home of its own; output to a file
    (a pipe nobody reads while the sync runs could fill and stall it)."""
    home = workdir / f"dagster_home_{name}"
    home.mkdir()
    log = workdir / f"sync_{name}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(HUB), "sync", "--sites", SITE, *args],
            env=_sync_env(settings, home),
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    process.log = log
    return process


def _output(process: subprocess.Popen) -> str:
    return process.log.read_text(encoding="utf-8", errors="replace")


def _finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"hub sync did not finish within {timeout} s:\n{_output(process)[-3000:]}")
    return process.returncode, _output(process)


def _store_view(database_url: str) -> tuple[dict[str, str], Counter, Counter]:
    """(entry_key -> message UUID of the site's outbox, entries per status, audit rows per posted entry)."""
    with HubStore(database_url) as store:
        outbox = {r["entry_key"]: r["message_uuid"] for r in store.load_outbox(site=SITE)}
        statuses = Counter(r["status"] for r in store.load_outbox(site=SITE))
        audited = Counter(row.ref for row in store.iter_audit() if row.kind == "erp_posting")
    return outbox, statuses, audited


def _assert_everything_once(mocks, database_url: str) -> None:
    outbox, statuses, audited = _store_view(database_url)
    assert outbox, "the site has no ERP entries: nothing was tested"
    assert statuses == {"posted": len(outbox)}, statuses
    posted = _posted_uuids(mocks.base_urls["erp"])
    assert {uuid: posted[uuid] for uuid in outbox.values()} == {uuid: 1 for uuid in outbox.values()}
    holds = _hold_puts(mocks.base_urls["ptw"])
    assert holds and set(holds.values()) == {1}, holds
    assert audited == {key: 1 for key in outbox}
    assert set(_ledger(mocks.base_urls["erp"]).values()) == {1}


def test_two_syncs_of_a_site_started_together_post_and_hold_everything_once(
    database_url, fresh_mocks, make_settings, tmp_path
):
    """Both wait long enough for each other: the second runs after the first and finds nothing to do."""
    settings = make_settings(database_url, fresh_mocks.urls, **TUNING)
    for system in ("ptw", "erp"):
        _faults(fresh_mocks.base_urls[system], {"latency_ms": 150})
    syncs = [_start_sync(settings, tmp_path, name, "--lock-wait", "240") for name in ("a", "b")]
    finished = [_finish(process) for process in syncs]
    for code, output in finished:
        assert code == 0, output[-3000:]
        assert f"full_sync {SITE}: run " in output and "succeeded" in output
    _assert_everything_once(fresh_mocks, database_url)


def test_a_sync_of_a_busy_site_reports_it_not_run_and_fails(database_url, fresh_mocks, make_settings, tmp_path):
    settings = make_settings(database_url, fresh_mocks.urls, **TUNING)
    for system in ("ptw", "erp"):
        _faults(fresh_mocks.base_urls[system], {"latency_ms": 400})
    first = _start_sync(settings, tmp_path, "first")
    deadline = time.monotonic() + 120
    while not _received(fresh_mocks.base_urls["ptw"]):  # the first one is in its run, under the lock
        assert first.poll() is None and time.monotonic() < deadline, _output(first)[-3000:]
        time.sleep(0.2)
    second = _start_sync(settings, tmp_path, "second", "--lock-wait", "1")
    code, output = _finish(second)
    assert first.poll() is None, "the first sync ended before the second asked for the site"
    assert code == 1, output[-3000:]
    busy = (
        f"hub: sync failed for {SITE}: not run: site {SITE} is already being synced by another process "
        f"(pid {first.pid}); try again when it finishes"
    )
    assert busy in " ".join(output.split()), output[-3000:]
    assert len(output.strip().splitlines()) <= 2, output[-3000:]
    code, output = _finish(first)
    assert code == 0, output[-3000:]
    _assert_everything_once(fresh_mocks, database_url)


def test_a_posting_step_that_cannot_get_the_site_sends_nothing_and_leaves_the_entries_pending(
    database_url, fresh_mocks, make_settings, monkeypatch
):
    """A run the daemon launched (no `hub sync` lock around it) meets a run posting the same site."""
    import hub.assets.erp

    monkeypatch.setattr(hub.assets.erp, "POSTING_LOCK_WAIT_S", 0.5)
    settings = make_settings(database_url, fresh_mocks.urls)
    with DagsterInstance.ephemeral() as instance:
        with site_lock(database_url, SITE, wait_s=0, scope="erp-postings"):
            outcome = run_full_sync(settings, instance, sites=[SITE])
            [run] = outcome.runs
            assert not run.success
            failures = [
                e.dagster_event.step_failure_data.error.message
                for e in instance.all_logs(run.run_id)
                if e.dagster_event and e.dagster_event.is_step_failure and e.dagster_event.step_key == "erp_postings"
            ]
            assert len(failures) == 1
            assert (
                f"the ERP entries of site {SITE} are already being posted by another process (pid {os.getpid()}); "
                "try again when it finishes"
            ) in failures[0]
        _, statuses, audited = _store_view(database_url)
        assert statuses["pending"] > 0 and statuses["posted"] == 0, statuses
        assert not audited
        assert not _posted_uuids(fresh_mocks.base_urls["erp"])
        assert run_full_sync(settings, instance, sites=[SITE]).success
    _assert_everything_once(fresh_mocks, database_url)


# ----------------------------------------------------------------------------- SIGTERM


def _wait_for_post(process: subprocess.Popen, erp_base_url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not any(r["method"] == "POST" and r["path"] == BULK_POST for r in _received(erp_base_url)):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            pytest.fail(f"the sync never posted to the ERP:\n{_output(process)[-3000:]}")
        time.sleep(0.2)


def _stop_and_recover(
    mocks, make_settings, tmp_path, database_url: str, delay_s: float, **overrides
) -> tuple[int, float, str]:
    """Start a sync with every ERP post hanging `delay_s`, SIGTERM it once it posts, then sync cleanly."""
    settings = make_settings(database_url, mocks.urls, **TUNING, **overrides)
    _faults(mocks.base_urls["erp"], {"rules": [{"kind": "timeout", "delay_s": delay_s, "path_prefix": BULK_POST}]})
    stuck = _start_sync(settings, tmp_path, "stuck")
    _wait_for_post(stuck, mocks.base_urls["erp"])
    stuck.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    code, output = _finish(stuck, timeout=60)
    took = time.monotonic() - signalled

    # Nothing lost: every entry is still in the outbox, pending (or unclear) unless confirmed.
    outbox, statuses, audited = _store_view(database_url)
    assert outbox and set(statuses) <= {"pending", "unclear", "posted"}, statuses
    assert sum(statuses.values()) == len(outbox)
    assert set(audited.values()) <= {1}

    _faults(mocks.base_urls["erp"], {})
    code_after, after = _finish(_start_sync(settings, tmp_path, "after"))
    assert code_after == 0, after[-3000:]
    _, statuses, audited = _store_view(database_url)
    assert statuses == {"posted": len(outbox)}, statuses
    assert audited == {key: 1 for key in outbox}
    ledger = _ledger(mocks.base_urls["erp"])
    assert {key: ledger[key] for key in outbox} == {key: 1 for key in outbox}
    return code, took, output


def test_sigterm_stops_a_sync_waiting_on_a_slow_erp(fresh_mocks, make_settings, tmp_path):
    """The post in flight is let finish; the run is marked failed, the lock let go, the exit code 143."""
    database_url = f"sqlite:///{tmp_path / 'hub.db'}"
    code, took, output = _stop_and_recover(fresh_mocks, make_settings, tmp_path, database_url, delay_s=6)
    assert code == 128 + signal.SIGTERM, output[-3000:]
    assert took < 30, output[-3000:]
    assert "SIGTERM received, stopping" in output
    assert f"Sync stopped by SIGTERM; sites not synced: {SITE}" in " ".join(output.split())
    assert "exiting now" not in output  # it stopped by itself, within the grace period


def test_sigterm_ends_a_sync_stuck_on_a_hung_erp_within_the_grace_period(make_settings, tmp_path, pg_url):
    """The ERP holds every post longer than the grace period: the process ends anyway, as a kill would,
    and the next sync completes the work. Mocks of its own, so no hung request outlives the test."""
    # One read outlasts the grace period: with the tests' 10 s read timeout, a timed-out post and
    # its retry would end just about when the grace period does, and the stop would race the exit.
    hang = {"read_timeout_s": 3 * STOP_GRACE_S, "request_deadline_s": 3 * STOP_GRACE_S}
    with start_systems(REPO / "fixtures") as mocks:
        code, took, output = _stop_and_recover(mocks, make_settings, tmp_path, pg_url, delay_s=120, **hang)
    assert code == 128 + signal.SIGTERM, output[-3000:]
    assert took < 30, output[-3000:]
    assert "exiting now" in output
