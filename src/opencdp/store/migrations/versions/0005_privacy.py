"""Privacy: consent, suppression list, settings, audit log, retention per source.

Revision ID: 0005
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from opencdp.store.dialect import BigId, Json, UTCDateTime

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("profiles") as batch:
        batch.add_column(sa.Column("consent", Json, nullable=True))
        batch.add_column(sa.Column("consent_meta", Json, nullable=True))
    with op.batch_alter_table("sources") as batch:
        batch.add_column(sa.Column("retention_days", sa.Integer, nullable=True))
    op.create_table(
        "consent_purposes",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_consent_purposes"),
    )
    op.create_table(
        "consent_history",
        sa.Column("event_id", sa.BigInteger, nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("profile_id", sa.String(36), nullable=False),
        sa.Column("granted", sa.Boolean, nullable=False),
        sa.Column("version", sa.String(100), nullable=True),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("source_id", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("event_id", "purpose", name="pk_consent_history"),
    )
    op.create_index("ix_consent_history_profile_id", "consent_history", ["profile_id"])
    op.create_table(
        "suppressions",
        sa.Column("identifier_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("identifier_hash", name="pk_suppressions"),
    )
    op.create_table(
        "settings",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_settings"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("target_type", sa.String(50), nullable=True),
        sa.Column("target_id", sa.String(200), nullable=True),
        sa.Column("detail", Json, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    now = sa.func.current_timestamp()
    purposes = sa.table(
        "consent_purposes", sa.column("name"), sa.column("description"), sa.column("created_at")
    )
    op.execute(
        purposes.insert().from_select(
            ["name", "description", "created_at"],
            sa.select(sa.literal("analytics"), sa.literal("Measuring and improving our site and shop"), now),
        )
    )
    for name, description in (
        ("email_marketing", "Marketing e-mails and newsletters"),
        ("sms", "Marketing text messages"),
        ("personalisation", "Personalised content and offers"),
        ("advertising", "Audiences for advertising platforms"),
    ):
        op.execute(
            purposes.insert().from_select(
                ["name", "description", "created_at"],
                sa.select(sa.literal(name), sa.literal(description), now),
            )
        )


def downgrade() -> None:
    for table in ("audit_log", "settings", "suppressions", "consent_history", "consent_purposes"):
        op.drop_table(table)
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("retention_days")
    with op.batch_alter_table("profiles") as batch:
        batch.drop_column("consent_meta")
        batch.drop_column("consent")
