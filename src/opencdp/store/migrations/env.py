"""Alembic environment: the engine comes from opencdp, never from an alembic.ini."""

from __future__ import annotations

from alembic import context

from opencdp.store.schema import metadata

engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    context.run_migrations()
