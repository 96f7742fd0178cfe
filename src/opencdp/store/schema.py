"""The tables. Changes go through an Alembic migration in `store/migrations/versions`."""

from __future__ import annotations

import sqlalchemy as sa

from opencdp.store.dialect import BigId, Json, UTCDateTime

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("write_key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

#: The event log: the source of truth. Rows are immutable; `id` gives the global order in
#: which processors consume it.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), nullable=False),
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
    sa.UniqueConstraint("source_id", "message_id", name="uq_events_source_message"),
)
