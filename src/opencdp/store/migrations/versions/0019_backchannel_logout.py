"""Client applications may name a back-channel logout URI (OpenID Connect Back-Channel Logout 1.0).

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("account_clients") as batch:
        batch.add_column(sa.Column("backchannel_logout_uri", sa.String(2000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("account_clients") as batch:
        batch.drop_column("backchannel_logout_uri")
