"""The hub's tables (SQLAlchemy Core). The schema is created by the Alembic
migrations in ``hub/store/migrations``; a test checks that they match this file.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    text,
)

from hub.store.types import ExactDecimal, UtcDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# BIGINT autoincrement on PostgreSQL; SQLite autoincrements only "INTEGER PRIMARY KEY".
BigId = BigInteger().with_variant(Integer(), "sqlite")

OUTBOX_STATUSES: tuple[str, ...] = ("pending", "posted", "rejected", "unclear")

def lineage_columns() -> list[Column]:
    """Which mapping file, at which content hash, produced a canonical row."""
    return [Column("mapping_file", String, nullable=True), Column("mapping_sha256", String(64), nullable=True)]


permits = Table(
    "permits",
    metadata,
    Column("permit_id", String, primary_key=True),
    Column("permit_type", String, nullable=False),
    Column("risk_level", String, nullable=False),
    Column("site", String, nullable=False),
    Column("area", String, nullable=False),
    Column("device_ids", JSON, nullable=False),
    Column("material_names", JSON, nullable=False),
    Column("applicant", String, nullable=False),
    Column("guardian", String, nullable=True),
    Column("planned_start", UtcDateTime, nullable=False),
    Column("planned_end", UtcDateTime, nullable=False),
    Column("status", String, nullable=False, index=True),
    Column("submitted_at", UtcDateTime, nullable=False),
    Column("approved_at", UtcDateTime, nullable=True),
    Column("guardian_arrived_at", UtcDateTime, nullable=True),
    Column("closed_at", UtcDateTime, nullable=True),
    Column("result", String, nullable=True),
    Column("work_hours", ExactDecimal, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("synced_at", UtcDateTime, nullable=False),
    *lineage_columns(),
    # The history of similar work a gate check shows (the same type in the same area).
    Index("ix_permits_site_area_type", "site", "area", "permit_type", "planned_start"),
)

# Equipment is (site, device_id) and a work order (site, record_id): two sites may reuse a number.
equipment = Table(
    "equipment",
    metadata,
    Column("site", String, primary_key=True),
    Column("device_id", String, primary_key=True),
    Column("name", String, nullable=False),
    Column("area", String, nullable=True),
    Column("status", String, nullable=False),
    Column("next_inspection_due", UtcDateTime, nullable=True),
    Column("data_as_of", UtcDateTime, nullable=True),
    Column("fetched_at", UtcDateTime, nullable=False),
    *lineage_columns(),
)

maintenance_records = Table(
    "maintenance_records",
    metadata,
    Column("site", String, primary_key=True),
    Column("record_id", String, primary_key=True),
    Column("device_id", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("status", String, nullable=False),
    Column("window_start", UtcDateTime, nullable=True),
    Column("window_end", UtcDateTime, nullable=True),
    Column("isolation", String, nullable=False),
    Column("reported_at", UtcDateTime, nullable=True),
    Column("completed_at", UtcDateTime, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("fetched_at", UtcDateTime, nullable=False),
    *lineage_columns(),
    Index("ix_maintenance_records_site_device_id", "site", "device_id"),
)

# A workshop's monthly defect rate from the MES; the workshop is the permits' area name.
quality_rates = Table(
    "quality_rates",
    metadata,
    Column("site", String, primary_key=True),
    Column("workshop", String, primary_key=True),
    Column("month", Date, primary_key=True),
    Column("defect_rate", ExactDecimal, nullable=False),
    Column("units_inspected", Integer, nullable=False),
    Column("updated_at", UtcDateTime, nullable=True),
    Column("fetched_at", UtcDateTime, nullable=False),
    *lineage_columns(),
)

process_parameters = Table(
    "process_parameters",
    metadata,
    Column("material_name", String, primary_key=True),
    Column("parameter_id", String, primary_key=True),
    Column("value", String, nullable=False),
    Column("data_type", String, nullable=False),
    Column("unit", String, nullable=True),
    Column("updated_at", UtcDateTime, nullable=True),
    Column("fetched_at", UtcDateTime, nullable=False),
    *lineage_columns(),
)

device_clearance = Table(
    "device_clearance",
    metadata,
    Column("site", String, primary_key=True),
    Column("device_id", String, primary_key=True),
    Column("known", Boolean, nullable=False),
    Column("hazards", JSON, nullable=False),
    Column("data_as_of", UtcDateTime, nullable=True),
    Column("computed_at", UtcDateTime, nullable=False),
)

sync_cursors = Table(
    "sync_cursors",
    metadata,
    Column("name", String, primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# When a source system last answered a lookup of a key, found or not: a device the
# EAM was asked about and did not return is unknown; one never asked is unavailable.
# `site` scopes site-keyed lookups (equipment); it is "" for plant-wide keys.
lookups = Table(
    "lookups",
    metadata,
    Column("system", String, primary_key=True),
    Column("site", String, primary_key=True),
    Column("key", String, primary_key=True),
    Column("looked_up_at", UtcDateTime, nullable=False),
)

gate_decisions = Table(
    "gate_decisions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("permit_id", String, nullable=False, index=True),
    Column("decision", String, nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("rule_version", String, nullable=False),
    Column("evaluated_at", UtcDateTime, nullable=False),
    Column("eam_data_as_of", UtcDateTime, nullable=True),
    Column("fingerprint", String, nullable=False),
)

ptw_holds = Table(
    "ptw_holds",
    metadata,
    Column("permit_id", String, primary_key=True),
    Column("fingerprint", String, nullable=False),
    Column("decision", String, nullable=False),
    Column("written_at", UtcDateTime, nullable=False),
)

erp_outbox = Table(
    "erp_outbox",
    metadata,
    Column("entry_key", String, primary_key=True),
    Column("message_uuid", String, nullable=False, unique=True),
    Column("permit_id", String, nullable=False, index=True),
    Column("payload", JSON, nullable=False),
    Column("status", String, nullable=False, index=True),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("accounting_document", String, nullable=True),
    Column("fiscal_year", String, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint(
        "status IN ('pending', 'posted', 'rejected', 'unclear')", name="status_known"
    ),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("system", String, nullable=False),
    Column("record_kind", String, nullable=False),
    Column("source_key", String, nullable=True),
    Column("payload", JSON, nullable=False),
    Column("field", String, nullable=True),
    Column("reason", Text, nullable=False),
    Column("source_file", String, nullable=True),
    Column("partial", JSON, nullable=True),
    # The device named in `partial`, as text, for the gate's "which devices are unreadable".
    Column("device_id", String, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("replayed_at", UtcDateTime, nullable=True),
    Column("resolved", Boolean, nullable=False, server_default=false()),
    # sha256 of (system, record_kind, source_key, reason): NULL-safe and short,
    # so it can carry the "not twice while unresolved" uniqueness below.
    Column("dedupe_key", String(64), nullable=False),
    Index(
        "uq_quarantine_open_dedupe_key",
        "dedupe_key",
        unique=True,
        sqlite_where=text("NOT resolved"),
        postgresql_where=text("NOT resolved"),
    ),
    Index("ix_quarantine_system_device", "system", "device_id"),
)

# Append-only, hash-chained: each row's hash covers its content and the previous hash,
# so altering, deleting or inserting a row breaks the chain from there on.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("kind", String, nullable=False),
    Column("ref", String, nullable=False, index=True),
    Column("body", Text, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

ALL_TABLES: tuple[Table, ...] = tuple(metadata.sorted_tables)
TABLE_NAMES: frozenset[str] = frozenset(metadata.tables)
