"""Segments and computed traits that failed to evaluate.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from opencdp.store.dialect import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "definition_failures",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("failed_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("kind", "name", name="pk_definition_failures"),
    )


def downgrade() -> None:
    op.drop_table("definition_failures")
