"""Customer accounts and the OpenID Connect provider: logins, SSO sessions, client applications,
authorization codes, tokens and signing keys (issue 16). Credentials and sessions only: what a
customer tells the brand reaches their profile as events.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

from opencdp.store.dialect import Json, UTCDateTime

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("email_verified_at", UTCDateTime, nullable=True),
        sa.Column("password_changed_at", UTCDateTime, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.UniqueConstraint("email", name="uq_accounts_email"),
    )
    op.create_table(
        "account_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("sid", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("auth_time", UTCDateTime, nullable=False),
        sa.Column("last_seen_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_account_sessions"),
        sa.UniqueConstraint("sid", name="uq_account_sessions_sid"),
    )
    op.create_index("ix_account_sessions_account_id", "account_sessions", ["account_id"])
    op.create_table(
        "account_clients",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=True),
        sa.Column("redirect_uris", Json, nullable=False),
        sa.Column("post_logout_redirect_uris", Json, nullable=False),
        sa.Column("scopes", Json, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("client_id", name="pk_account_clients"),
    )
    op.create_table(
        "account_codes",
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("sid", sa.String(64), nullable=False),
        sa.Column("redirect_uri", sa.Text, nullable=False),
        sa.Column("scope", sa.String(400), nullable=False),
        sa.Column("nonce", sa.String(400), nullable=True),
        sa.Column("code_challenge", sa.String(200), nullable=True),
        sa.Column("code_challenge_method", sa.String(10), nullable=True),
        sa.Column("auth_time", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("code_hash", name="pk_account_codes"),
    )
    op.create_table(
        "account_tokens",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("access_hash", sa.String(64), nullable=False),
        sa.Column("refresh_hash", sa.String(64), nullable=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("sid", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(400), nullable=False),
        sa.Column("issued_at", UTCDateTime, nullable=False),
        sa.Column("access_expires_at", UTCDateTime, nullable=False),
        sa.Column("refresh_expires_at", UTCDateTime, nullable=True),
        sa.Column("revoked", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_account_tokens"),
        sa.UniqueConstraint("access_hash", name="uq_account_tokens_access_hash"),
        sa.UniqueConstraint("refresh_hash", name="uq_account_tokens_refresh_hash"),
    )
    op.create_index("ix_account_tokens_account_id", "account_tokens", ["account_id"])
    op.create_index("ix_account_tokens_sid", "account_tokens", ["sid"])
    op.create_table(
        "account_signing_keys",
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("algorithm", sa.String(10), nullable=False),
        sa.Column("public_jwk", Json, nullable=False),
        sa.Column("private_key", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("retired_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("kid", name="pk_account_signing_keys"),
    )


def downgrade() -> None:
    op.drop_table("account_signing_keys")
    op.drop_index("ix_account_tokens_sid", table_name="account_tokens")
    op.drop_index("ix_account_tokens_account_id", table_name="account_tokens")
    op.drop_table("account_tokens")
    op.drop_table("account_codes")
    op.drop_table("account_clients")
    op.drop_index("ix_account_sessions_account_id", table_name="account_sessions")
    op.drop_table("account_sessions")
    op.drop_table("accounts")
