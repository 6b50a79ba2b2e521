"""HubStore: the hub's reads and writes, in bulk, one transaction per method.

SQLAlchemy Core only. Writes are executemany upserts (``INSERT .. ON CONFLICT``)
in chunks; IN lists are chunked. Works on PostgreSQL (production, concurrent
runs) and SQLite (development, single process).

The schema is created by ``hub.store.migrate.upgrade`` (``hub db upgrade``),
never here.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel

from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    Table,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    exists,
    func,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url

from hub.audit import GENESIS_HASH, AuditRow, extend_chain
from hub.model import (
    FINISHED_MAINTENANCE_STATUSES,
    UNKNOWN,
    Equipment,
    GateDecision,
    MaintenanceRecord,
    Permit,
    ProcessParameter,
    QualityRate,
    SafetyCostEntry,
)
from hub.store import tables as t
from hub.store.migrate import head_revision, sqlite_path
from hub.store.write_turn import WriteTurn
from hub.store.records import AuditBatch, GateDecisionRow, OutboxRow, QuarantineItem

__all__ = [
    "HubStore",
    "SchemaNotReadyError",
    "QuarantineItem",
    "OutboxRow",
    "GateDecisionRow",
    "WRITE_CHUNK",
    "IN_CHUNK",
]

WRITE_CHUNK = 5_000  # rows per executemany call
IN_CHUNK = 500  # values per IN (...) list; well under SQLite's variable limit


def _can_still_block(m: Table) -> Any:
    """Work orders that can still block work: not finished, or holding an isolation or not
    knowing whether they do."""
    return or_(m.c.status.not_in(sorted(FINISHED_MAINTENANCE_STATUSES)), m.c.isolation.in_(("applied", UNKNOWN)))


def _prebuilt() -> dict[str, Any]:
    """The reads every gate check makes, built once with bound parameters (`values` expands to an
    IN list): a statement built per call left about a hundred objects in reference cycles per
    check, and collecting them stopped a busy service for tens of milliseconds at a time."""
    values = bindparam("values", expanding=True)
    lk, m, q, g = t.lookups, t.maintenance_records, t.quarantine, t.gate_decisions
    return {
        "lookup_times": select(lk.c.key, lk.c.looked_up_at).where(
            lk.c.system == bindparam("system"), lk.c.site == bindparam("site"), lk.c.key.in_(values)
        ),
        "equipment": select(t.equipment).where(t.equipment.c.site == bindparam("site"), t.equipment.c.device_id.in_(values)),
        "records_that_can_block": select(m).where(
            _can_still_block(m),
            m.c.site == bindparam("site"),
            m.c.device_id.in_(values),
        ),
        "open_quarantine_of_devices": select(*[c for c in q.c if c.name != "payload"]).where(
            q.c.resolved.is_(False), q.c.system == bindparam("system"),
            q.c.record_kind.in_(bindparam("kinds", expanding=True)), q.c.device_id.in_(values),
        ),
        "holds_written": select(t.ptw_holds.c.permit_id, t.ptw_holds.c.fingerprint).where(t.ptw_holds.c.permit_id.in_(values)),
        "latest_fingerprints": select(g.c.permit_id, g.c.fingerprint).where(
            g.c.id.in_(select(func.max(g.c.id)).where(g.c.permit_id.in_(values)).group_by(g.c.permit_id).scalar_subquery())
        ),
        "audit_head": select(t.audit_log.c.id, t.audit_log.c.hash).order_by(t.audit_log.c.id.desc()).limit(1),
    }


_HOT = _prebuilt()

OPEN_OUTBOX_STATUSES = ("pending", "unclear")

# PostgreSQL advisory-lock id that serialises audit-log appenders (any fixed bigint would do).
AUDIT_LOCK_KEY = int.from_bytes(hashlib.sha256(b"hub.audit_log").digest()[:8], "big", signed=True)

T = TypeVar("T")
CanonicalT = TypeVar("CanonicalT", bound=BaseModel)


class SchemaNotReadyError(RuntimeError):
    """The database has not been migrated (or not to this code's revision)."""


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (the hub keeps UTC)")
    return value.astimezone(timezone.utc)


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _unique(values: Iterable[str] | None) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        raise TypeError("expected a collection of ids, got a single str")
    return sorted(set(values))


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _json_dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _dedupe(rows: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], Any], *, keep: str) -> list[dict[str, Any]]:
    """One row per key: ``keep="last"`` (upserts) or ``"first"`` (insert-if-absent)."""
    out: dict[Any, dict[str, Any]] = {}
    for row in rows:
        k = key(row)
        if keep == "last" or k not in out:
            out[k] = row
    return list(out.values())


Lineage = tuple[str, str]  # (mapping file name, sha256 of its bytes)


def _lineage(lineage: Lineage | None) -> dict[str, str | None]:
    file, sha = lineage or (None, None)
    return {"mapping_file": file, "mapping_sha256": sha}


@cache
def _field_names(model: type[BaseModel]) -> tuple[str, ...]:
    """A model's field names, looked up once: `model_fields` is a computed property in pydantic,
    and asking it per row cost a quarter of reading permits back."""
    return tuple(model.model_fields)


def _named_device(partial: Mapping[str, Any]) -> str | None:
    """The device a quarantined record names, as text (a number still names one), or None."""
    device = partial.get("device_id")
    if isinstance(device, bool) or not isinstance(device, (str, int, float)):
        return None
    return device if isinstance(device, str) else str(device)


def _canonical(model: type[CanonicalT], row: Mapping[str, Any]) -> CanonicalT:
    """A canonical record from a row, leaving out the store's own bookkeeping columns."""
    return model.model_validate({k: row[k] for k in _field_names(model) if k in row})


def _decision_rows(rows: Iterable[Mapping[str, Any]]) -> list[GateDecisionRow]:
    fields = ("permit_id", "decision", "reasons", "rule_version", "evaluated_at", "eam_data_as_of")
    return [
        GateDecisionRow(
            id=r["id"], fingerprint=r["fingerprint"], decision=GateDecision.model_validate({k: r[k] for k in fields})
        )
        for r in rows
    ]


def _outbox_of(site: str | None) -> list[Any]:
    """WHERE terms for the outbox entries of a site's permits (none: every site)."""
    if site is None:
        return []
    return [t.erp_outbox.c.permit_id.in_(select(t.permits.c.permit_id).where(t.permits.c.site == site))]


def _make_engine(url: str | URL) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        on_disk = parsed.database not in (None, "", ":memory:")
        # A connection per thread that decides at once (the gate-check service's threads).
        pool = {"pool_size": 40, "max_overflow": 20} if on_disk else {}
        engine = create_engine(parsed, json_serializer=_json_dumps, connect_args={"timeout": 30}, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event emit BEGIN itself, so reads and writes in
            # one method share one transaction (pysqlite otherwise begins lazily).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("PRAGMA busy_timeout = 30000")
                if on_disk:
                    cursor.execute("PRAGMA journal_mode = WAL")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Connection) -> None:
            # Writers take the write lock up front: no deadlocking read->write upgrades.
            write = connection.get_execution_options().get("hub_write", False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    if backend == "postgresql":
        return create_engine(parsed, json_serializer=_json_dumps, pool_pre_ping=True)
    raise ValueError(f"unsupported database backend {backend!r}: use postgresql or sqlite")


class HubStore:
    """The hub's store. ``HubStore(url)``; assumes ``hub db upgrade`` has run."""

    def __init__(
        self,
        url: str | URL,
        *,
        check_schema: bool = True,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.url = make_url(url)
        self.engine: Engine = _make_engine(self.url)
        self._clock = clock
        self._backend = self.url.get_backend_name()
        self._pinned = threading.local()
        self._write_turn = WriteTurn(sqlite_path(self.url)) if self._backend == "sqlite" else nullcontext
        if check_schema:
            try:
                self.check_schema()
            except BaseException:
                self.engine.dispose()
                raise

    # ------------------------------------------------------------------ plumbing

    def __repr__(self) -> str:
        return f"HubStore({self.url.render_as_string(hide_password=True)!r})"

    def __enter__(self) -> HubStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()

    def dispose(self) -> None:
        self.engine.dispose()

    def check_schema(self) -> None:
        """Raise SchemaNotReadyError unless every table exists at this code's revision."""
        where = self.url.render_as_string(hide_password=True)
        sqlite_file = sqlite_path(self.url)
        if sqlite_file is not None and not sqlite_file.exists():
            raise SchemaNotReadyError(
                f"the hub database file {sqlite_file} does not exist; run `hub db upgrade`"
            )
        with self.engine.connect() as conn:
            present = set(inspect(conn).get_table_names())
            missing = sorted(t.TABLE_NAMES - present)
            current = MigrationContext.configure(conn).get_current_revision()
        if missing:
            raise SchemaNotReadyError(
                f"the hub database at {where} is not migrated (missing tables: "
                f"{', '.join(missing)}); run `hub db upgrade`"
            )
        head = head_revision()
        if current != head:
            raise SchemaNotReadyError(
                f"the hub database at {where} is at schema revision {current!r} but this "
                f"code expects {head!r}; run `hub db upgrade`"
            )

    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[None]:
        """Every store call of this thread inside the block shares one transaction: one
        snapshot for a decision's reads, or one commit for a group of appends. Nested
        blocks join the outer one; a write inside a read-only block is refused (SQLite
        would have to upgrade the snapshot's lock, which can deadlock)."""
        if getattr(self._pinned, "conn", None) is not None:
            if write and not self._pinned.write:
                raise RuntimeError("a write transaction cannot be opened inside a read-only one")
            yield
            return
        with (self._write if write else self._read)() as conn:
            self._pinned.conn, self._pinned.write = conn, write
            try:
                yield
            finally:
                self._pinned.conn = None

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        pinned = getattr(self._pinned, "conn", None)
        if pinned is not None:
            if not self._pinned.write:
                raise RuntimeError("a write inside a read-only store transaction")
            yield pinned
            return
        # SQLite has one writer at a time: threads and processes take turns here, woken as soon
        # as the lock is free, instead of in SQLite's busy handler, which sleeps up to 100 ms a try.
        with self._write_turn():
            with self.engine.connect().execution_options(hub_write=True) as conn:
                with conn.begin():
                    yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        pinned = getattr(self._pinned, "conn", None)
        if pinned is not None:
            yield pinned
            return
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    def _insert(self, table: Table) -> Any:
        if self._backend == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _upsert(
        self,
        conn: Connection,
        table: Table,
        rows: Sequence[dict[str, Any]],
        keys: Sequence[str],
        newest_by: str | None = None,
    ) -> None:
        """INSERT .. ON CONFLICT (keys) DO UPDATE every other column; last row per key wins.

        With `newest_by` (a time column), a stored row is replaced only by one at least as new:
        two pulls of one site at once (a sync and a re-gate) store what the later reply said,
        whichever finishes last."""
        # In key order: concurrent site runs upserting shared rows (materials) lock them in
        # the same order, so they wait for each other instead of deadlocking.
        key = lambda r: tuple(r[k] for k in keys)  # noqa: E731
        rows = sorted(_dedupe(rows, key, keep="last"), key=key)
        if not rows:
            return
        stmt = self._insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys),
            set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys},
            where=None if newest_by is None else table.c[newest_by] <= stmt.excluded[newest_by],
        )
        # SQLAlchemy (>= 2.0.37, issue #13130) sends an ON CONFLICT executemany
        # without RETURNING row by row (psycopg2: one round trip per row). With
        # RETURNING, and a SET clause that only uses EXCLUDED (no bound
        # parameters), it batches rows into multi-VALUES statements
        # ("insertmanyvalues"; 2x faster on PostgreSQL here). Keys are unique per
        # batch (see _dedupe), so a statement never touches a row twice.
        stmt = stmt.returning(*(table.c[k] for k in keys))
        for chunk in _chunks(rows, WRITE_CHUNK):
            conn.execute(stmt, list(chunk)).all()

    @staticmethod
    def _rows_in(conn: Connection, statement: str, values: Iterable[str], **params: Any) -> list[dict[str, Any]]:
        """Rows of the prebuilt `statement` (`_HOT`) for `values`, IN list chunked."""
        return [
            dict(r._mapping)
            for chunk in _chunks(_unique(values), IN_CHUNK)
            for r in conn.execute(_HOT[statement], {**params, "values": list(chunk)})
        ]

    def _select_in(
        self, conn: Connection, table: Table, column: str, values: Iterable[str] | None, *where: Any
    ) -> list[dict[str, Any]]:
        """Rows whose ``column`` is in ``values`` (all rows if None) and that meet ``where``, IN list chunked."""
        query = select(table).where(*where)
        if values is None:
            return [dict(r._mapping) for r in conn.execute(query)]
        out: list[dict[str, Any]] = []
        col = table.c[column]
        for chunk in _chunks(_unique(values), IN_CHUNK):
            out.extend(dict(r._mapping) for r in conn.execute(query.where(col.in_(chunk))))
        return out

    # ------------------------------------------------------------------ permits / EAM / MES

    def upsert_permits(
        self, permits: Sequence[Permit], synced_at: datetime, lineage: Lineage | None = None
    ) -> None:
        synced_at = _aware(synced_at, "synced_at")
        rows = [
            {
                **p.model_dump(mode="python"),
                "device_ids": list(p.device_ids),
                "material_names": list(p.material_names),
                "synced_at": synced_at,
                **_lineage(lineage),
            }
            for p in permits
        ]
        with self._write() as conn:
            # The PTW's own stamp orders two copies of a permit: an older one never replaces a newer.
            self._upsert(conn, t.permits, rows, ["permit_id"], newest_by="updated_at")

    def load_permits(
        self,
        statuses: Collection[str] | None = None,
        site: str | None = None,
        synced_since: datetime | None = None,
        sites_not_in: Collection[str] | None = None,
        permit_ids: Collection[str] | None = None,
        without_outbox_entries: bool = False,
    ) -> list[Permit]:
        """Permits in `statuses` (all if None) of `site` (every site if None; none of
        `sites_not_in` if given), only those stored at or after `synced_since`, if given with one
        of `permit_ids`, and with `without_outbox_entries` only those the ERP outbox holds no
        entry of."""
        where = []
        if without_outbox_entries:
            o = t.erp_outbox
            where.append(~exists().where(o.c.permit_id == t.permits.c.permit_id))
        if permit_ids is not None:
            where.append(t.permits.c.permit_id.in_(sorted(permit_ids)))
        if site is not None:
            where.append(t.permits.c.site == site)
        if sites_not_in is not None:
            where.append(t.permits.c.site.not_in(sorted(sites_not_in)))
        if synced_since is not None:
            where.append(t.permits.c.synced_at >= _aware(synced_since, "synced_since"))
        with self._read() as conn:
            rows = self._select_in(conn, t.permits, "status", statuses, *where)
        rows.sort(key=lambda r: r["permit_id"])
        out = []
        for row in rows:
            out.append(_canonical(Permit, row))
        return out

    def permits_like(self, site: str, area: str, permit_type: str, planned_from: datetime) -> list[Permit]:
        """The site's permits of the type in the area planned to start at or after `planned_from`."""
        p = t.permits
        query = select(p).where(
            p.c.site == site, p.c.area == area, p.c.permit_type == permit_type,
            p.c.planned_start >= _aware(planned_from, "planned_from"),
        )
        with self._read() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query.order_by(p.c.planned_start, p.c.permit_id))]
        return [_canonical(Permit, row) for row in rows]

    def permit_ids(self, site: str) -> set[str]:
        """IDs of a site's permits: what a site-scoped check needs, without reading whole permits."""
        with self._read() as conn:
            return set(conn.execute(select(t.permits.c.permit_id).where(t.permits.c.site == site)).scalars())

    def devices_in_use(
        self, site: str, statuses: Collection[str], *, permit_types: Collection[str] | None = None
    ) -> set[str]:
        """Device IDs named by the site's permits in `statuses` (and of `permit_types`, if
        given), without reading whole permits."""
        p = t.permits
        query = select(p.c.device_ids).where(p.c.site == site, p.c.status.in_(sorted(statuses)))
        if permit_types is not None:
            query = query.where(p.c.permit_type.in_(sorted(permit_types)))
        with self._read() as conn:
            return {device for devices in conn.execute(query).scalars() for device in devices}

    def site_footprint(self, sites: Collection[str]) -> dict[str, tuple[int, int]]:
        """(permits, equipment) the hub holds of each site: (0, 0) is a site nobody knows."""
        p, e = t.permits, t.equipment
        with self._read() as conn:
            permits = dict(conn.execute(select(p.c.site, func.count()).where(p.c.site.in_(list(sites))).group_by(p.c.site)).all())
            equipment = dict(conn.execute(select(e.c.site, func.count()).where(e.c.site.in_(list(sites))).group_by(e.c.site)).all())
        return {site: (permits.get(site, 0), equipment.get(site, 0)) for site in sites}

    def upsert_equipment(
        self, items: Sequence[Equipment], fetched_at: datetime, lineage: Lineage | None = None
    ) -> None:
        fetched_at = _aware(fetched_at, "fetched_at")
        rows = [{**e.model_dump(mode="python"), "fetched_at": fetched_at, **_lineage(lineage)} for e in items]
        if not rows:
            return  # no write lock taken for nothing
        with self._write() as conn:
            self._upsert(conn, t.equipment, rows, ["site", "device_id"], newest_by="fetched_at")

    def load_equipment(self, site: str, device_ids: Collection[str] | None) -> dict[str, Equipment]:
        """A site's equipment by device id; ids the hub never fetched there are absent. None = all."""
        with self._read() as conn:
            if device_ids is None:
                rows = self._select_in(conn, t.equipment, "device_id", None, t.equipment.c.site == site)
            else:
                rows = self._rows_in(conn, "equipment", device_ids, site=site)
        out = {}
        for row in sorted(rows, key=lambda r: r["device_id"]):
            out[row["device_id"]] = _canonical(Equipment, row)
        return out

    def upsert_maintenance_records(
        self, items: Sequence[MaintenanceRecord], fetched_at: datetime, lineage: Lineage | None = None
    ) -> None:
        fetched_at = _aware(fetched_at, "fetched_at")
        rows = [{**m.model_dump(mode="python"), "fetched_at": fetched_at, **_lineage(lineage)} for m in items]
        if not rows:
            return
        with self._write() as conn:
            self._upsert(conn, t.maintenance_records, rows, ["site", "record_id"], newest_by="fetched_at")

    def drop_maintenance_records_not_refetched(
        self, site: str, device_ids: Collection[str], fetched_at: datetime
    ) -> int:
        """Devices whose whole work-order list was fetched at `fetched_at`: their records that fetch
        did not bring back are gone from the EAM. Dropping them only after every batch landed
        means a pull cut short leaves extra (blocking) records, never missing ones."""
        fetched_at = _aware(fetched_at, "fetched_at")
        m = t.maintenance_records
        dropped = 0
        if not device_ids:
            return 0
        with self._write() as conn:
            for chunk in _chunks(_unique(device_ids), IN_CHUNK):
                result = conn.execute(
                    delete(m).where(m.c.site == site, m.c.device_id.in_(chunk), m.c.fetched_at < fetched_at)
                )
                dropped += result.rowcount or 0
        return dropped

    def record_lookups(self, system: str, keys: Collection[str], at: datetime, site: str = "") -> None:
        """`site` scopes keys that are only unique per site (device IDs); "" is plant-wide."""
        at = _aware(at, "at")
        rows = [{"system": system, "site": site, "key": k, "looked_up_at": at} for k in _unique(keys)]
        if not rows:
            return
        with self._write() as conn:
            self._upsert(conn, t.lookups, rows, ["system", "site", "key"])

    def lookup_times(self, system: str, keys: Collection[str], site: str = "") -> dict[str, datetime]:
        """When `system` last answered a lookup of each key; keys never looked up are absent."""
        with self._read() as conn:
            rows = self._rows_in(conn, "lookup_times", keys, system=system, site=site)
        return {r["key"]: r["looked_up_at"] for r in rows}

    def load_maintenance_records(
        self,
        site: str,
        device_ids: Collection[str] | None,
        *,
        unfinished_or_isolated: bool = False,
        kinds: Collection[str] | None = None,
    ) -> list[MaintenanceRecord]:
        """Work orders of the devices (None: all the site's), of `kinds` if given; with
        `unfinished_or_isolated`, only those that can still block work (not finished, or holding
        an isolation or not knowing whether they do). Years of finished history stay in the
        database instead of being read back on every sync."""
        m = t.maintenance_records
        if unfinished_or_isolated and kinds is None and device_ids is not None:
            with self._read() as conn:
                rows = self._rows_in(conn, "records_that_can_block", device_ids, site=site)
            rows.sort(key=lambda r: (r["device_id"], r["record_id"]))
            return [_canonical(MaintenanceRecord, row) for row in rows]
        where = (
            (_can_still_block(m),)
            if unfinished_or_isolated
            else ()
        ) + (m.c.site == site,) + ((m.c.kind.in_(sorted(kinds)),) if kinds is not None else ())
        with self._read() as conn:
            rows = self._select_in(conn, m, "device_id", device_ids, *where)
        rows.sort(key=lambda r: (r["device_id"], r["record_id"]))
        return [_canonical(MaintenanceRecord, row) for row in rows]

    def maintenance_records_by_id(self, site: str, record_ids: Collection[str]) -> dict[str, MaintenanceRecord]:
        """The site's stored work orders with these IDs."""
        with self._read() as conn:
            rows = self._select_in(conn, t.maintenance_records, "record_id", record_ids, t.maintenance_records.c.site == site)
        return {row["record_id"]: _canonical(MaintenanceRecord, row) for row in rows}

    def upsert_process_parameters(
        self, items: Sequence[ProcessParameter], fetched_at: datetime, lineage: Lineage | None = None
    ) -> None:
        fetched_at = _aware(fetched_at, "fetched_at")
        rows = [{**p.model_dump(mode="python"), "fetched_at": fetched_at, **_lineage(lineage)} for p in items]
        with self._write() as conn:
            self._upsert(conn, t.process_parameters, rows, ["material_name", "parameter_id"])

    def load_process_parameters(
        self, material_names: Collection[str] | None
    ) -> list[ProcessParameter]:
        with self._read() as conn:
            rows = self._select_in(conn, t.process_parameters, "material_name", material_names)
        rows.sort(key=lambda r: (r["material_name"], r["parameter_id"]))
        out = []
        for row in rows:
            out.append(_canonical(ProcessParameter, row))
        return out

    def upsert_quality_rates(
        self, items: Sequence[QualityRate], fetched_at: datetime, lineage: Lineage | None = None
    ) -> None:
        fetched_at = _aware(fetched_at, "fetched_at")
        rows = [{**q.model_dump(mode="python"), "fetched_at": fetched_at, **_lineage(lineage)} for q in items]
        with self._write() as conn:
            self._upsert(conn, t.quality_rates, rows, ["site", "workshop", "month"])

    def quality_rates(self, site: str) -> list[QualityRate]:
        """The site's monthly defect rates, by workshop and month."""
        q = t.quality_rates
        with self._read() as conn:
            rows = conn.execute(select(q).where(q.c.site == site).order_by(q.c.workshop, q.c.month)).mappings().all()
        return [_canonical(QualityRate, row) for row in rows]

    # ------------------------------------------------------------------ device clearance

    _CLEARANCE_KEYS = frozenset({"device_id", "known", "hazards", "data_as_of", "computed_at"})

    def replace_device_clearance(
        self, site: str, rows: Sequence[Mapping[str, Any]], devices: Collection[str] | None = None
    ) -> None:
        """Make the device_clearance rows of ``site``'s ``devices`` exactly ``rows`` (one transaction),
        except rows computed later than these, which stay.

        ``devices`` None replaces all of the site's rows; other sites keep theirs while it writes.

        Each row: device_id, known (bool), hazards (JSON-able), data_as_of (aware or
        None), computed_at (aware).
        """
        clean: list[dict[str, Any]] = []
        seen: set[str] = set()
        for row in rows:
            extra = set(row) - self._CLEARANCE_KEYS
            if extra:
                raise ValueError(f"unknown device_clearance keys: {sorted(extra)}")
            device_id = row["device_id"]
            if device_id in seen:
                raise ValueError(f"device_clearance row for {device_id!r} given twice")
            seen.add(device_id)
            data_as_of = row.get("data_as_of")
            clean.append(
                {
                    "site": site,
                    "device_id": device_id,
                    "known": bool(row["known"]),
                    "hazards": row["hazards"],
                    "data_as_of": None if data_as_of is None else _aware(data_as_of, "data_as_of"),
                    "computed_at": _aware(row["computed_at"], "computed_at"),
                }
            )
        if devices is not None and not seen <= set(devices):
            raise ValueError(f"device_clearance rows outside the devices replaced: {sorted(seen - set(devices))}")
        dc = t.device_clearance
        # A profile computed later than this call's (a re-gate while a sync runs) is newer news:
        # it is neither deleted nor overwritten here.
        older = () if not clean else (dc.c.computed_at <= min(row["computed_at"] for row in clean),)
        with self._write() as conn:
            if devices is None:
                conn.execute(delete(dc).where(dc.c.site == site, *older))
            for chunk in _chunks(_unique(devices), IN_CHUNK):
                conn.execute(delete(dc).where(dc.c.site == site, dc.c.device_id.in_(chunk), *older))
            self._upsert(conn, dc, clean, ["site", "device_id"], newest_by="computed_at")

    def load_device_clearance(
        self, site: str, device_ids: Collection[str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """A site's clearance rows by device id."""
        with self._read() as conn:
            rows = self._select_in(conn, t.device_clearance, "device_id", device_ids, t.device_clearance.c.site == site)
        return {r["device_id"]: r for r in sorted(rows, key=lambda r: r["device_id"])}

    # ------------------------------------------------------------------ cursors

    def get_cursor(self, name: str) -> str | None:
        with self._read() as conn:
            return conn.execute(
                select(t.sync_cursors.c.value).where(t.sync_cursors.c.name == name)
            ).scalar_one_or_none()

    def set_cursor(self, name: str, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("cursor values are text; serialise them first")
        with self._write() as conn:
            self._upsert(
                conn,
                t.sync_cursors,
                [{"name": name, "value": value, "updated_at": self._clock()}],
                ["name"],
            )

    # ------------------------------------------------------------------ gate audit / holds

    def append_gate_decisions(
        self, decisions: Sequence[GateDecision], fingerprints: Sequence[str], audit: AuditBatch | None = None
    ) -> None:
        """Append to the decision trail (never updates or deletes), with their audit rows."""
        if len(decisions) != len(fingerprints):
            raise ValueError(
                f"{len(decisions)} decisions but {len(fingerprints)} fingerprints"
            )
        rows = [
            {
                "permit_id": d.permit_id,
                "decision": d.decision,
                "reasons": [r.model_dump(mode="json") for r in d.reasons],
                "rule_version": d.rule_version,
                "evaluated_at": d.evaluated_at,
                "eam_data_as_of": d.eam_data_as_of,
                "fingerprint": fp,
            }
            for d, fp in zip(decisions, fingerprints)
        ]
        if not rows:
            return
        with self._write() as conn:
            for chunk in _chunks(rows, WRITE_CHUNK):
                conn.execute(t.gate_decisions.insert(), list(chunk))
            self._chain(conn, audit)

    def load_gate_decisions(
        self, permit_ids: Collection[str] | None = None
    ) -> list[GateDecisionRow]:
        """The audit trail, oldest first (all permits if ``permit_ids`` is None)."""
        with self._read() as conn:
            rows = self._select_in(conn, t.gate_decisions, "permit_id", permit_ids)
        return _decision_rows(sorted(rows, key=lambda r: r["id"]))

    def _latest_decision_rows(self, permit_ids: Collection[str] | None, *columns: Any) -> list[dict[str, Any]]:
        """The newest trail row per permit (of `permit_ids`, all if None), as `columns` (all if none)."""
        g = t.gate_decisions
        chosen = columns or (g,)
        chunks = [None] if permit_ids is None else list(_chunks(_unique(permit_ids), IN_CHUNK))
        rows: list[dict[str, Any]] = []
        with self._read() as conn:
            for chunk in chunks:
                newest = select(func.max(g.c.id)).group_by(g.c.permit_id)
                if chunk is not None:
                    newest = newest.where(g.c.permit_id.in_(chunk))
                query = select(*chosen).where(g.c.id.in_(newest.scalar_subquery()))
                rows.extend(dict(r._mapping) for r in conn.execute(query))
        return sorted(rows, key=lambda r: r["permit_id"])

    def latest_gate_decisions(self, permit_ids: Collection[str] | None = None) -> list[GateDecision]:
        """The newest decision per permit (of `permit_ids`, all if None), by permit id."""
        return [row.decision for row in _decision_rows(self._latest_decision_rows(permit_ids))]

    def latest_fingerprints(self, permit_ids: Collection[str]) -> dict[str, str]:
        """The fingerprint of each permit's newest decision in the trail; permits never decided are absent."""
        with self._read() as conn:
            return {r["permit_id"]: r["fingerprint"] for r in self._rows_in(conn, "latest_fingerprints", permit_ids)}

    def holds_needing_write(self, fingerprints: Mapping[str, str]) -> set[str]:
        """Permit ids whose fingerprint differs from what was last written back (or none was)."""
        if not fingerprints:
            return set()
        with self._read() as conn:
            stored = {r["permit_id"]: r["fingerprint"] for r in self._rows_in(conn, "holds_written", fingerprints)}
        return {pid for pid, fp in fingerprints.items() if stored.get(pid) != fp}

    def record_holds_written(
        self, rows: Sequence[tuple[str, str, str]], written_at: datetime
    ) -> None:
        """Remember (permit_id, fingerprint, decision) as written back to the PTW system."""
        written_at = _aware(written_at, "written_at")
        data = [
            {"permit_id": pid, "fingerprint": fp, "decision": decision, "written_at": written_at}
            for pid, fp, decision in rows
        ]
        if not data:
            return  # no write lock taken for nothing: gate checks and runs share the store
        with self._write() as conn:
            self._upsert(conn, t.ptw_holds, data, ["permit_id"])

    def hold_times(self, permit_ids: Collection[str]) -> dict[str, tuple[str, datetime]]:
        """permit_id -> (decision, written_at) of the hold last written back, for these permits."""
        with self._read() as conn:
            rows = self._select_in(conn, t.ptw_holds, "permit_id", permit_ids)
        return {r["permit_id"]: (r["decision"], r["written_at"]) for r in rows}

    def load_holds(self) -> dict[str, tuple[str, str]]:
        """permit_id -> (fingerprint, decision) last written back."""
        with self._read() as conn:
            rows = conn.execute(
                select(t.ptw_holds.c.permit_id, t.ptw_holds.c.fingerprint, t.ptw_holds.c.decision)
                .order_by(t.ptw_holds.c.permit_id)
            ).all()
        return {r.permit_id: (r.fingerprint, r.decision) for r in rows}

    # ------------------------------------------------------------------ audit log (hash chain)

    def append_audit(
        self, kind: str, entries: Sequence[tuple[str, Mapping[str, Any]]], recorded_at: datetime
    ) -> int:
        """Chain (ref, body) entries onto the audit log in one transaction; return how many.

        Appenders are serialised so that each one chains onto the head the one before
        wrote: on PostgreSQL by a transaction-scoped advisory lock (a row lock needs a
        head row, which an empty log lacks), on SQLite by the write lock BEGIN IMMEDIATE
        takes.
        """
        with self._write() as conn:
            return self._chain(conn, AuditBatch(kind, entries, recorded_at))

    def _chain(self, conn: Connection, batch: AuditBatch | None) -> int:
        """Append a batch to the audit log inside the caller's transaction, so a record
        and its audit row commit together or not at all."""
        if batch is None or not batch.entries:
            return 0
        recorded_at = _aware(batch.recorded_at, "recorded_at")
        a = t.audit_log
        if self._backend == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(AUDIT_LOCK_KEY)))
        head = conn.execute(_HOT["audit_head"]).first()
        head_id, head_hash = head or (0, GENESIS_HASH)
        rows = extend_chain(head_id, head_hash, batch.kind, batch.entries, recorded_at)
        for chunk in _chunks([vars(r) for r in rows], WRITE_CHUNK):
            conn.execute(a.insert(), list(chunk))
        return len(rows)

    def iter_audit(self, batch: int = 5_000) -> Iterator[AuditRow]:
        """Every audit row in id order, ``batch`` rows per short read, so a long log streams."""
        a = t.audit_log
        after: int | None = None
        while True:
            stmt = select(a).order_by(a.c.id).limit(batch)
            if after is not None:
                stmt = stmt.where(a.c.id > after)
            with self._read() as conn:
                page = conn.execute(stmt).all()
            yield from (AuditRow(**r._mapping) for r in page)
            if len(page) < batch:
                return
            after = page[-1].id

    # ------------------------------------------------------------------ ERP outbox

    def enqueue_entries(
        self, entries: Sequence[SafetyCostEntry], message_uuids: Mapping[str, str]
    ) -> int:
        """Insert entries not yet in the outbox (by entry_key); return how many were new.

        An existing entry, whatever its status, is never overwritten; its original
        payload and message UUID stay. A message UUID already used by another
        entry is an error (IntegrityError), not a silent skip.
        """
        now = self._clock()
        rows = []
        for e in entries:
            try:
                uuid = message_uuids[e.entry_key]
            except KeyError:
                raise ValueError(f"no message UUID given for entry {e.entry_key!r}") from None
            rows.append(
                {
                    "entry_key": e.entry_key,
                    "message_uuid": str(uuid),
                    "permit_id": e.permit_id,
                    "payload": e.model_dump(mode="json"),
                    "status": "pending",
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        rows = _dedupe(rows, lambda r: r["entry_key"], keep="first")
        if not rows:
            return 0
        stmt = (
            self._insert(t.erp_outbox)
            .on_conflict_do_nothing(index_elements=["entry_key"])
            .returning(t.erp_outbox.c.entry_key)
        )
        added = 0
        with self._write() as conn:
            for chunk in _chunks(rows, WRITE_CHUNK):
                added += len(conn.execute(stmt, list(chunk)).all())
        return added

    def outbox_to_send(self, limit: int | None = None, site: str | None = None) -> list[OutboxRow]:
        """Entries still to post (pending, or unclear: ask the ERP by reference first), oldest first."""
        o = t.erp_outbox
        stmt = (
            select(o.c.entry_key, o.c.message_uuid, o.c.payload, o.c.status, o.c.attempts)
            .where(o.c.status.in_(OPEN_OUTBOX_STATUSES), *_outbox_of(site))
            .order_by(o.c.created_at, o.c.entry_key)
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as conn:
            rows = conn.execute(stmt).all()
        return [
            OutboxRow(
                entry_key=r.entry_key,
                message_uuid=r.message_uuid,
                entry=SafetyCostEntry.model_validate(r.payload),
                status=r.status,
                attempts=r.attempts,
            )
            for r in rows
        ]

    def _update_open(self, conn: Connection, params: list[dict[str, Any]], values: dict[str, Any]) -> int:
        """executemany UPDATE of open (pending/unclear) outbox rows keyed by :k_entry_key."""
        if not params:
            return 0
        o = t.erp_outbox
        stmt = (
            update(o)
            .where(
                and_(
                    o.c.entry_key == bindparam("k_entry_key"),
                    # no IN (...) here: expanding parameters can't be used with executemany
                    or_(*(o.c.status == s for s in OPEN_OUTBOX_STATUSES)),
                )
            )
            .values(**values)
        )
        changed = 0
        for chunk in _chunks(params, WRITE_CHUNK):
            changed += conn.execute(stmt, list(chunk)).rowcount
        return changed

    def mark_posted(self, results: Sequence[tuple[str, str, str]], audit: AuditBatch | None = None) -> int:
        """(entry_key, accounting_document, fiscal_year) confirmed by the ERP.

        Only pending/unclear rows move; posted and rejected are final. Returns rows changed.
        """
        now = self._clock()
        params = [
            {"k_entry_key": key, "k_doc": str(doc), "k_year": None if year is None else str(year), "k_now": now}
            for key, doc, year in results
        ]
        with self._write() as conn:
            changed = self._update_open(
                conn,
                params,
                {
                    "status": "posted",
                    "accounting_document": bindparam("k_doc"),
                    "fiscal_year": bindparam("k_year"),
                    "last_error": None,
                    "updated_at": bindparam("k_now", type_=t.erp_outbox.c.updated_at.type),
                },
            )
            self._chain(conn, audit)
            return changed

    def mark_rejected(self, rows: Sequence[tuple[str, str]], audit: AuditBatch | None = None) -> int:
        """(entry_key, message) refused by the ERP. Only pending/unclear rows move."""
        now = self._clock()
        params = [{"k_entry_key": key, "k_msg": str(msg), "k_now": now} for key, msg in rows]
        with self._write() as conn:
            changed = self._update_open(
                conn,
                params,
                {
                    "status": "rejected",
                    "last_error": bindparam("k_msg"),
                    "updated_at": bindparam("k_now", type_=t.erp_outbox.c.updated_at.type),
                },
            )
            self._chain(conn, audit)
            return changed

    def requeue_rejected(self, entry_keys: Collection[str]) -> int:
        """An operator's replay after fixing master data: rejected entries become pending
        again, under the same message UUID, so the ERP still cannot book them twice."""
        o = t.erp_outbox
        changed = 0
        with self._write() as conn:
            for chunk in _chunks(_unique(entry_keys), IN_CHUNK):
                changed += conn.execute(
                    update(o)
                    .where(o.c.entry_key.in_(chunk), o.c.status == "rejected")
                    .values(status="pending", updated_at=self._clock())
                ).rowcount
        return changed

    def mark_unclear(self, entry_keys: Collection[str], error: str) -> int:
        """The send's outcome is unknown (e.g. timeout): status unclear, attempts + 1."""
        o = t.erp_outbox
        now = self._clock()
        changed = 0
        with self._write() as conn:
            for chunk in _chunks(_unique(entry_keys), IN_CHUNK):
                changed += conn.execute(
                    update(o)
                    .where(and_(o.c.entry_key.in_(chunk), o.c.status.in_(OPEN_OUTBOX_STATUSES)))
                    .values(
                        status="unclear",
                        attempts=o.c.attempts + 1,
                        last_error=str(error),
                        updated_at=now,
                    )
                ).rowcount
        return changed

    def outbox_summary(self, site: str | None = None) -> dict[str, int]:
        """Row count per status (every status present, zero if none)."""
        o = t.erp_outbox
        stmt = select(o.c.status, func.count()).where(*_outbox_of(site)).group_by(o.c.status)
        with self._read() as conn:
            counts = dict(conn.execute(stmt).all())
        return {status: int(counts.get(status, 0)) for status in t.OUTBOX_STATUSES}

    def load_outbox(
        self,
        site: str | None = None,
        *,
        unconfirmed_only: bool = False,
        limit: int | None = None,
        updated_since: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Outbox rows, oldest first: of a site (every site if None), only those without an ERP
        document if asked, only those changed at or after `updated_since` if given, at most
        `limit` of them."""
        o = t.erp_outbox
        where = [*_outbox_of(site), *([o.c.accounting_document.is_(None)] if unconfirmed_only else [])]
        if updated_since is not None:
            where.append(o.c.updated_at >= _aware(updated_since, "updated_since"))
        with self._read() as conn:
            rows = conn.execute(select(o).where(*where).order_by(o.c.created_at, o.c.entry_key).limit(limit)).all()
        return [dict(r._mapping) for r in rows]

    def outbox_named(self, site: str, entry_keys: Collection[str], message_uuids: Collection[str]) -> list[dict[str, Any]]:
        """The site's outbox rows with one of `entry_keys` or one of `message_uuids`: those ERP
        documents name, without reading the whole outbox."""
        o = t.erp_outbox
        found: dict[str, dict[str, Any]] = {}
        with self._read() as conn:
            for column, values in ((o.c.entry_key, entry_keys), (o.c.message_uuid, message_uuids)):
                for chunk in _chunks(_unique(values), IN_CHUNK):
                    for row in conn.execute(select(o).where(column.in_(chunk), *_outbox_of(site))):
                        found[row.entry_key] = dict(row._mapping)
        return sorted(found.values(), key=lambda r: (r["created_at"], r["entry_key"]))

    def outbox_sites_of(self, entry_keys: Collection[str]) -> dict[str, str]:
        """Entry key -> the site whose outbox holds it, for those of `entry_keys` the hub queued."""
        o = t.erp_outbox
        found: dict[str, str] = {}
        with self._read() as conn:
            for chunk in _chunks(_unique(entry_keys), IN_CHUNK):
                rows = conn.execute(select(o.c.entry_key, o.c.payload).where(o.c.entry_key.in_(chunk)))
                found.update({row.entry_key: row.payload["site"] for row in rows})
        return found

    # ------------------------------------------------------------------ quarantine

    @staticmethod
    def _dedupe_key(item: QuarantineItem) -> str:
        raw = json.dumps(
            [item.system, item.record_kind, item.source_key, item.reason], ensure_ascii=False
        )
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()

    def quarantine(self, items: Sequence[QuarantineItem]) -> int:
        """Quarantine records; the same (system, record_kind, source_key, reason) is kept
        once while unresolved. Returns how many were newly added."""
        now = self._clock()
        rows = _dedupe(
            (
                {
                    "system": i.system,
                    "record_kind": i.record_kind,
                    "source_key": i.source_key,
                    "payload": dict(i.payload),
                    "field": i.field,
                    "reason": i.reason,
                    "source_file": i.source_file,
                    "partial": dict(i.partial),
                    "device_id": _named_device(i.partial),
                    "created_at": now,
                    "resolved": False,
                    "dedupe_key": self._dedupe_key(i),
                }
                for i in items
            ),
            lambda r: r["dedupe_key"],
            keep="first",
        )
        if not rows:
            return 0
        stmt = (
            self._insert(t.quarantine)
            .on_conflict_do_nothing(
                index_elements=["dedupe_key"], index_where=text("NOT resolved")
            )
            .returning(t.quarantine.c.id)
        )
        added = 0
        with self._write() as conn:
            for chunk in _chunks(rows, WRITE_CHUNK):
                added += len(conn.execute(stmt, list(chunk)).all())
        return added

    def list_quarantine(
        self,
        include_resolved: bool = False,
        *,
        system: str | None = None,
        record_kinds: Collection[str] | None = None,
        device_ids: Collection[str] | None = None,
        with_payload: bool = True,
    ) -> list[dict[str, Any]]:
        """Quarantined records, oldest first: of one system and record kinds, and naming one of
        `device_ids` in what could be read of them, if given. Without the payload, a gate that
        only needs to know what is unreadable does not decode every bad record in full."""
        q = t.quarantine
        if not include_resolved and system is not None and record_kinds is not None and device_ids is not None and not with_payload:
            with self._read() as conn:
                rows = self._rows_in(conn, "open_quarantine_of_devices", device_ids, system=system, kinds=sorted(record_kinds))
            return sorted(rows, key=lambda row: row["id"])
        columns = [c for c in q.c if with_payload or c.name != "payload"]
        stmt = select(*columns).order_by(q.c.id)
        if not include_resolved:
            stmt = stmt.where(q.c.resolved.is_(False))
        if system is not None:
            stmt = stmt.where(q.c.system == system)
        if record_kinds is not None:
            stmt = stmt.where(q.c.record_kind.in_(sorted(record_kinds)))
        with self._read() as conn:
            if device_ids is None:
                return [dict(r._mapping) for r in conn.execute(stmt)]
            rows = [
                dict(r._mapping)
                for chunk in _chunks(_unique(device_ids), IN_CHUNK)
                for r in conn.execute(stmt.where(q.c.device_id.in_(chunk)))
            ]
        return sorted(rows, key=lambda row: row["id"])

    def resolve_quarantine_for(self, system: str, record_kind: str, source_keys: Collection[str]) -> int:
        """Resolve open quarantine rows superseded by a record that has now mapped cleanly."""
        q = t.quarantine
        changed = 0
        with self._write() as conn:
            for chunk in _chunks(_unique(source_keys), IN_CHUNK):
                changed += conn.execute(
                    update(q)
                    .where(q.c.system == system, q.c.record_kind == record_kind, q.c.source_key.in_(chunk))
                    .where(q.c.resolved.is_(False))
                    .values(resolved=True)
                ).rowcount
        return changed

    def resolve_quarantine(
        self, ids: Collection[int], replayed_at: datetime | None = None
    ) -> int:
        """Mark quarantined records resolved (and replayed at ``replayed_at``, if given)."""
        q = t.quarantine
        values: dict[str, Any] = {"resolved": True}
        if replayed_at is not None:
            values["replayed_at"] = _aware(replayed_at, "replayed_at")
        id_list = sorted({int(i) for i in ids})
        changed = 0
        with self._write() as conn:
            for chunk in _chunks(id_list, IN_CHUNK):
                changed += conn.execute(
                    update(q).where(and_(q.c.id.in_(chunk), q.c.resolved.is_(False))).values(**values)
                ).rowcount
        return changed
