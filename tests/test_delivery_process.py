"""Activation through a real `opencdp serve` (its child process processes and delivers) and a
crash in the middle of sending: SIGKILL while requests are in flight loses no delivery."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from opencdp.access.keys import create_source
from opencdp.activation.destinations import DestinationSpec, create
from opencdp.activation.forwarding import create_rule
from opencdp.config import Settings
from opencdp.store.database import create_engine, migrate
from opencdp.store.schema import deliveries
from tests.receivers import Receiver
from tests.serverproc import Server

pytestmark = pytest.mark.server


def _wait(check: object, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_serve_forwards_and_a_kill_mid_delivery_loses_nothing(
    env_for: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    env = {**env_for, "OPENCDP_DELIVERY_LEASE_SECONDS": "1"}
    receiver = Receiver(delay=0.5).start()
    engine = create_engine(settings)
    migrate(engine)
    write_key = create_source(engine, "shop")[1]
    with engine.begin() as conn:
        dest = create(
            conn, settings, DestinationSpec("hook", "webhook", {"url": receiver.url, "concurrency": 2})
        )
        create_rule(conn, "orders", dest, {"events": ["Order Completed"]})
    auth = {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
    server = Server(env, tmp_path / "server.log").start()
    try:
        sent = [f"order-{n}" for n in range(12)]
        with httpx.Client(base_url=server.url, headers=auth, timeout=5) as http:
            for n, mid in enumerate(sent):
                event = {"type": "track", "userId": f"u{n}", "event": "Order Completed", "messageId": mid}
                assert http.post("/v1/track", json=event).status_code == 200
            assert (
                http.post("/v1/track", json={"type": "track", "userId": "x", "event": "Other"}).status_code
                == 200
            )
        # requests in flight (the receiver answers slowly): kill serve and its child, as in a crash
        assert _wait(lambda: receiver.started >= 2), (tmp_path / "server.log").read_text()
        server.kill()
        answered = len(receiver.received)
        assert answered < len(sent)
        receiver.delay = 0
        server = Server(env, tmp_path / "server.log").start()

        def all_delivered() -> bool:
            with engine.connect() as conn:
                done = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(deliveries)
                    .where(deliveries.c.status == "delivered")
                ).scalar_one()
            return bool(done == len(sent))

        assert _wait(all_delivered, 60), (tmp_path / "server.log").read_text()
    finally:
        server.stop()
        receiver.stop()
        engine.dispose()
    arrived = {body["event"]["messageId"]: body["idempotency_key"] for body in receiver.bodies()}
    assert sorted(arrived) == sorted(sent)  # every one, and not the event the rule does not match
    keys = receiver.idempotency_keys()
    # a request cut off by the crash may have arrived twice: always under the same key
    assert set(keys) == set(arrived.values()) and len(keys) >= len(sent)
