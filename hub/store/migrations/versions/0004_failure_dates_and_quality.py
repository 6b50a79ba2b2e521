"""Work orders carry when they were reported and finished; the MES's monthly defect rates get a table.

Existing work orders get no dates: the next pull fills them from the EAM.

Revision ID: 0004
Revises: 0003
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: Union[str, Sequence[str], None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)
EXACT_DECIMAL = sa.Numeric().with_variant(sa.String(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("maintenance_records") as batch:
        batch.add_column(sa.Column("reported_at", TS, nullable=True))
        batch.add_column(sa.Column("completed_at", TS, nullable=True))
    op.create_table(
        "quality_rates",
        sa.Column("site", sa.String(), nullable=False),
        sa.Column("workshop", sa.String(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("defect_rate", EXACT_DECIMAL, nullable=False),
        sa.Column("units_inspected", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=True),
        sa.Column("fetched_at", TS, nullable=False),
        sa.Column("mapping_file", sa.String(), nullable=True),
        sa.Column("mapping_sha256", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("site", "workshop", "month", name=op.f("pk_quality_rates")),
    )


def downgrade() -> None:
    op.drop_table("quality_rates")
    with op.batch_alter_table("maintenance_records") as batch:
        batch.drop_column("completed_at")
        batch.drop_column("reported_at")
