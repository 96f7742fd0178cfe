"""The RabbitMQ driver against a real broker (guest/guest at 127.0.0.1:5672, or
OPENCDP_TEST_AMQP_URL with the password in it).

Every test works on its own queue and exchange (named with a uuid) and deletes them after.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aio_pika
import orjson
import pytest
from yarl import URL

from opencdp.activation.drivers import DestinationConfigError, driver_class
from opencdp.activation.drivers.rabbitmq import RabbitMQDriver
from tests.broker_helpers import delete_queue, free_port, message, require_broker

AMQP_URL = URL(os.environ.get("OPENCDP_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))


@pytest.fixture(scope="module")
def amqp() -> URL:
    require_broker("rabbitmq", AMQP_URL.host or "127.0.0.1", AMQP_URL.port or 5672)
    return AMQP_URL


@pytest.fixture
def names(amqp: URL) -> Iterator[str]:
    """A unique name for the test's queue and exchange; both are deleted afterwards."""
    name = f"opencdp-test-{uuid.uuid4().hex[:12]}"
    yield name
    delete_queue(amqp, name, exchange=name)


def _declare(url: URL, queue: str, exchange: str | None = None, key: str = "#") -> None:
    async def declare() -> None:
        connection = await aio_pika.connect(url)
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, durable=True)
        if exchange:
            topic = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC)
            await declared.bind(topic, key)
        await connection.close()

    asyncio.run(declare())


def _consume(url: URL, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Every message in the queue, taken off it."""

    async def take() -> list[aio_pika.abc.AbstractIncomingMessage]:
        connection = await aio_pika.connect(url)
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        out = []
        while (msg := await declared.get(no_ack=True, fail=False)) is not None:
            out.append(msg)
        await connection.close()
        return out

    return asyncio.run(take())


def _driver(url: URL, **config: Any) -> RabbitMQDriver:
    """The driver as it is configured: the user in the URL, the password as the secret."""
    plain = str(url.with_password(None))
    return RabbitMQDriver(RabbitMQDriver.validate({"url": plain, **config}), secret=url.password)


def _send(driver: RabbitMQDriver, messages: list[Any]) -> list[Any]:
    async def go() -> list[Any]:
        try:
            return await driver.send(messages)
        finally:
            await driver.close()

    return asyncio.run(go())


def test_publishes_confirmed_in_order_with_the_idempotency_key_as_message_id(amqp: URL, names: str) -> None:
    _declare(amqp, names)
    messages = [message(n, key=f"key-{n}") for n in range(300)]

    outcomes = _send(_driver(amqp, routing_key=names), messages)

    assert {o.status for o in outcomes} == {"delivered"} and len(outcomes) == 300
    received = _consume(amqp, names)
    assert [orjson.loads(m.body)["n"] for m in received] == list(range(300))  # in order
    first = received[1]
    assert first.message_id == "key-1"
    assert first.headers == {"x-idempotency-key": "key-1"}
    assert first.content_type == "application/json"
    assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert first.app_id == "opencdp"
    assert orjson.loads(first.body) == {"event": "Order Completed", "n": 1}


def test_routing_key_and_body_templates_through_a_named_exchange(amqp: URL, names: str) -> None:
    _declare(amqp, names, exchange=names, key="audience.#")
    body = {"profile": "{{ profile.id }}", "action": "{{ action }}", "n": "{{ event.properties.n }}"}
    driver = _driver(amqp, exchange=names, routing_key="{{ kind }}.{{ action }}", body=body, persistent=False)
    audience = message(5, key="k5", kind="audience", action="remove")

    assert _send(driver, [audience])[0].status == "delivered"

    (received,) = _consume(amqp, names)
    assert received.routing_key == "audience.remove"
    assert orjson.loads(received.body) == {"profile": "p5", "action": "remove", "n": 5}
    assert received.delivery_mode == aio_pika.DeliveryMode.NOT_PERSISTENT


def test_declare_queue_makes_a_durable_queue_bound_to_the_exchange(amqp: URL, names: str) -> None:
    async def exchange() -> None:
        connection = await aio_pika.connect(amqp)
        await (await connection.channel()).declare_exchange(names, aio_pika.ExchangeType.DIRECT)
        await connection.close()

    asyncio.run(exchange())
    driver = _driver(amqp, exchange=names, routing_key="orders", declare_queue=names)

    assert [o.status for o in _send(driver, [message(1, "a"), message(2, "b")])] == ["delivered"] * 2

    assert [m.message_id for m in _consume(amqp, names)] == ["a", "b"]


def test_an_unroutable_message_fails_and_the_rest_are_delivered(amqp: URL, names: str) -> None:
    _declare(amqp, names, exchange=names, key="event.#")
    driver = _driver(amqp, exchange=names, routing_key="{{ kind }}.x")
    batch = [message(1, "a"), message(2, "b", kind="audience"), message(3, "c")]

    outcomes = _send(driver, batch)

    assert [o.status for o in outcomes] == ["delivered", "failed", "delivered"]
    assert (
        f"unroutable: no queue is bound to exchange {names!r} for routing key 'audience.x'"
        == outcomes[1].error
    )
    assert [m.message_id for m in _consume(amqp, names)] == ["a", "c"]


def test_a_missing_exchange_fails(amqp: URL, names: str) -> None:
    outcomes = _send(_driver(amqp, exchange=names, routing_key="x"), [message(1, "a"), message(2, "b")])

    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert f"exchange {names!r} does not exist" in (outcomes[0].error or "")


def test_a_template_that_fails_fails_alone(amqp: URL, names: str) -> None:
    _declare(amqp, names)
    driver = _driver(amqp, routing_key=names, body={"x": "{{ profile.id.nope() }}"})
    outcomes = _send(driver, [message(1, "a")])

    assert outcomes[0].status == "failed"
    assert "template" in (outcomes[0].error or "")


def test_an_unreachable_broker_means_retry_for_all_quickly() -> None:
    driver = RabbitMQDriver(
        RabbitMQDriver.validate(
            {"url": f"amqp://guest@127.0.0.1:{free_port()}/", "routing_key": "x", "timeout_seconds": 0.5}
        ),
        secret="guest",
    )

    started = time.monotonic()
    outcomes = _send(driver, [message(1, "a"), message(2, "b")])

    assert [o.status for o in outcomes] == ["retry", "retry"]
    assert "cannot connect to RabbitMQ" in (outcomes[0].error or "")
    assert time.monotonic() - started < 3


def test_a_wrong_password_means_retry_and_is_never_shown(amqp: URL) -> None:
    secret = f"wrong-{uuid.uuid4().hex}"
    driver = RabbitMQDriver(
        RabbitMQDriver.validate({"url": str(amqp.with_password(None)), "routing_key": "x"}), secret=secret
    )

    (outcome,) = _send(driver, [message(1, "a")])

    assert outcome.status == "retry"
    assert secret not in (outcome.error or "") and secret not in repr(driver)


def test_a_closed_connection_is_opened_again(amqp: URL, names: str) -> None:
    _declare(amqp, names)
    driver = _driver(amqp, routing_key=names)

    async def scenario() -> list[str]:
        first = await driver.send([message(1, "a")])
        assert driver._connection is not None
        await driver._connection.close()  # as when the broker restarts or the network drops
        second = await driver.send([message(2, "b")])
        await driver.close()
        third = await driver.send([message(3, "c")])
        await driver.close()
        return [o.status for o in first + second + third]

    assert asyncio.run(scenario()) == ["delivered"] * 3
    assert [m.message_id for m in _consume(amqp, names)] == ["a", "b", "c"]


def test_the_kinds_registry_finds_the_driver() -> None:
    assert driver_class("rabbitmq") is RabbitMQDriver


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "routing_key"),
        ({"routing_key": "x", "colour": "red"}, "colour"),
        ({"routing_key": "x", "url": "http://h/"}, "url"),
        ({"routing_key": "x", "url": "amqp://guest:guest@h/"}, "url"),
        ({"routing_key": "k" * 256}, "routing_key"),
        ({"routing_key": "{{ kind "}, "routing_key"),
        ({"routing_key": "x", "body": {"a": "{% if %}"}}, "body"),
        ({"routing_key": "x", "bind_key": "#"}, "bind_key"),
        ({"routing_key": "{{ kind }}", "exchange": "e", "declare_queue": "q"}, "bind_key"),
        ({"routing_key": "x", "persistent": "yes"}, "persistent"),
        ({"routing_key": "x", "timeout_seconds": 1000}, "timeout_seconds"),
        ({"routing_key": "x", "exchange": 3}, "exchange"),
    ],
)
def test_validate_refuses_what_cannot_work(config: dict[str, Any], field: str) -> None:
    with pytest.raises(DestinationConfigError) as caught:
        RabbitMQDriver.validate(config)
    assert caught.value.field == field


def test_validate_fills_defaults() -> None:
    config = RabbitMQDriver.validate({"routing_key": "orders", "exchange": "cdp", "declare_queue": "q"})

    assert config["bind_key"] == "orders"  # the literal routing key binds the declared queue
    assert config["persistent"] is True and config["mandatory"] is True
    assert config["url"] == "amqp://guest@127.0.0.1:5672/"
