"""Initial schema: permits, EAM/MES caches, clearance, cursors, gate audit,
PTW holds, ERP outbox, quarantine.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00

Types are spelled out with plain SQLAlchemy types so that this migration does
not change when hub.store.types changes:
* timestamps: DateTime(timezone=True) -> timestamptz / SQLite DATETIME (naive UTC)
* exact decimals: NUMERIC on PostgreSQL, VARCHAR (decimal text) on SQLite
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)
EXACT_DECIMAL = sa.Numeric().with_variant(sa.String(), "sqlite")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "permits",
        sa.Column("permit_id", sa.String(), nullable=False),
        sa.Column("permit_type", sa.String(), nullable=False),
        sa.Column("risk_level", sa.String(), nullable=False),
        sa.Column("site", sa.String(), nullable=False),
        sa.Column("area", sa.String(), nullable=False),
        sa.Column("device_ids", sa.JSON(), nullable=False),
        sa.Column("material_names", sa.JSON(), nullable=False),
        sa.Column("applicant", sa.String(), nullable=False),
        sa.Column("guardian", sa.String(), nullable=True),
        sa.Column("planned_start", TS, nullable=False),
        sa.Column("planned_end", TS, nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("submitted_at", TS, nullable=False),
        sa.Column("approved_at", TS, nullable=True),
        sa.Column("guardian_arrived_at", TS, nullable=True),
        sa.Column("closed_at", TS, nullable=True),
        sa.Column("result", sa.String(), nullable=True),
        sa.Column("work_hours", EXACT_DECIMAL, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("synced_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("permit_id", name="pk_permits"),
    )
    op.create_index("ix_permits_status", "permits", ["status"])

    op.create_table(
        "equipment",
        sa.Column("device_id", sa.String(), nullable=False),
        sa.Column("site", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("area", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("next_inspection_due", TS, nullable=True),
        sa.Column("data_as_of", TS, nullable=True),
        sa.Column("fetched_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("device_id", name="pk_equipment"),
    )

    op.create_table(
        "maintenance_records",
        sa.Column("record_id", sa.String(), nullable=False),
        sa.Column("device_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("window_start", TS, nullable=True),
        sa.Column("window_end", TS, nullable=True),
        sa.Column("isolation", sa.String(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("fetched_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("record_id", name="pk_maintenance_records"),
    )
    op.create_index(
        "ix_maintenance_records_device_id", "maintenance_records", ["device_id"]
    )

    op.create_table(
        "process_parameters",
        sa.Column("material_name", sa.String(), nullable=False),
        sa.Column("parameter_id", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("data_type", sa.String(), nullable=False),
        sa.Column("unit", sa.String(), nullable=True),
        sa.Column("fetched_at", TS, nullable=False),
        sa.PrimaryKeyConstraint(
            "material_name", "parameter_id", name="pk_process_parameters"
        ),
    )

    op.create_table(
        "device_clearance",
        sa.Column("device_id", sa.String(), nullable=False),
        sa.Column("known", sa.Boolean(), nullable=False),
        sa.Column("hazards", sa.JSON(), nullable=False),
        sa.Column("data_as_of", TS, nullable=True),
        sa.Column("computed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("device_id", name="pk_device_clearance"),
    )

    op.create_table(
        "sync_cursors",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_sync_cursors"),
    )

    op.create_table(
        "lookups",
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("looked_up_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("system", "key", name="pk_lookups"),
    )

    op.create_table(
        "gate_decisions",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("permit_id", sa.String(), nullable=False),
        sa.Column("decision", sa.String(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("rule_version", sa.String(), nullable=False),
        sa.Column("evaluated_at", TS, nullable=False),
        sa.Column("eam_data_as_of", TS, nullable=True),
        sa.Column("fingerprint", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gate_decisions"),
    )
    op.create_index("ix_gate_decisions_permit_id", "gate_decisions", ["permit_id"])

    op.create_table(
        "ptw_holds",
        sa.Column("permit_id", sa.String(), nullable=False),
        sa.Column("fingerprint", sa.String(), nullable=False),
        sa.Column("decision", sa.String(), nullable=False),
        sa.Column("written_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("permit_id", name="pk_ptw_holds"),
    )

    op.create_table(
        "erp_outbox",
        sa.Column("entry_key", sa.String(), nullable=False),
        sa.Column("message_uuid", sa.String(), nullable=False),
        sa.Column("permit_id", sa.String(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("accounting_document", sa.String(), nullable=True),
        sa.Column("fiscal_year", sa.String(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'posted', 'rejected', 'unclear')",
            name="ck_erp_outbox_status_known",
        ),
        sa.PrimaryKeyConstraint("entry_key", name="pk_erp_outbox"),
        sa.UniqueConstraint("message_uuid", name="uq_erp_outbox_message_uuid"),
    )
    op.create_index("ix_erp_outbox_permit_id", "erp_outbox", ["permit_id"])
    op.create_index("ix_erp_outbox_status", "erp_outbox", ["status"])

    op.create_table(
        "quarantine",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("record_kind", sa.String(), nullable=False),
        sa.Column("source_key", sa.String(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("field", sa.String(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source_file", sa.String(), nullable=True),
        sa.Column("partial", sa.JSON(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("replayed_at", TS, nullable=True),
        sa.Column("resolved", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_quarantine"),
    )
    # Same (system, record_kind, source_key, reason) only once while unresolved.
    op.create_index(
        "uq_quarantine_open_dedupe_key",
        "quarantine",
        ["dedupe_key"],
        unique=True,
        sqlite_where=sa.text("NOT resolved"),
        postgresql_where=sa.text("NOT resolved"),
    )


def downgrade() -> None:
    op.drop_index("uq_quarantine_open_dedupe_key", table_name="quarantine")
    op.drop_table("quarantine")
    op.drop_index("ix_erp_outbox_status", table_name="erp_outbox")
    op.drop_index("ix_erp_outbox_permit_id", table_name="erp_outbox")
    op.drop_table("erp_outbox")
    op.drop_table("ptw_holds")
    op.drop_index("ix_gate_decisions_permit_id", table_name="gate_decisions")
    op.drop_table("gate_decisions")
    op.drop_table("lookups")
    op.drop_table("sync_cursors")
    op.drop_table("device_clearance")
    op.drop_table("process_parameters")
    op.drop_index("ix_maintenance_records_device_id", table_name="maintenance_records")
    op.drop_table("maintenance_records")
    op.drop_table("equipment")
    op.drop_index("ix_permits_status", table_name="permits")
    op.drop_table("permits")
