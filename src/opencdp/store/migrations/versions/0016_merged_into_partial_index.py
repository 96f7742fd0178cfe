"""`profiles.merged_into` indexed only where it is set (the redirects of merged profiles).

The full index let SQLite's planner (no statistics) answer "merged_into IS NULL AND id IN (…)" by
walking every live profile through it instead of looking up the listed ids: a segment refreshed for
the 300 profiles of a chunk read all 20,000 profiles (100 ms instead of 2 ms). Lookups by the
profile something was merged into (`merged_into = ?`) imply NOT NULL and still use the index.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

SET = sa.text("merged_into IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_profiles_merged_into", table_name="profiles")
    op.create_index(
        "ix_profiles_merged_into", "profiles", ["merged_into"], sqlite_where=SET, postgresql_where=SET
    )


def downgrade() -> None:
    op.drop_index("ix_profiles_merged_into", table_name="profiles")
    op.create_index("ix_profiles_merged_into", "profiles", ["merged_into"])
