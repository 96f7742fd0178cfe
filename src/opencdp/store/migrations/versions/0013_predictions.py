"""Predictions: fitted models and the predicted traits they write on profiles.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

from opencdp.store.dialect import Json, UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("profiles") as batch:
        batch.add_column(sa.Column("predicted", Json, nullable=True))
        batch.add_column(sa.Column("predicted_meta", Json, nullable=True))
    op.create_table(
        "prediction_models",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("options", Json, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("trained_at", UTCDateTime, nullable=True),
        sa.Column("window", Json, nullable=True),
        sa.Column("features", Json, nullable=True),
        sa.Column("params", Json, nullable=True),
        sa.Column("quality", Json, nullable=True),
        sa.Column("traits", Json, nullable=True),
        sa.Column("scored_at", UTCDateTime, nullable=True),
        sa.Column("scored_count", sa.Integer, nullable=False),
        sa.Column("refit_days", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("prediction_models")
    with op.batch_alter_table("profiles") as batch:
        batch.drop_column("predicted_meta")
        batch.drop_column("predicted")
