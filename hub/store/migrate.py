"""Run the store's Alembic migrations from code (no alembic.ini needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, pool
from sqlalchemy.engine import URL, Connection, Engine, make_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic Config pointing at hub/store/migrations (and at ``url``, if given)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        # ConfigParser interpolation: a literal '%' (e.g. options=-csearch_path%3D...) must be doubled.
        rendered = make_url(url).render_as_string(hide_password=False)
        cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return cfg


def head_revision() -> str | None:
    """The newest migration shipped with this code."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def sqlite_path(url: str | URL) -> Path | None:
    """The database file of a SQLite file URL; None for other URLs and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def _ensure_sqlite_parent(url: str) -> None:
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def _migration_engine(url: str | URL) -> Engine:
    """An engine whose migration runs as one transaction, DDL included.

    pysqlite commits each CREATE TABLE on its own, so a process killed mid-migration
    would leave tables without a version stamp, and every later upgrade would fail on
    "table already exists". With the driver's own transaction handling off and an
    explicit BEGIN, SQLite rolls the whole migration back instead.
    """
    engine = create_engine(url, poolclass=pool.NullPool)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _no_implicit_commits(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _migrate(url: str | URL, step: Callable[[Config, str], None], revision: str) -> None:
    cfg = alembic_config(url)
    engine = _migration_engine(url)
    try:
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            step(cfg, revision)
    finally:
        engine.dispose()


def upgrade(url: str | URL, revision: str = "head") -> None:
    """``alembic upgrade head`` against ``url``; creates a SQLite file's folder first."""
    _ensure_sqlite_parent(url)
    _migrate(url, command.upgrade, revision)


def downgrade(url: str | URL, revision: str) -> None:
    """``alembic downgrade <revision>`` against ``url`` (``"base"`` drops everything)."""
    _migrate(url, command.downgrade, revision)


def current_revision(url: str | URL) -> str | None:
    """The revision the database at ``url`` is at; None if it was never migrated."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return None  # don't create an empty database file just to look at it
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
