"""Journeys: versioned definitions, per-profile instances and their history.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from opencdp.store.dialect import BigId, Json, UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "journeys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("definition", Json, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("after_event_id", sa.BigInteger, nullable=False),
        sa.Column("next_run_at", UTCDateTime, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "journey_versions",
        sa.Column("journey_id", sa.Integer, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("definition", Json, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
    )
    op.create_table(
        "journey_instances",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("journey_id", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("profile_id", sa.String(36), nullable=False, index=True),
        sa.Column("step", sa.String(100), nullable=False),
        sa.Column("at_step", sa.String(100), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("next_at", UTCDateTime, nullable=False),
        sa.Column("waiting_for", Json, nullable=True),
        sa.Column("steps_done", sa.Integer, nullable=False),
        sa.Column("entered_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Index("ix_journey_instances_status_next_at", "status", "next_at"),
        sa.Index("ix_journey_instances_journey_profile", "journey_id", "profile_id"),
    )
    op.create_table(
        "journey_history",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("instance_id", sa.BigInteger, nullable=False, index=True),
        sa.Column("journey_id", sa.Integer, nullable=False),
        sa.Column("profile_id", sa.String(36), nullable=False, index=True),
        sa.Column("step", sa.String(100), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(50), nullable=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("detail", Json, nullable=False),
        sa.Index("ix_journey_history_journey_step", "journey_id", "step", "action"),
    )


def downgrade() -> None:
    for table in ("journey_history", "journey_instances", "journey_versions", "journeys"):
        op.drop_table(table)
