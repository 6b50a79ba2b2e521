"""Fresh databases for one bench run: SQLite files in the run folder, or new PostgreSQL databases.

Every run starts on empty stores so that runs do not measure each other's leftovers;
PostgreSQL databases get a name unique to the run and are dropped when it ends, since the
server is shared.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from types import TracebackType

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

DEFAULT_PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


class FreshDatabases:
    """`store_url(name)` and `postgres_url(name)` hand out empty databases; leaving the block drops them."""

    def __init__(self, kind: str, folder: Path, pg_url: str = DEFAULT_PG_URL):
        if kind not in ("sqlite", "postgres"):
            raise ValueError(f"database kind must be sqlite or postgres, got {kind!r}")
        self.kind = kind
        self.folder = folder
        self._server = make_url(pg_url)
        self._prefix = f"hubbench_{secrets.token_hex(4)}"
        self._created: list[str] = []

    def __enter__(self) -> FreshDatabases:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.drop_all()

    def store_url(self, name: str) -> str:
        """A SQLAlchemy URL for the hub's store."""
        if self.kind == "sqlite":
            return f"sqlite:///{(self.folder / f'{name}.db').resolve()}"
        return self.postgres_url(name)

    def postgres_url(self, name: str) -> str:
        """A new, empty PostgreSQL database, with the server URL's driver named (SQLAlchemy would pick its own)."""
        return self._create(name).render_as_string(hide_password=False)

    def _create(self, name: str) -> URL:
        database = f"{self._prefix}_{name}"
        self._execute(f'CREATE DATABASE "{database}"')
        self._created.append(database)
        return self._server.set(database=database)

    def drop_all(self) -> None:
        self._execute(*(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)' for database in self._created))
        self._created.clear()

    def _execute(self, *statements: str) -> None:
        if not statements:
            return
        engine = create_engine(self._server, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                for statement in statements:
                    conn.execute(text(statement))
        finally:
            engine.dispose()
