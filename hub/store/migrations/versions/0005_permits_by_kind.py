"""Permits are found by site, area and type: the gate check shows the history of similar work.

Revision ID: 0005
Revises: 0004
"""

from typing import Sequence, Union

from alembic import op

revision: str = "0005"
down_revision: Union[str, Sequence[str], None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index("ix_permits_site_area_type", "permits", ["site", "area", "permit_type", "planned_start"])


def downgrade() -> None:
    op.drop_index("ix_permits_site_area_type", table_name="permits")
