"""Activation: destinations, event forwarding, audience syncs and the outbox of deliveries.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from opencdp.store.dialect import BigId, Json, UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "destinations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("config", Json, nullable=False),
        sa.Column("secret", sa.Text, nullable=True),
        sa.Column("secret_env", sa.String(200), nullable=True),
        sa.Column("purpose", sa.String(64), nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("rate_per_second", sa.Float, nullable=True),
        sa.Column("max_retry_seconds", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("open_until", UTCDateTime, nullable=True),
        sa.Column("next_run_at", UTCDateTime, nullable=True),
        sa.Column("last_success_at", UTCDateTime, nullable=True),
        sa.Column("last_error_at", UTCDateTime, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_table(
        "forwarding_rules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("destination_id", sa.Integer, nullable=False, index=True),
        sa.Column("filter", Json, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("after_event_id", sa.BigInteger, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "audience_syncs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("segment_id", sa.Integer, nullable=False, index=True),
        sa.Column("destination_id", sa.Integer, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("backfilled_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint("segment_id", "destination_id", name="uq_audience_syncs_segment_destination"),
    )
    op.create_table(
        "audience_sync_members",
        sa.Column("sync_id", sa.Integer, primary_key=True),
        sa.Column("profile_id", sa.String(36), primary_key=True, index=True),
        sa.Column("member", sa.Boolean, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("destination_id", sa.Integer, nullable=False),
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("profile_id", sa.String(36), nullable=True, index=True),
        sa.Column("event_id", sa.BigInteger, nullable=True),
        sa.Column("subject", Json, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("lease_until", UTCDateTime, nullable=True),
        sa.Column("claim", sa.String(32), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Index("ix_deliveries_destination_status_due", "destination_id", "status", "next_attempt_at"),
    )
    op.create_table(
        "activation_marks",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "activation_marks",
        "deliveries",
        "audience_sync_members",
        "audience_syncs",
        "forwarding_rules",
        "destinations",
    ):
        op.drop_table(table)
