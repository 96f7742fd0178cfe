"""Real-time personalisation: experiences (versioned definitions) and imported weather.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

from opencdp.store.dialect import Json, UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiences",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("placement", sa.String(100), nullable=False, index=True),
        sa.Column("definition", Json, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "weather",
        sa.Column("region", sa.String(64), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("condition", sa.String(32), nullable=False),
        sa.Column("temperature_c", sa.Float, nullable=True),
        sa.Column("imported_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("weather")
    op.drop_table("experiences")
