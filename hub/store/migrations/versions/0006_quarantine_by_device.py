"""A quarantined record names its device in a column of its own, indexed: every gate decision asks
which of its devices have unreadable EAM records, and reading that out of each row's JSON cost a
scan of the quarantine per decision.

Revision ID: 0006
Revises: 0005
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: Union[str, Sequence[str], None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# What could be read of a record's device, as text (a number too: it still names a device).
BACKFILL = {
    "sqlite": "UPDATE quarantine SET device_id = CAST(json_extract(partial, '$.device_id') AS TEXT) "
    "WHERE json_type(partial, '$.device_id') IN ('text', 'integer', 'real')",
    "postgresql": "UPDATE quarantine SET device_id = partial ->> 'device_id' "
    "WHERE json_typeof(partial -> 'device_id') IN ('string', 'number')",
}


def upgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.add_column(sa.Column("device_id", sa.String(), nullable=True))
    op.execute(BACKFILL[op.get_bind().dialect.name])
    op.create_index("ix_quarantine_system_device", "quarantine", ["system", "device_id"])


def downgrade() -> None:
    op.drop_index("ix_quarantine_system_device", table_name="quarantine")
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_column("device_id")
