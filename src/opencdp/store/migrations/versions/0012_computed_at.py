"""When a profile's computed traits were last computed (shown with each value by the profile API).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

from opencdp.store.dialect import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("profiles") as batch:
        batch.add_column(sa.Column("computed_at", UTCDateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("profiles") as batch:
        batch.drop_column("computed_at")
