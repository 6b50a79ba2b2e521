"""Equipment identity is (site, device ID); work orders are (site, work-order number).

Existing rows get their site from the EAM's own `siteid` (the equipment row). A work order or a
lookup whose device has no equipment row cannot be placed at a site: it is dropped and the next
sync pulls it again, never guessed. Clearance profiles are recomputed on every sync, so they are
dropped outright.

Revision ID: 0003
Revises: 0002
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Lookup systems whose keys are EAM device IDs; any other lookup is plant-wide (site "").
DEVICE_LOOKUPS = ("eam", "eam_whole", "eam_suspect")
SITE_OF_DEVICE = "(SELECT e.site FROM equipment e WHERE e.device_id = {table}.{column})"


def _primary_key(table: str, columns: list[str]) -> None:
    with op.batch_alter_table(table, recreate="always") as batch:
        batch.drop_constraint(f"pk_{table}", type_="primary")
        batch.create_primary_key(f"pk_{table}", columns)


def upgrade() -> None:
    op.execute("DELETE FROM equipment WHERE site IS NULL OR site = ''")

    with op.batch_alter_table("maintenance_records") as batch:
        batch.add_column(sa.Column("site", sa.String(), nullable=True))
    op.execute(
        "UPDATE maintenance_records SET site = "
        + SITE_OF_DEVICE.format(table="maintenance_records", column="device_id")
    )
    op.execute("DELETE FROM maintenance_records WHERE site IS NULL")
    op.drop_index("ix_maintenance_records_device_id", table_name="maintenance_records")
    with op.batch_alter_table("maintenance_records", recreate="always") as batch:
        batch.alter_column("site", existing_type=sa.String(), nullable=False)
        batch.drop_constraint("pk_maintenance_records", type_="primary")
        batch.create_primary_key("pk_maintenance_records", ["site", "record_id"])
    op.create_index("ix_maintenance_records_site_device_id", "maintenance_records", ["site", "device_id"])

    op.execute("DELETE FROM device_clearance")
    with op.batch_alter_table("device_clearance") as batch:
        batch.add_column(sa.Column("site", sa.String(), nullable=False, server_default=""))
    with op.batch_alter_table("device_clearance", recreate="always") as batch:
        batch.alter_column("site", existing_type=sa.String(), server_default=None)

    with op.batch_alter_table("lookups") as batch:
        batch.add_column(sa.Column("site", sa.String(), nullable=True))
    systems = ", ".join(f"'{s}'" for s in DEVICE_LOOKUPS)
    op.execute(
        f"UPDATE lookups SET site = {SITE_OF_DEVICE.format(table='lookups', column='key')} WHERE system IN ({systems})"
    )
    op.execute(f"UPDATE lookups SET site = '' WHERE system NOT IN ({systems})")
    op.execute("DELETE FROM lookups WHERE site IS NULL")
    with op.batch_alter_table("lookups", recreate="always") as batch:
        batch.alter_column("site", existing_type=sa.String(), nullable=False)

    _primary_key("equipment", ["site", "device_id"])
    _primary_key("device_clearance", ["site", "device_id"])
    _primary_key("lookups", ["system", "site", "key"])


def downgrade() -> None:
    # The old keys cannot hold two sites' devices of one number; the hub's copies of the EAM
    # are dropped instead (the next sync pulls them again) rather than folding sites together.
    for table in ("equipment", "maintenance_records", "device_clearance"):
        op.execute(f"DELETE FROM {table}")
    systems = ", ".join(f"'{s}'" for s in DEVICE_LOOKUPS)
    op.execute(f"DELETE FROM lookups WHERE system IN ({systems})")
    with op.batch_alter_table("lookups", recreate="always") as batch:
        batch.drop_constraint("pk_lookups", type_="primary")
        batch.drop_column("site")
        batch.create_primary_key("pk_lookups", ["system", "key"])
    with op.batch_alter_table("device_clearance", recreate="always") as batch:
        batch.drop_constraint("pk_device_clearance", type_="primary")
        batch.drop_column("site")
        batch.create_primary_key("pk_device_clearance", ["device_id"])
    op.drop_index("ix_maintenance_records_site_device_id", table_name="maintenance_records")
    with op.batch_alter_table("maintenance_records", recreate="always") as batch:
        batch.drop_constraint("pk_maintenance_records", type_="primary")
        batch.drop_column("site")
        batch.create_primary_key("pk_maintenance_records", ["record_id"])
    op.create_index("ix_maintenance_records_device_id", "maintenance_records", ["device_id"])
    _primary_key("equipment", ["device_id"])
