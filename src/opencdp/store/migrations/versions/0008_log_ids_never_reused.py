"""Event ids are never reused: AUTOINCREMENT on SQLite; the log lock row.

Without it SQLite gives a new row max(id)+1, so after an erasure deleted the newest events, new
events got ids at or below the processor's checkpoint and were never processed. The sequence
starts above both the largest id and every checkpoint. PostgreSQL sequences never go back.
The row `settings.log_lock` is what appends and erasures lock; it holds the suppression list's
version (`opencdp.log.lock`).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    suppressed = bind.execute(sa.text("SELECT count(*) FROM suppressions")).scalar_one()
    bind.execute(
        sa.text("INSERT INTO settings (name, value) VALUES ('log_lock', :version)"),
        {"version": "1" if suppressed else "0"},
    )
    if bind.dialect.name != "sqlite":
        return
    with op.batch_alter_table("events", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
        pass
    floor = bind.execute(
        sa.text(
            "SELECT max(coalesce((SELECT max(id) FROM events), 0),"
            " coalesce((SELECT max(last_event_id) FROM processor_state), 0))"
        )
    ).scalar_one()
    bind.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'events'"))
    bind.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', :seq)"), {"seq": floor})


def downgrade() -> None:
    bind = op.get_bind()
    bind.execute(sa.text("DELETE FROM settings WHERE name = 'log_lock'"))
    if bind.dialect.name != "sqlite":
        return
    with op.batch_alter_table("events", recreate="always", table_kwargs={"sqlite_autoincrement": False}):
        pass
