"""Profiles whose computed traits and memberships wait for a parallel worker (PostgreSQL).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from opencdp.store.dialect import BigId

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "profile_refresh_queue",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("part", sa.Integer, nullable=False),
        sa.Column("profile_id", sa.String(36), nullable=False),
    )
    op.create_index("ix_profile_refresh_queue_part_id", "profile_refresh_queue", ["part", "id"])


def downgrade() -> None:
    op.drop_index("ix_profile_refresh_queue_part_id", "profile_refresh_queue")
    op.drop_table("profile_refresh_queue")
