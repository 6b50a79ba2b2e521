"""Mapping lineage on canonical rows, process-parameter change time, hash-chained audit log.

Revision ID: 0002
Revises: 0001
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
CANONICAL_TABLES = ("permits", "equipment", "maintenance_records", "process_parameters")


def upgrade() -> None:
    for table in CANONICAL_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("mapping_file", sa.String(), nullable=True))
            batch.add_column(sa.Column("mapping_sha256", sa.String(length=64), nullable=True))
    with op.batch_alter_table("process_parameters") as batch:
        batch.add_column(sa.Column("updated_at", TS, nullable=True))
    op.create_table(
        "audit_log",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("ref", sa.String(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_ref", "audit_log", ["ref"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_ref", table_name="audit_log")
    op.drop_table("audit_log")
    with op.batch_alter_table("process_parameters") as batch:
        batch.drop_column("updated_at")
    for table in CANONICAL_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("mapping_sha256")
            batch.drop_column("mapping_file")
