"""Dagster's SQLite storages, made to keep each database's engine open in hub processes.

Dagster's SQLite run, event-log and schedule storages build a new SQLAlchemy engine (and a new
connection) for every read and write, and one asset event takes several. Measured on an
unchanged sync of two sites: about 230 events, each costing more in making engines than in its
statements; the gate-check service pays the same for every answer it reports. `install()` makes
each storage keep one engine per database file, its connections pooled, in the processes that
import the hub (the CLI, run and step processes, code servers, the service).

The files, their schema and their migrations stay Dagster's own, found from DAGSTER_HOME as
always; a process that does not import the hub (the webserver, the daemon) reads and writes
them as before. The one private surface the hub touches here is each storage's `connect`
(`_connect` for the event log), `wipe` and `dispose`.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from sqlalchemy import Connection, Engine, create_engine

#: Engines kept open per storage: the index database and the run shards in use.
KEPT = 8
#: Dagster's own busy timeout for SQLite (seconds).
BUSY_TIMEOUT_S = 30
#: A forked child's copies of its parent's engines: kept, never used, never closed (closing or
#: collecting them would roll back or close connections that are the parent's).
_PARENTS: list[OrderedDict] = []


class _Engines:
    """One engine per database file, the least recently used closed beyond `KEPT`; a forked child
    makes its own (a connection must not cross a fork)."""

    def __init__(self) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def get(self, conn_string: str) -> Engine:
        with self._lock:
            if self._pid != os.getpid():
                _PARENTS.append(self._engines)
                self._engines, self._pid = OrderedDict(), os.getpid()
            engine = self._engines.pop(conn_string, None)
            if engine is None:
                # Connections kept for the next use, each handed to one caller at a time, from any thread.
                engine = create_engine(
                    conn_string,
                    pool_size=2,
                    max_overflow=8,
                    connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
                )
            self._engines[conn_string] = engine
            while len(self._engines) > KEPT:
                _, oldest = self._engines.popitem(last=False)
                oldest.dispose()
            return engine

    def close(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                return  # a forked child's copies are its parent's (`_PARENTS`)
            while self._engines:
                self._engines.popitem()[1].dispose()


def _engines(storage) -> _Engines:
    # dict.setdefault is atomic: two threads' first uses get the same engines.
    return storage.__dict__.setdefault("_hub_engines", _Engines())


@contextmanager
def _transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        with conn.begin():
            yield conn


@contextmanager
def _event_log_connect(self: SqliteEventLogStorage, shard: str) -> Iterator[Connection]:
    """Dagster's `_connect`, with the shard's engine kept (Dagster's lock still serialises uses)."""
    with self._db_lock:
        engine = _engines(self).get(self.conn_string_for_shard(shard))
        if shard not in self._initialized_dbs:
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        with _transaction(engine) as conn:
            yield conn


@contextmanager
def _storage_connect(self) -> Iterator[Connection]:
    with _transaction(_engines(self).get(self._conn_string)) as conn:
        yield conn


def _closing_first(method):
    """`method`, after the storage's kept engines are closed (files about to go, or the storage)."""

    def closed_first(self, *args, **kwargs):
        _engines(self).close()
        return method(self, *args, **kwargs)

    closed_first.__doc__ = method.__doc__
    return closed_first


_installed = threading.Lock()


def install() -> None:
    """Keep the engines of Dagster's SQLite storages in this process; calling it again does nothing."""
    with _installed:
        if installed():
            return
        SqliteEventLogStorage._connect = _event_log_connect
        SqliteEventLogStorage.wipe = _closing_first(SqliteEventLogStorage.wipe)
        for storage in (SqliteEventLogStorage, SqliteRunStorage, SqliteScheduleStorage):
            storage.dispose = _closing_first(storage.dispose)
        SqliteRunStorage.connect = _storage_connect
        SqliteScheduleStorage.connect = _storage_connect
        SqliteEventLogStorage._hub_engines_kept = True


def installed() -> bool:
    return bool(getattr(SqliteEventLogStorage, "_hub_engines_kept", False))
