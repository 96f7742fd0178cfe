"""Social logins linked to customer accounts (issue 16): `account_logins`, and accounts that
have no password (they sign in through a provider) or no e-mail address (their provider vouched
for none).

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

from opencdp.store.dialect import UTCDateTime

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.alter_column("email", existing_type=sa.String(320), nullable=True)
        batch.alter_column("password_hash", existing_type=sa.String(200), nullable=True)
    op.create_table(
        "account_logins",
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("proof", sa.String(20), nullable=False),
        sa.Column("linked_at", UTCDateTime, nullable=False),
        sa.Column("last_used_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("provider", "subject", name="pk_account_logins"),
    )
    op.create_index("ix_account_logins_account_id", "account_logins", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_account_logins_account_id", table_name="account_logins")
    op.drop_table("account_logins")
    # accounts without a password or an address cannot go back to 0018's schema
    op.execute("DELETE FROM accounts WHERE email IS NULL OR password_hash IS NULL")
    with op.batch_alter_table("accounts") as batch:
        batch.alter_column("password_hash", existing_type=sa.String(200), nullable=False)
        batch.alter_column("email", existing_type=sa.String(320), nullable=False)
