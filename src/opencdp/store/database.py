"""Opening the database: engine creation, per-connection setup and migrations to the latest schema."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from opencdp.config import Settings
from opencdp.store.dialect import engine_options, on_connect

MIGRATIONS = Path(__file__).parent / "migrations"


def create_engine(settings: Settings) -> sa.Engine:
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(settings.database_url, **engine_options(settings.database_url))
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", lambda conn, _rec: on_connect(conn, settings.sqlite_synchronous))
    return engine


def _alembic_config(engine: sa.Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the latest revision; safe to call on every start."""
    command.upgrade(_alembic_config(engine), "head")


def is_current(engine: sa.Engine) -> bool:
    head = ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == head


def open_database(settings: Settings, run_migrations: bool = True) -> sa.Engine:
    engine = create_engine(settings)
    if run_migrations:
        migrate(engine)
    return engine
