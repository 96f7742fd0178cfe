"""Probabilistic matching and reversible merges: rejected links, match models, candidate pairs.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

from opencdp.store.dialect import BigId, Json, UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _pair() -> list[sa.Column]:
    return [
        sa.Column("left_type", sa.String(64), nullable=False),
        sa.Column("left_value", sa.String(256), nullable=False),
        sa.Column("right_type", sa.String(64), nullable=False),
        sa.Column("right_value", sa.String(256), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "identity_rejections",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        *_pair(),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("created_by", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("applied_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint(
            "left_type", "left_value", "right_type", "right_value", name="uq_identity_rejections_pair"
        ),
    )
    op.create_table(
        "match_models",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("config", Json, nullable=False),
        sa.Column("model", Json, nullable=True),
        sa.Column("trained_at", UTCDateTime, nullable=True),
        sa.Column("trained_records", sa.Integer, nullable=True),
        sa.Column("last_run_at", UTCDateTime, nullable=True),
        sa.Column("last_summary", Json, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "match_candidates",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(100), nullable=False),
        *_pair(),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("match_weight", sa.Float, nullable=False),
        sa.Column("comparisons", Json, nullable=False),
        sa.Column("explanation", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("scored_at", UTCDateTime, nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decided_at", UTCDateTime, nullable=True),
        sa.Column("event_id", sa.BigInteger, nullable=True),
        sa.UniqueConstraint(
            "model", "left_type", "left_value", "right_type", "right_value", name="uq_match_candidates_pair"
        ),
    )
    op.create_index("ix_match_candidates_status", "match_candidates", ["status"])


def downgrade() -> None:
    op.drop_index("ix_match_candidates_status", "match_candidates")
    op.drop_table("match_candidates")
    op.drop_table("match_models")
    op.drop_table("identity_rejections")
