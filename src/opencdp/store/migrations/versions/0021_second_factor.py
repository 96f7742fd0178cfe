"""Customer accounts: the optional TOTP second factor (sealed secret, last accepted step, recovery
codes, sign-ins waiting for their code) and the questions a customer skipped (progressive
profiling). Credentials and page state only (issue 16).

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

from opencdp.store.dialect import UTCDateTime

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # how a session was signed in, for the ID token's `amr` ("pwd otp mfa" after a code)
    op.add_column("account_sessions", sa.Column("amr", sa.String(40), nullable=True))
    op.add_column("account_codes", sa.Column("amr", sa.String(40), nullable=True))
    op.create_table(
        "account_second_factors",
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("confirmed_at", UTCDateTime, nullable=True),
        sa.Column("last_step", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("account_id", name="pk_account_second_factors"),
    )
    op.create_table(
        "account_recovery_codes",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("used_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_account_recovery_codes"),
        sa.UniqueConstraint("code_hash", name="uq_account_recovery_codes_code_hash"),
    )
    op.create_index("ix_account_recovery_codes_account_id", "account_recovery_codes", ["account_id"])
    op.create_table(
        "account_challenges",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("method", sa.String(40), nullable=False),
        sa.Column("next_url", sa.Text, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_account_challenges"),
    )
    op.create_index("ix_account_challenges_account_id", "account_challenges", ["account_id"])
    op.create_table(
        "account_skipped_questions",
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("question", sa.String(40), nullable=False),
        sa.Column("skipped_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "question", name="pk_account_skipped_questions"),
    )


def downgrade() -> None:
    op.drop_table("account_skipped_questions")
    op.drop_index("ix_account_challenges_account_id", table_name="account_challenges")
    op.drop_table("account_challenges")
    op.drop_index("ix_account_recovery_codes_account_id", table_name="account_recovery_codes")
    op.drop_table("account_recovery_codes")
    op.drop_table("account_second_factors")
    op.drop_column("account_codes", "amr")
    op.drop_column("account_sessions", "amr")
