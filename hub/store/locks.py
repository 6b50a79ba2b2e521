"""One holder per site at a time: a lock that lives beside the hub's store.

`site_lock(database_url, site, wait_s=...)` is held for the length of one site's sync (or, with
`scope="erp-postings"`, one posting step), by whichever process runs it: `hub sync`, a site
process it started, or a run the Dagster daemon launched.

- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) on a stable 64-bit hash of
  `hub-<scope>:<site>@<schema>`, taken on a connection of its own that stays open while the lock
  is held. The schema is part of the key because advisory locks are per database, and two
  stores in two schemas of one database are two hubs. The lock goes with the connection, so a
  holder that dies (even by SIGKILL) releases it when the server notices.
- SQLite: an OS file lock (`fcntl.flock`) on `<database file>.<scope>-<site>.lock` beside the
  database file; in-memory databases use a file in the temporary directory, named by a hash of
  the URL. The kernel drops the lock when the holder exits, however it exits.

Either way the holder leaves its pid and host where a waiter can read them, so the error
says who is holding the site.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from hub.store.migrate import sqlite_path

POLL_S = 0.2
# What the holder is doing, as the waiter's error says it.
ACTIVITIES = {
    "sync": "site {site} is already being synced",
    "erp-postings": "the ERP entries of site {site} are already being posted",
    "eam-fresh": "the EAM data of the gated devices ({site}) is already being kept fresh",
}
_HOLDER = re.compile(r"pid=(\d+)(?: host=(\S+))?")


class SiteBusy(RuntimeError):
    """Another process holds the site's lock, and it was not released within the wait."""

    def __init__(self, site: str, scope: str, holder: str | None) -> None:
        self.site = site
        self.scope = scope
        self.holder = holder
        who = f" ({holder})" if holder else ""
        super().__init__(f"{ACTIVITIES[scope].format(site=site)} by another process{who}; try again when it finishes")


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for `name` (PostgreSQL advisory locks take a bigint)."""
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "big", signed=True)


def _holder_tag() -> str:
    return f"pid={os.getpid()} host={socket.gethostname()}"


def _describe(tag: str | None) -> str | None:
    """'pid=12 host=a' -> 'pid 12 on a' (the host only when it is not this one)."""
    match = _HOLDER.search(tag or "")
    if not match:
        return None
    pid, host = match.groups()
    return f"pid {pid}" if not host or host == socket.gethostname() else f"pid {pid} on {host}"


def _check(site: str, scope: str, wait_s: float) -> None:
    if scope not in ACTIVITIES:
        raise ValueError(f"lock scope must be one of {', '.join(ACTIVITIES)}, not {scope!r}")
    if not site or not site.strip():
        raise ValueError("a site lock needs a site")
    if wait_s < 0:
        raise ValueError(f"wait_s must be >= 0, got {wait_s}")


@contextmanager
def site_lock(database_url: str | URL, site: str, *, wait_s: float, scope: str = "sync") -> Iterator[None]:
    """Hold the site's lock for the body; wait up to `wait_s` for it, then raise SiteBusy."""
    _check(site, scope, wait_s)
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "postgresql":
        with _advisory_lock(url, site, scope, wait_s):
            yield
    elif backend == "sqlite":
        with _file_lock(_lock_file(url, site, scope), site, scope, wait_s):
            yield
    else:
        raise ValueError(f"unsupported database backend {backend!r}: use postgresql or sqlite")


# ---------------------------------------------------------------------------- PostgreSQL


def _split_key(key: int) -> tuple[int, int]:
    """How pg_locks shows a bigint advisory key: classid the high 32 bits, objid the low."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


def _holder_on_server(conn: Connection, key: int) -> str | None:
    classid, objid = _split_key(key)
    tag = conn.execute(
        text(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.classid = :classid AND l.objid = :objid "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"classid": classid, "objid": objid},
    ).scalar()
    return _describe(tag)


@contextmanager
def _advisory_lock(url: URL, site: str, scope: str, wait_s: float) -> Iterator[None]:
    # Autocommit: the lock is the session's, and the connection must not sit idle in a
    # transaction for the length of a sync. The application name carries the holder's pid.
    engine = create_engine(
        url,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"application_name": f"hub-{scope} {_holder_tag()}"[:63]},
    )
    try:
        with engine.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar() or "public"
            key = lock_key(f"hub-{scope}:{site}@{schema}")
            deadline = time.monotonic() + wait_s
            while not conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar():
                if time.monotonic() >= deadline:
                    raise SiteBusy(site, scope, _holder_on_server(conn, key))
                time.sleep(POLL_S)
            try:
                yield
            finally:
                # Closing the connection releases it too (so a lost connection loses nothing
                # here); unlocking first says so plainly.
                try:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                except DBAPIError:
                    pass
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------- SQLite


def _lock_file(url: URL, site: str, scope: str) -> Path:
    safe_site = re.sub(r"[^A-Za-z0-9_-]", "_", site)
    database = sqlite_path(url)
    if database is not None:
        database = database.resolve()
        database.parent.mkdir(parents=True, exist_ok=True)
        return database.with_name(f"{database.name}.{scope}-{safe_site}.lock")
    digest = hashlib.blake2b(url.render_as_string(hide_password=False).encode(), digest_size=8).hexdigest()
    return Path(tempfile.gettempdir()) / f"hub-{digest}.{scope}-{safe_site}.lock"


@contextmanager
def _file_lock(path: Path, site: str, scope: str, wait_s: float) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SiteBusy(site, scope, _describe(_read_tag(path))) from None
                time.sleep(POLL_S)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{_holder_tag()}\n".encode(), 0)
            yield
        finally:
            # The file stays (removing it would race a waiter that has it open); only the
            # holder's tag goes, before the lock.
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_tag(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
