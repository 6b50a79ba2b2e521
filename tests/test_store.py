"""The store (hub/store) on SQLite and PostgreSQL.

PostgreSQL tests run in a throwaway schema each (``test_<uuid>``, dropped after
the test) inside the shared ``test`` database. If PostgreSQL is unreachable they
FAIL: CI has it. Override the server with HUB_TEST_PG_URL.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    bindparam,
    create_engine,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.pool import NullPool

from hub.model import (
    Equipment,
    GateDecision,
    MaintenanceRecord,
    Permit,
    ProcessParameter,
    Reason,
    SafetyCostEntry,
)
from hub.store import HubStore, QuarantineItem, SchemaNotReadyError
from hub.store import tables
from hub.store.migrate import alembic_config, current_revision, downgrade, head_revision, upgrade


UTC = timezone.utc
SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2025, 3, 1, 8, 0, 0, 123456, tzinfo=UTC)

NASTY_ID = "NJ-P-101'; DROP TABLE permits;--"
CHINESE_ID = "泵-1"
QUOTED_ID = 'V-"7"\\x'


# ---------------------------------------------------------------- fixtures


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        # A folder that does not exist yet: upgrade() must create it.
        return f"sqlite:///{tmp_path}/not/yet/hub.sqlite"
    return request.getfixturevalue("pg_url")


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(db_url, clock):
    upgrade(db_url)
    s = HubStore(db_url, clock=clock)
    yield s
    s.dispose()


# ---------------------------------------------------------------- builders


def permit(pid: str = "PTW-1", **overrides) -> Permit:
    data = dict(
        permit_id=pid,
        permit_type="work_at_height",
        risk_level="orange",
        site="NJ",
        area="U-100",
        device_ids=("NJ-P-101", CHINESE_ID),
        material_names=("甲醇",),
        applicant="张三",
        guardian=None,
        planned_start=T0,
        planned_end=T0 + timedelta(hours=8),
        status="approved",
        submitted_at=T0 - timedelta(days=1),
        approved_at=T0 - timedelta(hours=2),
        updated_at=T0 - timedelta(hours=2),
        work_hours=Decimal("7.50"),
    )
    data.update(overrides)
    return Permit(**data)


def equipment(device_id: str, **overrides) -> Equipment:
    data = dict(device_id=device_id, site="NJ", name=f"pump {device_id}", status="operating")
    data.update(overrides)
    return Equipment(**data)


def record(record_id: str, device_id: str, **overrides) -> MaintenanceRecord:
    data = dict(
        record_id=record_id,
        site="NJ",
        device_id=device_id,
        kind="corrective",
        status="in_progress",
        window_start=T0,
        window_end=T0 + timedelta(hours=4),
        isolation="applied",
        updated_at=T0,
    )
    data.update(overrides)
    return MaintenanceRecord(**data)


def cost_entry(key: str, amount: str = "1234.56", **overrides) -> SafetyCostEntry:
    data = dict(
        entry_key=key,
        permit_id="PTW-1",
        site="NJ",
        cost_center="CC-100",
        gl_account="660100",
        amount=Decimal(amount),
        currency="CNY",
        posting_date=date(2025, 3, 1),
        description="动火作业安全费",
    )
    data.update(overrides)
    return SafetyCostEntry(**data)


def decision(pid: str, verdict: str = "block", at: datetime = T0) -> GateDecision:
    reasons = ()
    if verdict == "block":
        reasons = (
            Reason(
                code="OPEN_WORK_ORDER",
                device_id=CHINESE_ID,
                message="open work order WO-9 in the permit window",
                evidence={"record_id": "WO-9", "status": "in_progress"},
            ),
        )
    return GateDecision(
        permit_id=pid,
        decision=verdict,
        reasons=reasons,
        rule_version="2025.03",
        evaluated_at=at,
        eam_data_as_of=at - timedelta(minutes=5),
    )


# ---------------------------------------------------------------- migrations


def test_migration_up_from_empty(db_url):
    assert current_revision(db_url) is None
    upgrade(db_url)
    assert current_revision(db_url) == head_revision() == "0006"
    upgrade(db_url)  # already at head: a no-op, not an error
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            assert tables.TABLE_NAMES <= set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_migrated_schema_matches_metadata(db_url):
    upgrade(db_url)
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            mc = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(mc, tables.metadata) == []

            # ...and the comparison is able to see a difference.
            drifted = MetaData(naming_convention=tables.NAMING_CONVENTION)
            for table in tables.metadata.sorted_tables:
                table.to_metadata(drifted)
            drifted.tables["permits"].append_column(Column("extra", Integer))
            diffs = compare_metadata(MigrationContext.configure(conn), drifted)
            assert [d[0] for d in diffs] == ["add_column"]
    finally:
        engine.dispose()
    # The same through env.py (URL path, no connection handed in): `alembic check`.
    command.check(alembic_config(db_url))


def test_downgrade_to_base_and_back(db_url):
    upgrade(db_url)
    downgrade(db_url, "base")
    assert current_revision(db_url) is None
    with pytest.raises(SchemaNotReadyError):
        HubStore(db_url)
    upgrade(db_url)
    HubStore(db_url).dispose()


def test_the_upgrade_names_the_device_of_records_quarantined_before_it(db_url):
    """0006 reads each quarantined record's device out of its JSON into the column the gate's
    lookup uses: an unreadable record stored before the upgrade still blocks its device."""
    upgrade(db_url, "0005")
    engine = create_engine(db_url, poolclass=NullPool)
    partials = {"w1": {"device_id": "P-101"}, "w2": {"device_id": 4711}, "w3": {}, "w4": {"device_id": {"x": 1}}}
    with engine.begin() as conn:
        conn.execute(
            tables.quarantine.insert(),
            [
                {"system": "eam", "record_kind": "maintenance_record", "source_key": key, "payload": {}, "reason": "bad",
                 "partial": partial, "created_at": T0, "resolved": False, "dedupe_key": key}
                for key, partial in partials.items()
            ],
        )
    engine.dispose()
    upgrade(db_url)
    store = HubStore(db_url)
    try:
        found = store.list_quarantine(system="eam", device_ids=["P-101", "4711", "X"], with_payload=False)
        assert sorted(r["source_key"] for r in found) == ["w1", "w2"]
        store.quarantine([QuarantineItem("eam", "equipment", "e1", {}, None, "bad", partial={"device_id": 12})])
        assert [r["source_key"] for r in store.list_quarantine(system="eam", record_kinds=["equipment"], device_ids=["12"])] == ["e1"]
    finally:
        store.dispose()


def test_store_refuses_unmigrated_database(db_url):
    if db_url.startswith("sqlite"):
        with pytest.raises(SchemaNotReadyError, match=r"does not exist; run `hub db upgrade`"):
            HubStore(db_url)
        upgrade(db_url)  # create the file, then drop a table behind the store's back
        engine = create_engine(db_url, poolclass=NullPool)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE erp_outbox"))
        engine.dispose()
        with pytest.raises(SchemaNotReadyError, match=r"erp_outbox.*run `hub db upgrade`"):
            HubStore(db_url)
    else:
        with pytest.raises(SchemaNotReadyError, match=r"not migrated.*run `hub db upgrade`"):
            HubStore(db_url)


def test_store_refuses_other_revision(db_url):
    upgrade(db_url)
    engine = create_engine(db_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    engine.dispose()
    with pytest.raises(SchemaNotReadyError, match=r"'0000'.*'0006'.*run `hub db upgrade`"):
        HubStore(db_url)


def _execute(db_url: str, *statements) -> None:
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            for stmt, params in statements:
                conn.execute(stmt, params)
    finally:
        engine.dispose()


def _rows(db_url: str, sql: str) -> list[tuple]:
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def test_migration_0003_places_existing_rows_at_their_equipment_site(db_url):
    upgrade(db_url, "0002")
    assert current_revision(db_url) == "0002"
    ts = DateTime(timezone=True)
    at = {"at": T0}
    _execute(
        db_url,
        (
            text(
                "INSERT INTO equipment (device_id, site, name, status, fetched_at) "
                "VALUES ('E-1', 'NJ01', 'pump E-1', 'operating', :at), "
                "('E-0', '', 'no site', 'operating', :at)"
            ).bindparams(bindparam("at", type_=ts)),
            at,
        ),
        (
            text(
                "INSERT INTO maintenance_records "
                "(record_id, device_id, kind, status, isolation, updated_at, fetched_at) "
                "VALUES ('WO-1', 'E-1', 'corrective', 'in_progress', 'applied', :at, :at), "
                "('WO-9', 'E-9', 'corrective', 'in_progress', 'applied', :at, :at)"
            ).bindparams(bindparam("at", type_=ts)),
            at,
        ),
        (
            text(
                "INSERT INTO lookups (system, key, looked_up_at) "
                "VALUES ('eam', 'E-1', :at), ('eam', 'E-9', :at), ('mes', '乙烯', :at)"
            ).bindparams(bindparam("at", type_=ts)),
            at,
        ),
        (
            text(
                "INSERT INTO device_clearance (device_id, known, hazards, data_as_of, computed_at) "
                "VALUES ('E-1', :known, :hazards, :at, :at)"
            ).bindparams(
                bindparam("at", type_=ts), bindparam("known", type_=Boolean), bindparam("hazards", type_=JSON)
            ),
            {**at, "known": True, "hazards": [{"code": "OPEN_WORK_ORDER"}]},
        ),
    )

    upgrade(db_url)
    assert current_revision(db_url) == head_revision()
    with HubStore(db_url) as store:
        assert set(store.load_equipment("NJ01", None)) == {"E-1"}
        assert store.load_equipment("", None) == {}  # equipment without a site cannot be placed
        (wo,) = store.load_maintenance_records("NJ01", ["E-1"])
        assert (wo.record_id, wo.site, wo.device_id, wo.isolation) == ("WO-1", "NJ01", "E-1", "applied")
        assert store.lookup_times("eam", ["E-1", "E-9"], site="NJ01") == {"E-1": T0}
        assert store.lookup_times("eam", ["E-1", "E-9"]) == {}
        assert store.lookup_times("mes", ["乙烯"]) == {"乙烯": T0}
        assert store.load_device_clearance("NJ01") == {}
        assert store.load_device_clearance("") == {}
    # The orphan work order and the lookup of the unplaceable device are gone at every site.
    assert _rows(db_url, "SELECT site, record_id, device_id FROM maintenance_records") == [("NJ01", "WO-1", "E-1")]
    assert sorted(_rows(db_url, "SELECT system, site, key FROM lookups")) == [
        ("eam", "NJ01", "E-1"),
        ("mes", "", "乙烯"),
    ]
    assert _rows(db_url, "SELECT COUNT(*) FROM device_clearance") == [(0,)]
    assert _rows(db_url, "SELECT site, device_id FROM equipment") == [("NJ01", "E-1")]

    # Back down: the EAM copies are dropped (the next sync pulls them again), plant-wide lookups stay.
    downgrade(db_url, "0002")
    assert current_revision(db_url) == "0002"
    assert _rows(db_url, "SELECT COUNT(*) FROM equipment") == [(0,)]
    assert _rows(db_url, "SELECT COUNT(*) FROM maintenance_records") == [(0,)]
    assert _rows(db_url, "SELECT system, key FROM lookups") == [("mes", "乙烯")]
    upgrade(db_url)
    HubStore(db_url).dispose()


# ---------------------------------------------------------------- permits / EAM / MES


def test_upsert_permits_idempotent_and_updates_changed_rows(store):
    p1, p2 = permit("PTW-1"), permit("PTW-2", status="active", guardian="李四")
    store.upsert_permits([p1, p2], synced_at=T0)
    store.upsert_permits([p1, p2], synced_at=T0)
    assert store.load_permits() == [p1, p2]

    p1_closed = permit(
        "PTW-1",
        status="closed",
        closed_at=T0 + timedelta(hours=9),
        result="completed",
        updated_at=T0 + timedelta(hours=9),
    )
    store.upsert_permits([p1_closed], synced_at=T0 + timedelta(hours=10))
    assert store.load_permits() == [p1_closed, p2]
    assert store.load_permits(statuses={"approved", "active", "submitted"}) == [p2]
    assert store.load_permits(statuses=[]) == []

    # Two versions of one permit in one batch: the last one wins, no error.
    store.upsert_permits([permit("PTW-3"), permit("PTW-3", status="cancelled")], synced_at=T0)
    assert store.load_permits(statuses=["cancelled"]) == [permit("PTW-3", status="cancelled")]

    with store.engine.connect() as conn:
        synced = dict(conn.execute(text("SELECT permit_id, synced_at FROM permits")).all())
    assert len(synced) == 3


def test_timestamps_round_trip_as_aware_utc(store):
    local = datetime(2025, 3, 1, 16, 30, 15, 654321, tzinfo=SHANGHAI)  # 08:30:15 UTC
    store.upsert_equipment([equipment("E-1", next_inspection_due=local, data_as_of=local)], fetched_at=local)
    store.record_lookups("eam", ["E-1"], local, site="NJ")

    got = store.lookup_times("eam", ["E-1"], site="NJ")["E-1"]
    assert store.load_equipment("NJ", ["E-1"])["E-1"].data_as_of == local
    assert got == local
    assert got.tzinfo == UTC
    assert (got.hour, got.microsecond) == (8, 654321)

    eq = store.load_equipment("NJ", ["E-1"])["E-1"]
    assert eq.next_inspection_due == local and eq.next_inspection_due.tzinfo == UTC
    assert eq.data_as_of.utcoffset() == timedelta(0)

    # Stored as UTC in the database itself, not as plant local time.
    with store.engine.connect() as conn:
        raw = conn.execute(text("SELECT fetched_at FROM equipment")).scalar_one()
    if isinstance(raw, str):  # SQLite: naive UTC text
        assert raw.startswith("2025-03-01 08:30:15.654321")
    else:
        assert raw == local

    with pytest.raises((ValueError, StatementError), match="timezone-aware"):
        store.upsert_equipment([equipment("E-2")], fetched_at=datetime(2025, 3, 1, 8, 0))
    assert "E-2" not in store.load_equipment("NJ", None)


def test_decimal_round_trip_is_exact(store):
    values = ["7.50", "0.0001", "12345678901234567890.123456789", "0"]
    store.upsert_permits(
        [permit(f"PTW-{i}", work_hours=Decimal(v)) for i, v in enumerate(values)], synced_at=T0
    )
    loaded = {p.permit_id: p.work_hours for p in store.load_permits()}
    for i, v in enumerate(values):
        got = loaded[f"PTW-{i}"]
        assert isinstance(got, Decimal)
        assert str(got) == v  # value and scale

    store.enqueue_entries([cost_entry("E-1", amount="98765432.10")], {"E-1": "u-1"})
    (row,) = store.outbox_to_send()
    assert row.entry.amount == Decimal("98765432.10") and str(row.entry.amount) == "98765432.10"


def test_hostile_and_chinese_ids(store):
    ids = [NASTY_ID, CHINESE_ID, QUOTED_ID]
    store.upsert_permits([permit("PTW-'x';--", device_ids=tuple(ids))], synced_at=T0)
    store.upsert_equipment([equipment(i) for i in ids], fetched_at=T0)
    store.upsert_maintenance_records(
        [record(f"WO-{n}", i) for n, i in enumerate(ids)], fetched_at=T0
    )
    store.upsert_process_parameters(
        [ProcessParameter(material_name="甲醇'; --", parameter_id="闪点", value="11", data_type="number", unit="°C")],
        fetched_at=T0,
    )

    assert set(store.load_equipment("NJ", ids)) == set(ids)
    assert sorted(r.device_id for r in store.load_maintenance_records("NJ", [NASTY_ID, CHINESE_ID])) == sorted(
        [NASTY_ID, CHINESE_ID]
    )
    assert store.load_permits()[0].device_ids == tuple(ids)
    assert store.load_process_parameters(["甲醇'; --"])[0].unit == "°C"
    assert store.holds_needing_write({NASTY_ID: "fp"}) == {NASTY_ID}
    with store.engine.connect() as conn:
        assert "permits" in inspect(conn).get_table_names()


def test_bulk_20k_maintenance_records(store):
    devices = [f"D-{n:05d}" for n in range(2_000)]
    records = [record(f"WO-{d}-{k}", d) for d in devices for k in range(10)]
    assert len(records) == 20_000
    store.upsert_maintenance_records(records, fetched_at=T0)

    loaded = store.load_maintenance_records("NJ", devices)  # 2,000 ids: chunked IN lists
    assert len(loaded) == 20_000
    assert loaded[0] == records[0]

    # Again, with every status changed: still 20k rows, all updated.
    changed = [r.model_copy(update={"status": "completed"}) for r in records]
    store.upsert_maintenance_records(changed, fetched_at=T0 + timedelta(hours=1))
    loaded = store.load_maintenance_records("NJ", devices[:1_234])
    assert len(loaded) == 12_340
    assert {r.status for r in loaded} == {"completed"}
    assert store.load_maintenance_records("NJ", ["nope"]) == []
    assert store.load_maintenance_records("NJ", []) == []


def test_equipment_and_parameters_upsert(store):
    store.upsert_equipment([equipment("E-1"), equipment("E-2")], fetched_at=T0)
    later = T0 + timedelta(hours=1)
    store.upsert_equipment([equipment("E-1", status="not_ready")], fetched_at=later)
    eq = store.load_equipment("NJ", ["E-1", "E-2", "E-unknown"])
    assert set(eq) == {"E-1", "E-2"}
    assert eq["E-1"].status == "not_ready" and eq["E-2"].status == "operating"
    store.record_lookups("eam", ["E-1", "E-2", "E-unknown"], T0, site="NJ")
    store.record_lookups("eam", ["E-1"], later, site="NJ")
    assert store.lookup_times("eam", ["E-1", "E-2", "E-unknown", "E-never"], site="NJ") == {
        "E-1": later, "E-2": T0, "E-unknown": T0
    }

    pp = [
        ProcessParameter(material_name="甲醇", parameter_id="FLASH_POINT", value="11", data_type="number", unit="°C"),
        ProcessParameter(material_name="甲醇", parameter_id="LEL", value="6.0", data_type="number", unit="%vol"),
        ProcessParameter(material_name="氢气", parameter_id="LEL", value="4.0", data_type="number", unit="%vol"),
    ]
    store.upsert_process_parameters(pp, fetched_at=T0)
    store.upsert_process_parameters(
        [pp[1].model_copy(update={"value": "5.5"})], fetched_at=T0
    )
    got = store.load_process_parameters(["甲醇"])
    assert [(p.parameter_id, p.value) for p in got] == [("FLASH_POINT", "11"), ("LEL", "5.5")]
    assert len(store.load_process_parameters(None)) == 3


def test_an_older_reply_stored_last_never_replaces_a_newer_one(store):
    """Two pulls of a site at once (a sync and a re-gate): the sync's reply, fetched before the
    equipment went out of service and a work order reopened, is stored after the re-gate's.
    The newer reply stands; otherwise the sync would clear equipment that is not clear."""
    later = T0 + timedelta(minutes=1)
    store.upsert_equipment([equipment("E-1", status="not_ready")], fetched_at=later)
    store.upsert_maintenance_records([record("WO-1", "E-1", status="in_progress")], fetched_at=later)
    store.upsert_equipment([equipment("E-1", status="operating")], fetched_at=T0)
    store.upsert_maintenance_records([record("WO-1", "E-1", status="completed")], fetched_at=T0)
    assert store.load_equipment("NJ", ["E-1"])["E-1"].status == "not_ready"
    assert [r.status for r in store.load_maintenance_records("NJ", ["E-1"])] == ["in_progress"]
    # A reply of the same moment or newer replaces it, as any upsert does.
    store.upsert_equipment([equipment("E-1", status="operating")], fetched_at=later)
    assert store.load_equipment("NJ", ["E-1"])["E-1"].status == "operating"
    # A permit: the PTW's stamp orders its copies, whenever each was taken in.
    store.upsert_permits([permit("PTW-9", status="suspended", updated_at=later)], synced_at=T0)
    store.upsert_permits([permit("PTW-9", status="active", updated_at=T0)], synced_at=later)
    assert [p.status for p in store.load_permits(permit_ids=["PTW-9"])] == ["suspended"]


# ---------------------------------------------------------------- clearance / cursors


def test_device_clearance_replace(store):
    hazards = [{"code": "OPEN_WORK_ORDER", "evidence": {"record_id": "WO-1", "备注": "检修中"}}]
    store.replace_device_clearance(
        "NJ",
        [
            {"device_id": "A", "known": True, "hazards": [], "data_as_of": T0, "computed_at": T0},
            {"device_id": CHINESE_ID, "known": True, "hazards": hazards, "data_as_of": None, "computed_at": T0},
        ]
    )
    store.replace_device_clearance(
        "NJ",
        [
            {"device_id": CHINESE_ID, "known": True, "hazards": hazards, "data_as_of": T0, "computed_at": T0},
            {"device_id": "C", "known": False, "hazards": [], "data_as_of": None, "computed_at": T0},
        ]
    )
    got = store.load_device_clearance("NJ")
    assert set(got) == {CHINESE_ID, "C"}  # A is gone: replace, not merge
    assert got[CHINESE_ID]["hazards"] == hazards
    assert got[CHINESE_ID]["data_as_of"] == T0
    assert got["C"]["known"] is False and got[CHINESE_ID]["known"] is True
    assert set(store.load_device_clearance("NJ", ["C", "X"])) == {"C"}
    with pytest.raises(ValueError, match="twice"):
        store.replace_device_clearance(
            "NJ",
            [{"device_id": "C", "known": True, "hazards": [], "computed_at": T0}] * 2
        )
    assert set(store.load_device_clearance("NJ")) == {CHINESE_ID, "C"}


def test_a_clearance_computed_later_is_not_replaced_by_an_earlier_one(store):
    """A sync's clearance step, started before a re-gate refreshed a device, stores its profiles
    after it: the re-gate's newer profile (a block) stays, so the sync's gate does not lift it."""
    blocked = [{"code": "OPEN_WORK_ORDER", "evidence": {"record_id": "WO-9"}}]
    later = T0 + timedelta(seconds=5)
    store.replace_device_clearance(
        "NJ", [{"device_id": "A", "known": True, "hazards": blocked, "data_as_of": later, "computed_at": later}], devices=["A"]
    )
    store.replace_device_clearance(
        "NJ",
        [
            {"device_id": "A", "known": True, "hazards": [], "data_as_of": T0, "computed_at": T0},
            {"device_id": "B", "known": True, "hazards": [], "data_as_of": T0, "computed_at": T0},
        ],
    )
    got = store.load_device_clearance("NJ")
    assert got["A"]["hazards"] == blocked and got["A"]["computed_at"] == later
    assert got["B"]["hazards"] == []


def test_cursors(store, clock):
    assert store.get_cursor("ptw.permits") is None
    store.set_cursor("ptw.permits", "2025-03-01T08:00:00Z")
    clock.advance(minutes=5)
    store.set_cursor("ptw.permits", "2025-03-01T08:05:00Z")
    store.set_cursor("eam.workorders", "页=3")
    assert store.get_cursor("ptw.permits") == "2025-03-01T08:05:00Z"
    assert store.get_cursor("eam.workorders") == "页=3"


# ---------------------------------------------------------------- gate audit and holds


def test_gate_decisions_are_append_only(store):
    first = [decision("PTW-1"), decision("PTW-2", "allow")]
    store.append_gate_decisions(first, ["fp-1", "fp-2"])
    store.append_gate_decisions([decision("PTW-1")], ["fp-1"])  # same decision again: a new row
    store.append_gate_decisions([decision("PTW-1", "allow", T0 + timedelta(hours=1))], ["fp-1b"])

    trail = store.load_gate_decisions(["PTW-1"])
    assert [r.fingerprint for r in trail] == ["fp-1", "fp-1", "fp-1b"]
    assert [r.id for r in trail] == sorted(r.id for r in trail) and len({r.id for r in trail}) == 3
    assert trail[0].decision == first[0]  # reasons and evidence round trip; old rows untouched
    assert trail[2].decision.decision == "allow"
    assert len(store.load_gate_decisions()) == 4

    with pytest.raises(ValueError, match="fingerprints"):
        store.append_gate_decisions([decision("PTW-3")], [])


def test_hold_fingerprints(store):
    fps = {"PTW-1": "fp-a", "PTW-2": "fp-b", NASTY_ID: "fp-c"}
    assert store.holds_needing_write(fps) == set(fps)

    store.record_holds_written([("PTW-1", "fp-a", "block"), ("PTW-2", "fp-b", "allow")], written_at=T0)
    assert store.holds_needing_write(fps) == {NASTY_ID}

    fps["PTW-1"] = "fp-a2"  # the decision's inputs changed
    assert store.holds_needing_write(fps) == {"PTW-1", NASTY_ID}
    store.record_holds_written([("PTW-1", "fp-a2", "allow")], written_at=T0 + timedelta(hours=1))
    assert store.holds_needing_write(fps) == {NASTY_ID}
    assert store.load_holds() == {"PTW-1": ("fp-a2", "allow"), "PTW-2": ("fp-b", "allow")}
    assert store.holds_needing_write({}) == set()


# ---------------------------------------------------------------- ERP outbox


def test_outbox_enqueue_twice_keeps_original(store, clock):
    a, b = cost_entry("K-A"), cost_entry("K-B", amount="10.00")
    assert store.enqueue_entries([a, b], {"K-A": "uuid-a", "K-B": "uuid-b"}) == 2

    clock.advance(hours=1)
    changed_a = cost_entry("K-A", amount="9999.99")
    assert store.enqueue_entries([changed_a, b], {"K-A": "uuid-a2", "K-B": "uuid-b2"}) == 0

    rows = {r["entry_key"]: r for r in store.load_outbox()}
    assert set(rows) == {"K-A", "K-B"}
    assert rows["K-A"]["message_uuid"] == "uuid-a"
    assert SafetyCostEntry.model_validate(rows["K-A"]["payload"]) == a
    assert rows["K-A"]["created_at"] == T0 and rows["K-A"]["status"] == "pending"

    # The same key twice in one batch: one row, the first wins.
    c1, c2 = cost_entry("K-C", amount="1.00"), cost_entry("K-C", amount="2.00")
    assert store.enqueue_entries([c1, c2], {"K-C": "uuid-c"}) == 1
    assert [r.entry for r in store.outbox_to_send() if r.entry_key == "K-C"] == [c1]

    with pytest.raises(ValueError, match="K-D"):
        store.enqueue_entries([cost_entry("K-D")], {})
    with pytest.raises(IntegrityError):  # a message UUID is never reused for another entry
        store.enqueue_entries([cost_entry("K-E")], {"K-E": "uuid-a"})
    assert store.outbox_summary() == {"pending": 3, "posted": 0, "rejected": 0, "unclear": 0}


def test_outbox_status_transitions(store, clock):
    keys = ["K-1", "K-2", "K-3", "K-4"]
    store.enqueue_entries([cost_entry(k) for k in keys], {k: f"uuid-{k}" for k in keys})
    assert [r.entry_key for r in store.outbox_to_send()] == keys
    assert len(store.outbox_to_send(limit=2)) == 2

    clock.advance(minutes=1)
    assert store.mark_unclear(["K-1", "K-2"], "timeout after 30 s") == 2
    assert store.mark_unclear(["K-1"], "timeout again") == 1
    to_send = {r.entry_key: r for r in store.outbox_to_send()}
    assert set(to_send) == set(keys)
    assert (to_send["K-1"].status, to_send["K-1"].attempts) == ("unclear", 2)
    assert (to_send["K-2"].status, to_send["K-2"].attempts) == ("unclear", 1)
    assert (to_send["K-3"].status, to_send["K-3"].attempts) == ("pending", 0)

    assert store.mark_posted([("K-1", "5100000001", "2025"), ("K-3", "5100000002", "2025")]) == 2
    assert store.mark_rejected([("K-2", "GL account 660100 blocked for posting")]) == 1

    # Final states stay final.
    assert store.mark_rejected([("K-1", "late rejection")]) == 0
    assert store.mark_posted([("K-2", "5100000099", "2025"), ("K-1", "5100000098", "2025")]) == 0
    assert store.mark_unclear(["K-1", "K-2", "nope"], "x") == 0

    rows = {r["entry_key"]: r for r in store.load_outbox()}
    assert rows["K-1"]["status"] == "posted"
    assert (rows["K-1"]["accounting_document"], rows["K-1"]["fiscal_year"]) == ("5100000001", "2025")
    assert rows["K-1"]["attempts"] == 2 and rows["K-1"]["last_error"] is None
    assert rows["K-1"]["updated_at"] == T0 + timedelta(minutes=1)
    assert rows["K-2"]["status"] == "rejected" and "blocked" in rows["K-2"]["last_error"]
    assert [r.entry_key for r in store.outbox_to_send()] == ["K-4"]
    assert store.outbox_summary() == {"pending": 1, "posted": 2, "rejected": 1, "unclear": 0}


# ---------------------------------------------------------------- quarantine


def test_quarantine_is_idempotent(store, clock):
    items = [
        QuarantineItem("eam", "maintenance_record", "WO-1", {"WONUM": "WO-1", "金额": Decimal("1.5")}, "status", "unknown status 'APPR X'", "wo.xml"),
        QuarantineItem("ptw", "permit", None, {"raw": "no id"}, "permit_id", "missing permit_id"),
        QuarantineItem("ptw", "permit", None, {"raw": "no id"}, "permit_id", "missing permit_id"),  # dup in batch
    ]
    assert store.quarantine(items) == 2
    clock.advance(hours=1)
    assert store.quarantine(items) == 0  # next run: nothing new (NULL source_key included)
    other_reason = QuarantineItem("eam", "maintenance_record", "WO-1", {}, "window_end", "window_end before window_start")
    assert store.quarantine([other_reason]) == 1

    open_items = store.list_quarantine()
    assert len(open_items) == 3
    first = open_items[0]
    assert first["payload"] == {"WONUM": "WO-1", "金额": "1.5"}
    assert (first["system"], first["source_key"], first["source_file"]) == ("eam", "WO-1", "wo.xml")
    assert first["created_at"] == T0 and first["resolved"] is False

    assert store.resolve_quarantine([first["id"]], replayed_at=T0 + timedelta(hours=2)) == 1
    assert store.resolve_quarantine([first["id"]]) == 0
    assert [q["id"] for q in store.list_quarantine()] == [q["id"] for q in open_items[1:]]
    resolved = [q for q in store.list_quarantine(include_resolved=True) if q["resolved"]]
    assert [q["replayed_at"] for q in resolved] == [T0 + timedelta(hours=2)]

    # Resolved, then the same problem comes back: that is a new quarantine entry.
    assert store.quarantine(items[:1]) == 1
    assert store.quarantine(items[:1]) == 0
    assert len(store.list_quarantine(include_resolved=True)) == 4


def test_complete_work_order_list_drops_records_gone_from_the_eam(store):
    """A full answer for a device replaces its work orders; other devices keep theirs."""
    def wo(record_id, device):
        return MaintenanceRecord(
            record_id=record_id, site="NJ", device_id=device, kind="corrective", status="in_progress", updated_at=T0
        )

    store.upsert_maintenance_records([wo("WO-1", "P-1"), wo("WO-2", "P-1"), wo("WO-3", "P-2")], T0)
    later = T0 + timedelta(hours=1)
    store.upsert_maintenance_records([wo("WO-2", "P-1")], later)
    assert store.drop_maintenance_records_not_refetched("NJ", ["P-1"], later) == 1
    assert [r.record_id for r in store.load_maintenance_records("NJ", ["P-1", "P-2"])] == ["WO-2", "WO-3"]


def test_only_work_orders_that_can_still_block_are_read_back_for_clearance(store):
    def wo(record_id, status, isolation="none"):
        return MaintenanceRecord(
            record_id=record_id,
            site="NJ",
            device_id="P-1",
            kind="corrective",
            status=status,
            isolation=isolation,
            updated_at=T0,
        )

    store.upsert_maintenance_records(
        [
            wo("WO-1", "completed"),
            wo("WO-2", "closed", isolation="released"),
            wo("WO-3", "cancelled"),
            wo("WO-4", "in_progress"),
            wo("WO-5", "completed", isolation="applied"),
            wo("WO-6", "approved"),
        ],
        T0,
    )
    assert [r.record_id for r in store.load_maintenance_records("NJ", ["P-1"], unfinished_or_isolated=True)] == [
        "WO-4", "WO-5", "WO-6",
    ]
    assert len(store.load_maintenance_records("NJ", ["P-1"])) == 6


# ---------------------------------------------------------------- two sites, one number


def test_two_sites_reusing_a_device_and_work_order_number_stay_apart(store):
    def wo(site, status, record_id="WO-1", isolation="none"):
        return MaintenanceRecord(
            record_id=record_id,
            site=site,
            device_id="E-1",
            kind="corrective",
            status=status,
            isolation=isolation,
            updated_at=T0,
        )

    later = T0 + timedelta(hours=1)
    nj, hz = equipment("E-1", site="NJ01"), equipment("E-1", site="HZ02", name="compressor", status="not_ready")
    store.upsert_equipment([nj, hz], fetched_at=T0)
    store.upsert_equipment([equipment("E-1", site="NJ01", status="not_ready")], fetched_at=later)
    assert store.load_equipment("NJ01", ["E-1"]) == {"E-1": equipment("E-1", site="NJ01", status="not_ready")}
    assert store.load_equipment("HZ02", None) == {"E-1": hz}
    assert store.load_equipment("NJ", None) == {}
    eq = tables.equipment
    with store.engine.connect() as conn:
        fetched = dict(conn.execute(select(eq.c.site, eq.c.fetched_at).where(eq.c.device_id == "E-1")).all())
    assert fetched == {"NJ01": later, "HZ02": T0}

    # One work-order number at both sites: two rows; an upsert at one site leaves the other's.
    store.upsert_maintenance_records([wo("NJ01", "in_progress"), wo("HZ02", "completed")], T0)
    store.upsert_maintenance_records([wo("NJ01", "approved", isolation="applied")], later)
    assert store.load_maintenance_records("NJ01", ["E-1"]) == [wo("NJ01", "approved", isolation="applied")]
    assert store.load_maintenance_records("HZ02", ["E-1"]) == [wo("HZ02", "completed")]
    assert store.load_maintenance_records("HZ02", ["E-1"], unfinished_or_isolated=True) == []
    assert store.load_maintenance_records("NJ01", None, unfinished_or_isolated=True) == [
        wo("NJ01", "approved", isolation="applied")
    ]

    # NJ01's full list at `later2` no longer has WO-1; HZ02's older WO-1 is not NJ01's to drop.
    later2 = later + timedelta(hours=1)
    store.upsert_maintenance_records([wo("NJ01", "planned", record_id="WO-2")], later2)
    assert store.drop_maintenance_records_not_refetched("NJ01", ["E-1"], later2) == 1
    assert [r.record_id for r in store.load_maintenance_records("NJ01", ["E-1"])] == ["WO-2"]
    assert store.load_maintenance_records("HZ02", ["E-1"]) == [wo("HZ02", "completed")]
    assert store.drop_maintenance_records_not_refetched("SH03", ["E-1"], later2) == 0
    assert store.load_maintenance_records("HZ02", ["E-1"]) == [wo("HZ02", "completed")]

    # Lookups of one device number, per site; "" (plant-wide) is a scope of its own.
    store.record_lookups("eam", ["E-1", "E-2"], T0, site="NJ01")
    store.record_lookups("eam", ["E-1"], later, site="HZ02")
    store.record_lookups("eam", ["E-1"], later2, site="NJ01")
    assert store.lookup_times("eam", ["E-1", "E-2"], site="NJ01") == {"E-1": later2, "E-2": T0}
    assert store.lookup_times("eam", ["E-1", "E-2"], site="HZ02") == {"E-1": later}
    assert store.lookup_times("eam", ["E-1", "E-2"]) == {}
    assert store.lookup_times("eam_whole", ["E-1"], site="NJ01") == {}

    # Clearance rows of one device number, per site.
    def row(device_id, hazards):
        return {"device_id": device_id, "known": True, "hazards": hazards, "data_as_of": T0, "computed_at": T0}

    nj_hazards = [{"code": "OPEN_WORK_ORDER", "evidence": {"record_id": "WO-2"}}]
    store.replace_device_clearance("NJ01", [row("E-1", nj_hazards), row("E-2", [])])
    store.replace_device_clearance("HZ02", [row("E-1", [])])
    assert store.load_device_clearance("NJ01")["E-1"]["hazards"] == nj_hazards
    assert store.load_device_clearance("HZ02")["E-1"]["hazards"] == []
    assert store.load_device_clearance("HZ02")["E-1"]["site"] == "HZ02"

    # Replacing NJ01's E-1 (or all of NJ01) leaves HZ02's E-1.
    store.replace_device_clearance("NJ01", [], devices=["E-1"])
    assert set(store.load_device_clearance("NJ01")) == {"E-2"}
    assert set(store.load_device_clearance("HZ02", ["E-1"])) == {"E-1"}
    store.replace_device_clearance("NJ01", [row("E-3", [])])
    assert set(store.load_device_clearance("NJ01")) == {"E-3"}
    assert set(store.load_device_clearance("HZ02")) == {"E-1"}
    with pytest.raises(ValueError, match="outside the devices replaced"):
        store.replace_device_clearance("HZ02", [row("E-9", [])], devices=["E-1"])
    assert set(store.load_device_clearance("HZ02")) == {"E-1"}


def test_site_footprint_counts_permits_and_equipment_per_site(store):
    store.upsert_permits(
        [permit("PTW-1", site="NJ01"), permit("PTW-2", site="NJ01"), permit("PTW-3", site="HZ02")], synced_at=T0
    )
    store.upsert_equipment(
        [equipment("E-1", site="NJ01"), equipment("E-1", site="SH03"), equipment("E-2", site="SH03")], fetched_at=T0
    )
    assert store.site_footprint(["NJ01", "HZ02", "SH03", "XX99"]) == {
        "NJ01": (2, 1),
        "HZ02": (1, 0),
        "SH03": (0, 2),
        "XX99": (0, 0),
    }
    assert store.site_footprint({"XX99"}) == {"XX99": (0, 0)}
    assert store.site_footprint([]) == {}


def test_load_permits_of_sites_not_in(store):
    store.upsert_permits(
        [
            permit("PTW-1", site="NJ01"),
            permit("PTW-2", site="HZ02"),
            permit("PTW-3", site="SH03"),
            permit("PTW-4", site="SH03", status="closed"),
        ],
        synced_at=T0,
    )
    assert [p.permit_id for p in store.load_permits(sites_not_in={"NJ01", "HZ02"})] == ["PTW-3", "PTW-4"]
    assert [p.permit_id for p in store.load_permits(statuses=["approved"], sites_not_in=["NJ01"])] == [
        "PTW-2", "PTW-3",
    ]
    assert store.load_permits(sites_not_in={"NJ01", "HZ02", "SH03"}) == []
    assert [p.permit_id for p in store.load_permits(sites_not_in=[])] == ["PTW-1", "PTW-2", "PTW-3", "PTW-4"]
    assert [p.permit_id for p in store.load_permits(sites_not_in=None)] == ["PTW-1", "PTW-2", "PTW-3", "PTW-4"]
    assert store.load_permits(site="SH03", sites_not_in=["SH03"]) == []


def test_a_group_commit_that_blocks_again_after_an_allow_leaves_the_trail_on_the_block(store):
    """Attack on the gate checks' group commit: the stored decision blocks, and one commit holds
    an allow and then the block again for that permit. Compared only with the stored decision,
    the second block would look unchanged and be dropped, leaving the trail on the allow."""
    from hub.steps.gate import record_decisions

    record_decisions(store, [decision("P-1", "block")], T0)
    with store.transaction(write=True):
        appended = record_decisions(store, [decision("P-1", "allow"), decision("P-1", "block")], T0)
    assert appended == 2
    [latest] = store.latest_gate_decisions(["P-1"])
    assert latest.decision == "block"
    # The same decision twice in one commit is recorded once.
    assert record_decisions(store, [decision("P-2", "block"), decision("P-2", "block")], T0) == 1


def test_a_write_inside_a_read_snapshot_is_refused_and_a_failed_write_commits_nothing(store):
    """A decision's reads share one snapshot; a write slipped into it is a programming error, and
    a group of writes that fails part-way leaves nothing behind (no half-settled pull)."""
    with pytest.raises(RuntimeError, match="read-only"):
        with store.transaction():
            store.record_lookups("eam", ["D-1"], T0, site="NJ01")
    with pytest.raises(ZeroDivisionError):
        with store.transaction(write=True):
            store.record_lookups("eam", ["D-1"], T0, site="NJ01")
            1 / 0
    assert store.lookup_times("eam", ["D-1"], site="NJ01") == {}
