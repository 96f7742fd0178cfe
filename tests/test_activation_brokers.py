"""Activation end to end through the real brokers, on SQLite and PostgreSQL: events processed into
outbox rows, sent by the delivery worker to NATS JetStream and RabbitMQ, and read back there.

The driver tests (test_driver_nats, test_driver_rabbitmq) cover each driver's edge cases; these
show the whole path: the idempotency key of a delivery is the broker's message id, a delivery sent
again after a lost acknowledgement is de-duplicated by JetStream, an audience's entries and exits
arrive in order, and a seed scenario (switch channel) reaches an SMS gateway's queue.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import orjson
import pytest
import sqlalchemy as sa
from yarl import URL

from opencdp.activation.audiences import create_sync
from opencdp.activation.destinations import DestinationSpec, create
from opencdp.activation.forwarding import create_rule
from opencdp.activation.worker import DeliveryWorker
from opencdp.journeys import store as journey_store
from opencdp.journeys.runner import JourneyRunner
from opencdp.segments.store import save as save_segment
from opencdp.store.schema import deliveries
from opencdp.system import OpenCDP
from tests.broker_helpers import delete_queue, delete_stream, require_broker, stream_messages
from tests.identity_helpers import log_messages, process, track
from tests.journey_scenarios import EMAIL_IGNORERS, SEND_SMS, SMS_OFFER

NATS_URL = os.environ.get("OPENCDP_TEST_NATS_URL", "nats://127.0.0.1:4222")
AMQP_URL = URL(os.environ.get("OPENCDP_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
CONSENTED = {"consent": {"purposes": {"analytics": True, "sms": True, "advertising": True}}}


@pytest.fixture
def stream() -> Iterator[str]:
    """A stream name of the test's own (also its subjects' first token), deleted afterwards."""
    parts = urlsplit(NATS_URL)
    require_broker("nats", parts.hostname or "127.0.0.1", parts.port or 4222)
    name = f"E{uuid.uuid4().hex[:12]}"
    yield name
    delete_stream(NATS_URL, name)


@pytest.fixture
def queue() -> Iterator[str]:
    """A queue name of the test's own, deleted afterwards."""
    require_broker("rabbitmq", AMQP_URL.host or "127.0.0.1", AMQP_URL.port or 5672)
    name = f"opencdp-e2e-{uuid.uuid4().hex[:12]}"
    yield name
    delete_queue(AMQP_URL, name)


def _take(queue: str) -> list[tuple[str | None, Any]]:
    """Every message in the queue (message id, JSON body), taken off it."""

    async def take() -> list[tuple[str | None, Any]]:
        connection = await aio_pika.connect(AMQP_URL)
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        out = []
        while (msg := await declared.get(no_ack=True, fail=False)) is not None:
            out.append((msg.message_id, orjson.loads(msg.body)))
        await connection.close()
        return out

    return asyncio.run(take())


def _destination(system: OpenCDP, spec: DestinationSpec) -> int:
    with system.engine.begin() as conn:
        return create(conn, system.settings, spec)


def _rabbitmq(system: OpenCDP, name: str, queue: str, body: dict[str, Any], purpose: str) -> int:
    config = {
        "url": str(AMQP_URL.with_password(None)),
        "routing_key": queue,
        "declare_queue": queue,
        "body": body,
    }
    return _destination(
        system, DestinationSpec(name, "rabbitmq", config, secret=AMQP_URL.password, purpose=purpose)
    )


def _keys(system: OpenCDP, destination: int) -> list[str]:
    with system.engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(deliveries.c.key)
                .where(deliveries.c.destination_id == destination, deliveries.c.status == "delivered")
                .order_by(deliveries.c.id)
            ).scalars()
        )


def _track(user: str, event: str, n: int, **props: Any) -> dict[str, Any]:
    return {**track(user, event, n, **props), "context": CONSENTED}


def test_event_forwarding_to_jetstream_is_deduplicated_by_the_idempotency_key(
    system: OpenCDP, stream: str
) -> None:
    engine = system.engine
    config = {
        "servers": [NATS_URL],
        "subject": stream + ".orders.{{ event.properties.country | lower }}",
        "create_stream": True,
        "stream": stream,
        "stream_subjects": [stream + ".>"],
        "body": {"user": "{{ event.userId }}", "total": "{{ event.properties.total }}"},
    }
    dest = _destination(system, DestinationSpec("bus", "nats", config, purpose="analytics"))
    with engine.begin() as conn:
        create_rule(conn, "orders", dest, {"events": ["Order Completed"]})
    log_messages(
        engine,
        [
            _track("ann", "Order Completed", 1, total=30, country="DE"),
            _track("bob", "Product Viewed", 2, country="FR"),
            _track("bob", "Order Completed", 3, total=12.5, country="FR"),
        ],
    )
    process(engine)
    worker = DeliveryWorker(engine, system.settings)
    assert worker.run_until_idle().delivered == 2
    stored = stream_messages(NATS_URL, stream)
    assert [(subject, body) for subject, _, body in stored] == [
        (f"{stream}.orders.de", {"user": "ann", "total": 30}),
        (f"{stream}.orders.fr", {"user": "bob", "total": 12.5}),
    ]
    keys = _keys(system, dest)
    assert [headers["Nats-Msg-Id"] for _, headers, _ in stored] == keys
    # The acknowledgement of the first send was lost (a worker died after publishing): the lease
    # runs out and the delivery is sent again under the same key; JetStream keeps it once.
    with engine.begin() as conn:
        conn.execute(
            deliveries.update()
            .where(deliveries.c.destination_id == dest)
            .values(status="pending", next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert worker.run_until_idle().delivered == 2
    assert len(stream_messages(NATS_URL, stream)) == 2


def test_audience_sync_to_rabbitmq_sends_entries_and_exits_confirmed(system: OpenCDP, queue: str) -> None:
    engine = system.engine
    log_messages(
        engine,
        [
            {
                "type": "identify",
                "userId": u,
                "messageId": f"id-{u}",
                "timestamp": "2026-06-01T09:00:00Z",
                "traits": {"email": f"{u}@example.com", "vip": u != "cy"},
                "context": CONSENTED,
            }
            for u in ("ann", "bob", "cy")
        ],
    )
    process(engine)
    save_segment(engine, "vips", {"trait": "vip", "op": "eq", "value": True})
    body = {"action": "{{ action }}", "email": "{{ profile.traits.email }}", "list": "{{ segment.name }}"}
    dest = _rabbitmq(system, "crm queue", queue, body, purpose="advertising")
    with engine.begin() as conn:
        _, backfilled = create_sync(conn, "vips", dest)
    assert backfilled == 2
    worker = DeliveryWorker(engine, system.settings)
    worker.run_until_idle()
    log_messages(
        engine,
        [
            {
                "type": "identify",
                "userId": "bob",
                "messageId": "bob-no-longer",
                "timestamp": "2026-06-01T11:00:00Z",
                "traits": {"vip": False},
                "context": CONSENTED,
            }
        ],
    )
    process(engine)
    worker.run_until_idle()
    taken = _take(queue)
    assert sorted(body["email"] for _, body in taken[:2]) == ["ann@example.com", "bob@example.com"]
    assert [body["action"] for _, body in taken] == ["add", "add", "remove"]
    assert taken[2][1] == {"action": "remove", "email": "bob@example.com", "list": "vips"}
    assert sorted(message_id or "" for message_id, _ in taken) == sorted(_keys(system, dest))


def test_switch_channel_reaches_the_sms_gateway_queue(system: OpenCDP, queue: str) -> None:
    """The seed scenario with an SMS gateway that reads a RabbitMQ queue: whoever ignored their
    last 10 e-mails gets the offer by SMS, once."""
    engine = system.engine
    clock_now = datetime.now(UTC) + timedelta(minutes=1)
    _rabbitmq(
        system,
        "sms gateway",
        queue,
        {"to": "{{ profile.traits.phone }}", "text": "{{ content.text }}"},
        "sms",
    )
    save_segment(
        engine,
        "email ignorers",
        EMAIL_IGNORERS,
    )
    with engine.begin() as conn:
        journey = int(
            journey_store.save(
                conn,
                "switch channel",
                {
                    "entry": {"segment": "email ignorers"},
                    "steps": [SEND_SMS],
                },
            )["id"]
        )
        journey_store.set_status(conn, journey, "active")
    stamp = clock_now.isoformat()
    messages: list[dict[str, Any]] = [
        {
            "type": "identify",
            "userId": user,
            "messageId": f"id-{user}",
            "timestamp": stamp,
            "traits": {"phone": phone},
            "context": CONSENTED,
        }
        for user, phone in (("ann", "+4915112345678"), ("bob", "+4915187654321"))
    ]
    messages += [
        {**_track(user, "Email Delivered", n), "timestamp": stamp}
        for user in ("ann", "bob")
        for n in range(10)
    ]
    messages.append({**_track("bob", "Email Opened", 11), "timestamp": stamp})
    log_messages(engine, messages)
    runner = JourneyRunner(engine, system.settings, clock=lambda: clock_now)
    worker = DeliveryWorker(engine, system.settings, clock=lambda: clock_now)
    for _ in range(3):
        process(engine)
        runner.run_until_idle()
        worker.run_until_idle()
    assert [body for _, body in _take(queue)] == [{"to": "+4915112345678", "text": SMS_OFFER}]
    with engine.connect() as conn:
        assert journey_store.stats(conn, journey)["completed"] == 1
