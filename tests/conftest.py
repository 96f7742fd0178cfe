"""Fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL tests use OPENCDP_TEST_POSTGRES_URL (default: the local server's `test` database)
and are skipped, with the reason, only when no server answers there. Each test session works in
its own freshly created database so that runs never see each other's rows; with pytest-xdist
(`-n`, on by default in pyproject.toml) every worker is a session of its own, so each worker has
its own database, temporary directories and server ports (tests/serverproc.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import structlog
from fastapi.testclient import TestClient

from opencdp.access.keys import create_api_key, create_source
from opencdp.api.app import create_app
from opencdp.config import Settings
from opencdp.privacy.consent import seed_default_purposes
from opencdp.store.database import create_engine, migrate
from opencdp.store.schema import metadata
from opencdp.system import OpenCDP

POSTGRES_ADMIN_URL = os.environ.get(
    "OPENCDP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_reason() -> str | None:
    try:
        engine = sa.create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:
        return f"no PostgreSQL server reachable at {POSTGRES_ADMIN_URL} ({type(exc).__name__})"
    return None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated once, dropped at the end."""
    reason = _postgres_reason()
    if reason:
        pytest.skip(reason)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"opencdp_test_{worker}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(Settings(data_dir=Path("/nonexistent"), database_url=url))
    migrate(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first (real servers, then CLI subprocesses and marked `slow`), in their
    order otherwise: parallel workers (pytest-xdist) then start them at once and end together,
    instead of one worker running a minutes-long test alone at the end."""

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("server"):
            return 0
        if item.get_closest_marker("slow") or "env_for" in getattr(item, "fixturenames", ()):
            return 1
        return 2

    items.sort(key=rank)


@pytest.fixture(autouse=True)
def _structlog_config() -> Iterator[None]:
    """A command run in-process (CliRunner on opencdp.cli.main) configures structlog for the whole
    process, at OPENCDP_LOG_LEVEL=WARNING in these tests; put back what was there, so that no test
    depends on which tests ran before it in its process (xdist, -k and -x all change that)."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def _truncate_all(url: str) -> None:
    engine = sa.create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'opencdp.db'}"
    url: str = request.getfixturevalue("postgres_url")
    _truncate_all(url)
    engine = sa.create_engine(url)
    seed_default_purposes(engine)
    engine.dispose()
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=database_url, key_cache_seconds=0)


@pytest.fixture
def cdp(settings: Settings) -> Iterator[OpenCDP]:
    system = OpenCDP(settings)
    system.start()
    yield system
    system.stop()
    system.engine.dispose()


@pytest.fixture
def system(settings: Settings) -> Iterator[OpenCDP]:
    """The database, with nothing running in the background: the test drives processing and
    delivery itself."""
    quiet = OpenCDP(settings, process=False, deliver=False)
    yield quiet
    quiet.engine.dispose()


@pytest.fixture
def client(cdp: OpenCDP) -> Iterator[TestClient]:
    with TestClient(create_app(cdp)) as test_client:
        yield test_client


@pytest.fixture
def write_key(cdp: OpenCDP) -> str:
    return create_source(cdp.engine, "web")[1]


@pytest.fixture
def admin_key(cdp: OpenCDP) -> str:
    return create_api_key(cdp.engine, "admin")[1]


@pytest.fixture
def env_for(settings: Settings) -> dict[str, str]:
    """Environment for a subprocess (CLI or server) pointed at this test's database."""
    env = dict(os.environ)
    env.update(
        OPENCDP_DATABASE_URL=settings.database_url,
        OPENCDP_DATA_DIR=str(settings.data_dir),
        OPENCDP_KEY_CACHE_SECONDS="0",
        OPENCDP_LOG_LEVEL="WARNING",
        # metric files of servers and their children stay in the test's directory, even after kill -9
        PROMETHEUS_MULTIPROC_DIR=str(settings.data_dir / "prometheus"),
    )
    return env
