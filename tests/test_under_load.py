"""Real processes under load: two collectors, workers and an import on one database.

- Every acknowledged event is stored once and processed exactly once, and the profiles equal a
  single-worker rebuild (PostgreSQL, where several processes write at once).
- An erasure while the person's events keep arriving from two servers and an import is complete:
  afterwards no table (PostgreSQL) or database file (SQLite, WAL included) holds their identifiers,
  and a rebuild brings nothing back.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from opencdp.config import Settings
from opencdp.process.processor import reset_derived_state
from opencdp.store.database import create_engine
from opencdp.store.schema import event_owners, events, metadata, profiles
from tests.identity_helpers import process, world
from tests.load import Importer, Senders, shop_message, wait_until_processed
from tests.serverproc import Server, opencdp

#: 30 s of load, then processing it all; with other tests running beside it (xdist) it needs headroom.
pytestmark = [pytest.mark.server, pytest.mark.timeout(600)]

#: Long enough for many interleavings; override for a longer soak.
LOAD_SECONDS = float(os.environ.get("OPENCDP_TEST_LOAD_SECONDS", "30"))


def _engine(settings: Settings) -> sa.Engine:
    return create_engine(settings)


def _contacts(users: int) -> Any:
    def rows(run: int) -> list[str]:
        rng = random.Random(run)
        return [f"C{n},u{n}@example.com,Name{n}" for n in rng.sample(range(users), 300)]

    return rows


def test_collectors_workers_and_an_import_process_every_event_exactly_once(
    env_for: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("several processes writing and processing at once: the PostgreSQL deployment")
    env = {**env_for, "OPENCDP_PROCESS_IN_SERVER": "0", "OPENCDP_RATE_LIMIT": "off"}
    opencdp("migrate", env=env)
    write_key = opencdp("sources", "create", "web", env=env).strip()
    servers = [Server(env, tmp_path / f"server{i}.log").start() for i in range(2)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "opencdp", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"worker{i}.log").open("wb"),
        )
        for i in range(2)
    ]
    users = 3000
    senders = Senders([s.url for s in servers], write_key, lambda rng: shop_message(rng, users), rate=150)
    importer = Importer(env, tmp_path, _contacts(users))
    engine = _engine(settings)
    try:
        senders.start()
        importer.start()
        time.sleep(LOAD_SECONDS)
        senders.stop()
        importer.stop()
        wait_until_processed(engine)
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(30)
        for server in servers:
            server.stop()
    assert not senders.failures, senders.failures[:3]
    assert not importer.errors, importer.errors[:1]
    assert importer.runs >= 1 and len(senders.acknowledged) > 2000
    with engine.connect() as conn:
        stored = [r[0] for r in conn.execute(sa.select(events.c.message_id))]
        owners = conn.execute(sa.select(sa.func.count()).select_from(event_owners)).scalar_one()
        unowned = conn.execute(
            sa.select(sa.func.count())
            .select_from(events)
            .where(~events.c.id.in_(sa.select(event_owners.c.event_id)))
        ).scalar_one()
        counted = sum(
            sum(row[0].values())
            for row in conn.execute(
                sa.select(profiles.c.event_counts).where(profiles.c.merged_into.is_(None))
            )
        )
    assert len(stored) == len(set(stored))
    assert senders.acknowledged <= set(stored), "an acknowledged event is missing from the log"
    assert unowned == 0, f"{unowned} events were never processed"
    assert owners == len(stored) == counted, "an event was processed twice or not at all"
    live = world(engine)
    reset_derived_state(engine)
    process(engine)
    assert world(engine) == live
    engine.dispose()


PERSON = {"user_id": "user-erased-9", "email": "erased.nine@example.org", "device": "anon-erased-9"}


def _with_the_person(users: int) -> Any:
    def make(rng: random.Random) -> dict[str, Any]:
        if rng.random() < 0.1:
            message = rng.choice(
                [
                    {"type": "page", "anonymousId": PERSON["device"], "name": "Shoes"},
                    {
                        "type": "identify",
                        "userId": PERSON["user_id"],
                        "anonymousId": PERSON["device"],
                        "traits": {"email": PERSON["email"], "first_name": "Quirinus"},
                    },
                    {"type": "track", "userId": PERSON["user_id"], "event": "Order Completed"},
                    {
                        "type": "track",
                        "anonymousId": "x",
                        "event": "E",
                        "context": {"traits": {"email": PERSON["email"]}},
                    },
                ]
            )
            return {**message, "messageId": f"p-{rng.random()}"}
        return shop_message(rng, users)

    return make


def _person_rows(users: int) -> Any:
    def rows(run: int) -> list[str]:
        return [*_contacts(users)(run)[:100], f"C-erased-{run},{PERSON['email']},Quirinus"]

    return rows


def _traces(engine: sa.Engine, settings: Settings) -> list[str]:
    """Which of the person's values are anywhere: every table, and on SQLite the files themselves."""
    values = [*PERSON.values(), "quirinus", "c-erased-"]
    with engine.connect() as conn:
        text = "\n".join(
            str(row) for table in metadata.sorted_tables for row in conn.execute(sa.select(table))
        ).lower()
    found = [v for v in values if v.lower() in text]
    if settings.database_url.startswith("sqlite"):
        path = Path(settings.database_url.removeprefix("sqlite:///"))
        for file in (path, path.with_name(path.name + "-wal")):
            content = file.read_bytes().lower() if file.exists() else b""
            found += [f"file {file.name}:{v}" for v in values if v.lower().encode() in content]
    return found


def test_an_erasure_under_load_is_complete_and_survives_rebuild(
    env_for: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    env = {**env_for, "OPENCDP_RATE_LIMIT": "off"}  # the default: each server processes too
    opencdp("migrate", env=env)
    write_key = opencdp("sources", "create", "web", env=env).strip()
    admin_key = opencdp("keys", "create", "--role", "admin", env=env).strip()
    servers = [Server(env, tmp_path / f"server{i}.log").start() for i in range(2)]
    users = 1000
    senders = Senders([s.url for s in servers], write_key, _with_the_person(users), rate=60, seed=7)
    importer = Importer(env, tmp_path, _person_rows(users))
    engine = _engine(settings)
    try:
        senders.start()
        importer.start()
        deadline = time.monotonic() + 30
        while importer.runs < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)
        erased = httpx.post(
            servers[0].url + "/api/privacy/erase",
            json={"type": "email", "value": PERSON["email"]},
            headers={"Authorization": f"Bearer {admin_key}"},
            timeout=120,
        )
        assert erased.status_code == 200, erased.text
        assert erased.json()["events_deleted"] > 0
        time.sleep(4)  # the person keeps sending, through both servers and the import
        senders.stop()
        importer.stop()
        wait_until_processed(engine)
    finally:
        for server in servers:
            server.stop()
    assert not senders.failures, senders.failures[:3]
    assert not importer.errors, importer.errors[:1]
    engine.dispose()
    engine = _engine(settings)
    assert _traces(engine, settings) == []
    opencdp("rebuild", "--yes", env=env)
    assert _traces(engine, settings) == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(profiles)).scalar_one() > 100
    engine.dispose()
