"""Sources, API keys and the event log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from opencdp.store.dialect import BigId, Json, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("write_key_hash", sa.String(64), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sources"),
        sa.UniqueConstraint("name", name="uq_sources_name"),
        sa.UniqueConstraint("write_key_hash", name="uq_sources_write_key_hash"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_table(
        "events",
        sa.Column("id", BigId, autoincrement=True),
        sa.Column("source_id", sa.Integer, nullable=False),
        sa.Column("message_id", sa.String(256), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("event", sa.Text, nullable=True),
        sa.Column("user_id", sa.Text, nullable=True),
        sa.Column("anonymous_id", sa.Text, nullable=True),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("sent_at", UTCDateTime, nullable=True),
        sa.Column("original_timestamp", UTCDateTime, nullable=True),
        sa.Column("timestamp", UTCDateTime, nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], name="fk_events_source_id_sources"),
        sa.UniqueConstraint("source_id", "message_id", name="uq_events_source_message"),
    )


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("api_keys")
    op.drop_table("sources")
