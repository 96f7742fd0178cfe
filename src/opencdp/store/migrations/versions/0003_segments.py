"""Profile events, computed traits, segments and memberships.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from opencdp.store.dialect import BigId, Json, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("profiles") as batch:
        batch.add_column(sa.Column("computed", Json, nullable=True))
    op.create_table(
        "profile_events",
        sa.Column("event_id", sa.BigInteger, nullable=False),
        sa.Column("profile_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("source_id", sa.Integer, nullable=False),
        sa.Column("properties", Json, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_profile_events"),
    )
    op.create_index("ix_profile_events_profile_ts", "profile_events", ["profile_id", "ts"])
    op.create_index("ix_profile_events_name_ts", "profile_events", ["name", "ts"])
    op.create_table(
        "computed_trait_definitions",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("definition", Json, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_computed_trait_definitions"),
    )
    op.create_table(
        "segments",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("criteria", Json, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_segments"),
        sa.UniqueConstraint("name", name="uq_segments_name"),
    )
    op.create_table(
        "segment_memberships",
        sa.Column("segment_id", sa.Integer, nullable=False),
        sa.Column("profile_id", sa.String(36), nullable=False),
        sa.Column("entered_at", UTCDateTime, nullable=False),
        sa.Column("exited_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("segment_id", "profile_id", name="pk_segment_memberships"),
    )
    op.create_index("ix_segment_memberships_profile_id", "segment_memberships", ["profile_id"])
    op.create_table(
        "segment_transitions",
        sa.Column("id", BigId, autoincrement=True),
        sa.Column("segment_id", sa.Integer, nullable=False),
        sa.Column("profile_id", sa.String(36), nullable=False),
        sa.Column("change", sa.String(8), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_segment_transitions"),
    )
    op.create_index("ix_segment_transitions_segment_at", "segment_transitions", ["segment_id", "at"])


def downgrade() -> None:
    for table in (
        "segment_transitions",
        "segment_memberships",
        "segments",
        "computed_trait_definitions",
        "profile_events",
    ):
        op.drop_table(table)
    with op.batch_alter_table("profiles") as batch:
        batch.drop_column("computed")
