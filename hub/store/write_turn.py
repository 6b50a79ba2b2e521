"""Taking turns at SQLite's write lock across processes, woken within milliseconds.

SQLite lets one writer in at a time. A writer that finds the lock taken by another process
waits in SQLite's busy handler, which sleeps 1, 2, 5, ... up to 100 ms between tries, so under
steady writes from several processes (the gate-check workers, keep-fresh pulls, Dagster runs)
a write waited a hundred milliseconds for a lock that was free after two. Threads of one
process already queue on a `threading.Lock`; here the processes queue on an OS file lock
(`fcntl.flock`) on `<database file>.write.lock` beside the database, tried every
`POLL_S` at most, so a writer gets in soon after the last one left.

The turn only orders writers: SQLite's own lock still decides. A writer that has waited
`WAIT_S` goes on to that lock without its turn, and a process that forked while holding a
turn cannot let two writers in at once.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Longest sleep between two tries of the turn.
POLL_S = 0.002
#: How long a writer waits for its turn before it goes on to SQLite's own lock (whose busy
#: timeout is the same).
WAIT_S = 30.0


class WriteTurn:
    """`with turn():` holds this process's turn at writing the database file, if there is one."""

    def __init__(self, database_file: Path | None):
        self.path = database_file.with_name(database_file.name + ".write.lock") if database_file else None
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._pid: int | None = None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._threads:
            held = self._take() if self.path is not None else False
            try:
                yield
            finally:
                if held:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _take(self) -> bool:
        """Whether the turn was taken within WAIT_S (the caller goes on either way)."""
        if self._fd is None or self._pid != os.getpid():
            # After a fork the parent's descriptor is shared with it: a process opens its own.
            self._fd, self._pid = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644), os.getpid()
        deadline, pause = time.monotonic() + WAIT_S, 0.0002
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(pause)
                pause = min(pause * 2, POLL_S)
