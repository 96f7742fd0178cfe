"""Activation end to end on SQLite and PostgreSQL: decisions written by processing, delivered by
the worker to a real local HTTP receiver, with retries, dead letters, consent and erasure."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from opencdp.activation import outbox
from opencdp.activation.audiences import create_sync
from opencdp.activation.destinations import DestinationError, DestinationSpec, create, update
from opencdp.activation.forwarding import create_rule
from opencdp.activation.worker import BREAKER_THRESHOLD, DeliveryWorker
from opencdp.privacy.erasure import erase_person
from opencdp.process.processor import reset_derived_state
from opencdp.segments.store import save as save_segment
from opencdp.store.schema import deliveries, destinations
from opencdp.system import OpenCDP
from tests.identity_helpers import RULES, log_messages, process, track
from tests.receivers import Receiver, verify_signature


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def webhook(system: OpenCDP, receiver: Receiver, name: str = "hook", **more: Any) -> int:
    config = {"url": receiver.url, **more.pop("config", {})}
    with system.engine.begin() as conn:
        return create(
            conn, system.settings, DestinationSpec(name=name, kind="webhook", config=config, **more)
        )


def statuses(system: OpenCDP) -> dict[str, int]:
    with system.engine.connect() as conn:
        return dict(
            conn.execute(sa.select(deliveries.c.status, sa.func.count()).group_by(deliveries.c.status)).all()
        )


def test_forwarding_sends_matching_events_signed_once(system: OpenCDP, receiver: Receiver) -> None:
    engine = system.engine
    log_messages(engine, [track("early", "Order Completed", total=5)])  # before the rule: never sent
    dest = webhook(system, receiver, secret="s3cret")
    with engine.begin() as conn:
        create_rule(
            conn,
            "big orders",
            dest,
            {
                "types": ["track"],
                "events": ["Order Completed"],
                "where": [{"property": "total", "op": "gte", "value": 100}],
            },
        )
    log_messages(
        engine,
        [
            track("ann", "Order Completed", 1, total=150),
            track("ann", "Order Completed", 2, total=20),
            track("bob", "Product Viewed", 3, total=500),
            track("bob", "Order Completed", 4, total=100),
        ],
    )
    process(engine)
    result = DeliveryWorker(engine, system.settings).run_until_idle()
    assert result.delivered == 2
    bodies = receiver.bodies()
    assert sorted((b["event"]["userId"], b["event"]["properties"]["total"]) for b in bodies) == [
        ("ann", 150),
        ("bob", 100),
    ]
    assert all(verify_signature("s3cret", r) for r in receiver.received)
    assert not verify_signature("wrong", receiver.received[0])
    assert sorted(receiver.idempotency_keys()) == sorted(b["idempotency_key"] for b in bodies)
    assert all(b["profile_id"] for b in bodies)
    # the log processed again from scratch (a rebuild) decides nothing twice
    reset_derived_state(engine)
    process(engine)
    assert DeliveryWorker(engine, system.settings).run_until_idle().work == 0
    assert len(receiver.received) == 2


def test_a_ten_minute_outage_loses_nothing(system: OpenCDP, receiver: Receiver) -> None:
    """Connection refused, then 500s, then 429 with Retry-After, over 10 simulated minutes:
    afterwards every delivery has arrived, duplicates only under the same idempotency key."""
    engine = system.engine
    dest = webhook(system, receiver)
    with engine.begin() as conn:
        create_rule(conn, "all", dest, {})
    log_messages(engine, [track(f"u{i}", "Signed Up", i) for i in range(40)])
    process(engine)
    clock = FakeClock()
    worker = DeliveryWorker(engine, system.settings, clock=clock)
    receiver.stop()  # connection refused
    opened = False
    for second in range(0, 600, 5):
        if second == 200:
            receiver.status = 500
            receiver.start()
        if second == 400:
            receiver.status, receiver.retry_after = 429, "7"
        worker.run_until_idle()
        with engine.connect() as conn:
            opened |= conn.execute(sa.select(destinations.c.open_until)).scalar() is not None
        clock.advance(5)
    assert opened, "the circuit breaker never opened"
    assert receiver.received == []
    receiver.status = 200
    for _ in range(200):
        clock.advance(30)
        worker.run_until_idle()
        if statuses(system).get(outbox.DELIVERED) == 40:
            break
    assert statuses(system) == {outbox.DELIVERED: 40}
    keys = receiver.idempotency_keys()
    assert len(set(keys)) == 40 and all(k.startswith("fwd-") for k in keys)
    with engine.connect() as conn:
        health = conn.execute(sa.select(destinations.c.failures, destinations.c.open_until)).one()
    assert health.failures == 0 and health.open_until is None


def test_retry_after_is_honoured_and_the_breaker_probes_with_one(system: OpenCDP, receiver: Receiver) -> None:
    engine = system.engine
    dest = webhook(system, receiver)
    with engine.begin() as conn:
        create_rule(conn, "all", dest, {})
    log_messages(engine, [track("a", "X", 1)])
    process(engine)
    clock = FakeClock()
    worker = DeliveryWorker(engine, system.settings, clock=clock)
    receiver.status, receiver.retry_after = 429, "120"
    worker.run_until_idle()
    with engine.connect() as conn:
        due = conn.execute(sa.select(deliveries.c.next_attempt_at)).scalar_one()
    assert abs((due - clock.now).total_seconds() - 120) < 1
    clock.advance(119)
    assert worker.run_until_idle().work == 0  # not before the receiver asked
    receiver.status = 200
    clock.advance(2)
    assert worker.run_until_idle().delivered == 1
    assert BREAKER_THRESHOLD > 1


def test_client_errors_are_dead_letters_at_once_and_can_be_replayed(
    system: OpenCDP, receiver: Receiver
) -> None:
    engine = system.engine
    dest = webhook(system, receiver)
    with engine.begin() as conn:
        create_rule(conn, "all", dest, {})
    log_messages(engine, [track("a", "X", 1), track("b", "X", 2)])
    process(engine)
    with engine.connect() as conn:
        poisoned = conn.execute(sa.select(deliveries.c.key).order_by(deliveries.c.id)).scalars().first()
    receiver.per_key[poisoned] = 422
    worker = DeliveryWorker(engine, system.settings)
    worker.run_until_idle()
    assert statuses(system) == {outbox.DELIVERED: 1, outbox.DEAD: 1}
    with engine.connect() as conn:
        dead = outbox.find(conn, outbox.DEAD)
    assert dead[0]["key"] == poisoned and "HTTP 422" in dead[0]["last_error"]
    with engine.connect() as conn:
        assert outbox.summary(conn) | {"oldest_waiting_seconds": 0} == {
            "deliveries_waiting": 0,
            "oldest_waiting_seconds": 0,
            "dead_letters": 1,
            "circuits_open": [],
        }
    del receiver.per_key[poisoned]
    with engine.begin() as conn:
        assert outbox.replay(conn, destination_id=dest) == 1
    worker.run_until_idle()
    assert statuses(system) == {outbox.DELIVERED: 2}
    assert poisoned in receiver.idempotency_keys()


def test_consent_is_checked_at_send_time(system: OpenCDP, receiver: Receiver) -> None:
    engine = system.engine
    dest = webhook(system, receiver, purpose="email_marketing")
    with engine.begin() as conn:
        create_rule(conn, "orders", dest, {"events": ["Order Completed"]})
    granted = {"consent": {"purposes": {"email_marketing": True}}}
    log_messages(
        engine,
        [
            {**track("yes", "Order Completed", 1), "context": granted},
            {**track("never", "Order Completed", 2)},
            {**track("later-no", "Order Completed", 3), "context": granted},
        ],
    )
    process(engine)
    # consent withdrawn after the deliveries were queued, before the worker sends
    log_messages(
        engine,
        [
            {
                "type": "identify",
                "userId": "later-no",
                "messageId": "withdraw",
                "timestamp": "2026-06-01T10:01:00Z",
                "context": {"consent": {"purposes": {"email_marketing": False}}},
            }
        ],
    )
    process(engine)
    DeliveryWorker(engine, system.settings).run_until_idle()
    assert [b["event"]["userId"] for b in receiver.bodies()] == ["yes"]
    with engine.connect() as conn:
        reasons = set(
            conn.execute(sa.select(deliveries.c.last_error).where(deliveries.c.status == "skipped")).scalars()
        )
    assert reasons == {"no consent for email_marketing"}


def test_erasure_drops_pending_deliveries(system: OpenCDP, receiver: Receiver) -> None:
    engine = system.engine
    dest = webhook(system, receiver)
    with engine.begin() as conn:
        create_rule(conn, "all", dest, {})
    log_messages(engine, [track("gone", "X", 1), track("stays", "X", 2)])
    process(engine)
    erase_person(engine, RULES, "user_id", "gone", "test")
    with engine.connect() as conn:
        left = conn.execute(sa.select(deliveries.c.key)).scalars().all()
    assert len(left) == 1
    DeliveryWorker(engine, system.settings).run_until_idle()
    assert [b["event"]["userId"] for b in receiver.bodies()] == ["stays"]


def test_audience_sync_backfills_then_sends_changes_once(system: OpenCDP, receiver: Receiver) -> None:
    engine = system.engine
    log_messages(engine, [track("a", "Order Completed", 1), track("b", "Product Viewed", 2)])
    process(engine)
    save_segment(engine, "buyers", {"event": "Order Completed"}, description="")
    dest = webhook(
        system,
        receiver,
        config={
            "body": {
                "op": "{{ action }}",
                "list": "{{ segment.name }}",
                "email_sha256": "{{ profile.traits.email | hash_email }}",
                "user": "{{ profile.id }}",
            }
        },
    )
    with engine.begin() as conn:
        _, backfilled = create_sync(conn, "buyers", dest)
    assert backfilled == 1
    worker = DeliveryWorker(engine, system.settings)
    worker.run_until_idle()
    assert [(b["op"], b["list"]) for b in receiver.bodies()] == [("add", "buyers")]
    log_messages(
        engine,
        [
            {
                "type": "identify",
                "userId": "b",
                "messageId": "b-id",
                "timestamp": "2026-06-01T10:00:30Z",
                "traits": {"email": " B@Example.com"},
            },
            track("b", "Order Completed", 40),
        ],
    )
    process(engine)
    worker.run_until_idle()
    bodies = receiver.bodies()
    assert [b["op"] for b in bodies] == ["add", "add"]
    import hashlib

    assert bodies[1]["email_sha256"] == hashlib.sha256(b"b@example.com").hexdigest()
    # a rebuild re-enters everyone: nothing is sent twice
    reset_derived_state(engine)
    process(engine)
    worker.run_until_idle()
    assert len(receiver.received) == 2
    # the segment changes so that b leaves: one removal, in the transaction that saves it
    save_segment(
        engine,
        "buyers",
        {"and": [{"event": "Order Completed"}, {"trait": "email", "op": "not_exists"}]},
        replace=True,
    )
    worker.run_until_idle()
    assert [b["op"] for b in receiver.bodies()] == ["add", "add", "remove"]


def test_destination_validation_names_the_field(system: OpenCDP) -> None:
    with system.engine.begin() as conn:
        for config, field in (
            ({"url": "ftp://x"}, "config.url"),
            ({"url": "http://x", "method": "GET"}, "config.method"),
            ({"url": "http://x", "body": {"a": "{{ unclosed"}}, "config.body"),
            ({"url": "http://x", "colour": 1}, "config.colour"),
        ):
            with pytest.raises(DestinationError) as info:
                create(conn, system.settings, DestinationSpec("d", "webhook", config))
            assert info.value.field == field
        with pytest.raises(DestinationError) as info:
            create(conn, system.settings, DestinationSpec("d", "fax", {}))
        assert info.value.field == "kind"
        with pytest.raises(DestinationError) as info:
            create(
                conn,
                system.settings,
                DestinationSpec("d", "webhook", {"url": "http://x"}, purpose="astrology"),
            )
        assert info.value.field == "purpose"


def test_secrets_are_encrypted_or_referenced(
    system: OpenCDP, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = webhook(system, receiver, secret="plain-text-token")
    with system.engine.connect() as conn:
        stored = conn.execute(sa.select(destinations.c.secret)).scalar_one()
    assert "plain-text-token" not in stored
    monkeypatch.setenv("HOOK_SECRET", "from-env")
    with system.engine.begin() as conn:
        update(
            conn,
            system.settings,
            dest,
            DestinationSpec("hook", "webhook", {"url": receiver.url}, secret="env:HOOK_SECRET"),
        )
    log_messages(system.engine, [track("a", "X", 1)])
    with system.engine.begin() as conn:
        create_rule(conn, "all", dest, {})
    log_messages(system.engine, [track("a", "X", 2)])
    process(system.engine)
    DeliveryWorker(system.engine, system.settings).run_until_idle()
    assert verify_signature("from-env", receiver.received[0])


def test_two_workers_share_the_outbox_without_sending_twice(system: OpenCDP, receiver: Receiver) -> None:
    import threading

    engine = system.engine
    dest = webhook(system, receiver, config={"concurrency": 4})
    with engine.begin() as conn:
        create_rule(conn, "all", dest, {})
    log_messages(engine, [track(f"u{i}", "X", i % 60) for i in range(300)])
    process(engine)
    receiver.delay = 0.002
    workers = [DeliveryWorker(engine, system.settings) for _ in range(2)]
    threads = [threading.Thread(target=w.run_until_idle) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    DeliveryWorker(engine, system.settings).run_until_idle()  # anything a worker left for later
    keys = receiver.idempotency_keys()
    assert len(keys) == 300 and len(set(keys)) == 300
    assert statuses(system) == {outbox.DELIVERED: 300}
