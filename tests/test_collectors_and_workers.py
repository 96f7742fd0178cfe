"""Two collectors and two workers on one PostgreSQL database, the same people through both.

Every acknowledged event is in the log exactly once, every event is processed exactly once
(one owner, one timeline row, the checkpoint at the newest event), and the profiles equal a
from-scratch rebuild by a single process. The longer soak with an import running as well is
tests/test_under_load.py; this one stays short enough for every run of the suite.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from opencdp.config import Settings
from opencdp.process.processor import PROCESSOR, reset_derived_state
from opencdp.store.database import create_engine
from opencdp.store.schema import event_owners, events, processor_state, profile_events, profiles
from tests.identity_helpers import process, world
from tests.load import Senders, shop_message, wait_until_processed
from tests.serverproc import Server, opencdp

pytestmark = pytest.mark.server

USERS = 200  # few enough that every user's events go through both collectors
EVENTS = 2000  # acknowledged events to send, at least
SEND_SECONDS_MAX = 20.0


def _profile_rows(engine: sa.Engine) -> dict[str, tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(profiles.c.id, profiles.c.merged_into, profiles.c.traits, profiles.c.event_counts)
        )
        return {r.id: (r.merged_into, r.traits, r.event_counts) for r in rows}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_collectors_and_two_workers_process_every_event_exactly_once(
    env_for: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    env = {**env_for, "OPENCDP_PROCESS_IN_SERVER": "0", "OPENCDP_RATE_LIMIT": "off"}
    write_key = opencdp("sources", "create", "web", env=env).strip()
    servers: list[Server] = []
    workers: list[subprocess.Popen[bytes]] = []
    engine = create_engine(settings)
    try:
        for i in range(2):  # first: their start-up overlaps the servers'
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "opencdp", "worker"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=(tmp_path / f"worker{i}.log").open("wb"),
                )
            )
        servers += [Server(env, tmp_path / f"server{i}.log") for i in range(2)]
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(Server.start, servers))
        # Two threads per collector, each drawing from the same users: a person's identify
        # (user id + device + e-mail) and events arrive through both collectors at once.
        senders = Senders(
            [s.url for s in servers], write_key, lambda rng: shop_message(rng, USERS), rate=400
        ).start()
        deadline = time.monotonic() + SEND_SECONDS_MAX
        while len(senders.acknowledged) < EVENTS and time.monotonic() < deadline:
            time.sleep(0.2)
        senders.stop()
        wait_until_processed(engine, seconds=60)
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(30)
        for server in servers:
            server.stop()

    assert not senders.failures, senders.failures[:3]
    assert len(senders.acknowledged) >= EVENTS
    with engine.connect() as conn:
        stored = [r[0] for r in conn.execute(sa.select(events.c.message_id))]
        event_ids = {r[0] for r in conn.execute(sa.select(events.c.id))}
        owned = [r[0] for r in conn.execute(sa.select(event_owners.c.event_id))]
        timeline = [r[0] for r in conn.execute(sa.select(profile_events.c.event_id))]
        checkpoint = conn.execute(
            sa.select(processor_state.c.last_event_id).where(processor_state.c.name == PROCESSOR)
        ).scalar_one()
        live = sa.select(profiles.c.event_counts).where(profiles.c.merged_into.is_(None))
        counted = sum(sum(row[0].values()) for row in conn.execute(live))
    # The log: every acknowledged event, once, and nothing else (no failures, so nothing unacknowledged).
    assert len(stored) == len(set(stored)), "a messageId is in the log twice"
    assert set(stored) == senders.acknowledged
    # Processing: every event (each has identifiers) owned once, on one timeline once, counted once.
    assert checkpoint == max(event_ids)
    assert len(owned) == len(set(owned)) and set(owned) == event_ids
    assert len(timeline) == len(set(timeline)) and set(timeline) == event_ids
    assert counted == len(event_ids)
    # Concurrent live processing resolves the same world as one process from scratch.
    live_world, live_profiles = world(engine), _profile_rows(engine)
    reset_derived_state(engine)
    process(engine)
    assert _profile_rows(engine) == live_profiles
    assert world(engine) == live_world
    engine.dispose()
