"""The schema: migrations produce exactly the tables the code declares, on both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from opencdp.config import Settings
from opencdp.store.database import create_engine, is_current, migrate
from opencdp.store.dialect import UTCDateTime
from opencdp.store.schema import metadata
from opencdp.system import OpenCDP


def test_migrations_match_the_declared_schema(cdp: OpenCDP) -> None:
    with cdp.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert is_current(cdp.engine)


def test_migrate_twice_is_harmless(settings: Settings) -> None:
    engine = create_engine(settings)
    migrate(engine)
    migrate(engine)
    assert is_current(engine)
    engine.dispose()


def test_utc_datetimes_round_trip(cdp: OpenCDP) -> None:
    table = sa.Table(
        "t_times", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("at", UTCDateTime)
    )
    table.create(cdp.engine)
    try:
        berlin = datetime(2026, 7, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
        with cdp.engine.begin() as conn:
            conn.execute(table.insert(), [{"at": berlin}])
            got = conn.execute(sa.select(table.c.at)).scalar_one()
        assert got == berlin
        assert got.tzinfo is not None and got.utcoffset() == timedelta(0)
        with pytest.raises(sa.exc.StatementError), cdp.engine.begin() as conn:
            conn.execute(table.insert(), [{"at": datetime(2026, 1, 1)}])
    finally:
        table.drop(cdp.engine)
    assert datetime.now(UTC).tzinfo is UTC


def test_sqlite_runs_in_wal_mode_with_durable_commits(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = create_engine(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'x.db'}"))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()
