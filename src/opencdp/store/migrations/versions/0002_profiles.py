"""Identity graph and profiles (derived state).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from opencdp.store.dialect import BigId, Json, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _pair() -> list[sa.Column]:
    return [
        sa.Column("left_type", sa.String(64), nullable=False),
        sa.Column("left_value", sa.String(256), nullable=False),
        sa.Column("right_type", sa.String(64), nullable=False),
        sa.Column("right_value", sa.String(256), nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(256), nullable=False),
        sa.Column("source_id", sa.Integer, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "identities",
        sa.Column("id", BigId, autoincrement=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column("profile_id", sa.String(36), nullable=True),
        sa.Column("first_event_id", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_identities"),
        sa.UniqueConstraint("type", "value", name="uq_identities_type_value"),
    )
    op.create_index("ix_identities_profile_id", "identities", ["profile_id"])
    op.create_table(
        "identity_edges",
        sa.Column("id", BigId, autoincrement=True),
        sa.Column("signature", sa.String(64), nullable=False),
        sa.Column("event_id", sa.BigInteger, nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(256), nullable=False),
        sa.Column("source_id", sa.Integer, nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_identity_edges"),
        sa.UniqueConstraint("signature", name="uq_identity_edges_signature"),
    )
    op.create_table(
        "identity_edge_members",
        sa.Column("edge_id", sa.BigInteger, nullable=False),
        sa.Column("identity_id", sa.BigInteger, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("edge_id", "identity_id", name="pk_identity_edge_members"),
    )
    op.create_index("ix_identity_edge_members_identity_id", "identity_edge_members", ["identity_id"])
    op.create_table(
        "event_owners",
        sa.Column("event_id", sa.BigInteger, nullable=False),
        sa.Column("identity_id", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_event_owners"),
    )
    op.create_index("ix_event_owners_identity_id", "event_owners", ["identity_id"])
    op.create_table(
        "profiles",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("merged_into", sa.String(36), nullable=True),
        sa.Column("anchor", Json, nullable=False),
        sa.Column("last_edge_key", Json, nullable=False),
        sa.Column("identity_counts", Json, nullable=False),
        sa.Column("traits", Json, nullable=False),
        sa.Column("trait_meta", Json, nullable=False),
        sa.Column("event_counts", Json, nullable=False),
        sa.Column("first_seen", UTCDateTime, nullable=True),
        sa.Column("last_seen", UTCDateTime, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_profiles"),
    )
    op.create_index("ix_profiles_merged_into", "profiles", ["merged_into"])
    op.create_table(
        "identity_links",
        sa.Column("id", BigId, autoincrement=True),
        sa.Column("profile_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.BigInteger, nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        *_pair(),
        sa.PrimaryKeyConstraint("id", name="pk_identity_links"),
    )
    op.create_index("ix_identity_links_profile_id", "identity_links", ["profile_id"])
    op.create_table(
        "identity_conflicts",
        sa.Column("id", BigId, autoincrement=True),
        sa.Column("event_id", sa.BigInteger, nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        *_pair(),
        sa.PrimaryKeyConstraint("id", name="pk_identity_conflicts"),
        sa.UniqueConstraint(
            "event_id",
            "left_type",
            "left_value",
            "right_type",
            "right_value",
            name="uq_identity_conflicts_event",
        ),
    )
    op.create_table(
        "processor_state",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("last_event_id", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_processor_state"),
    )


def downgrade() -> None:
    for table in (
        "processor_state",
        "identity_conflicts",
        "identity_links",
        "profiles",
        "event_owners",
        "identity_edge_members",
        "identity_edges",
        "identities",
    ):
        op.drop_table(table)
