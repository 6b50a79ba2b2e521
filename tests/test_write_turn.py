"""Writers of one SQLite store take turns across processes (hub/store/write_turn.py), through a real
store, a real second process holding the turn and SQLite's own lock behind it."""

import subprocess
import sys
import threading
from datetime import datetime, timezone

import pytest

from hub.store import write_turn
from hub.store.migrate import upgrade
from hub.store.repository import HubStore

HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def store(tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    upgrade(url)
    hub_store = HubStore(url)
    yield hub_store
    hub_store.dispose()


def holder(path):
    """Another process holding the store's write turn until its stdin closes."""
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def write_in_thread(hub_store) -> threading.Event:
    done = threading.Event()

    def write():
        hub_store.record_lookups("eam", ["NJ-P-101"], datetime.now(timezone.utc), site="NJ01")
        done.set()

    threading.Thread(target=write, daemon=True).start()
    return done


def test_a_writer_waits_for_another_process_and_gets_in_when_it_leaves(store, tmp_path):
    child = holder(tmp_path / "hub.db.write.lock")
    try:
        done = write_in_thread(store)
        assert not done.wait(0.5), "wrote while another process held the turn"
    finally:
        child.stdin.close()
        child.wait(10)
    assert done.wait(5), "the write did not get in after the other process left"
    assert store.lookup_times("eam", ["NJ-P-101"], site="NJ01")


def test_a_turn_never_given_up_delays_a_writer_but_never_stops_it(store, tmp_path, monkeypatch):
    """The turn only orders writers; past WAIT_S a writer goes on to SQLite's own lock (free here)."""
    monkeypatch.setattr(write_turn, "WAIT_S", 0.3)
    child = holder(tmp_path / "hub.db.write.lock")
    try:
        assert write_in_thread(store).wait(10)
    finally:
        child.stdin.close()
        child.wait(10)


def test_reads_need_no_turn_and_an_in_memory_store_has_no_file(store, tmp_path):
    child = holder(tmp_path / "hub.db.write.lock")
    try:
        assert store.lookup_times("eam", ["NJ-P-101"], site="NJ01") == {}
    finally:
        child.stdin.close()
        child.wait(10)
    assert write_turn.WriteTurn(None).path is None
