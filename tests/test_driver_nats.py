"""The NATS JetStream driver against a real server (127.0.0.1:4222, or OPENCDP_TEST_NATS_URL).

Every test works on its own stream and subjects (named with a uuid) and deletes its stream after.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.js.errors
import pytest

from opencdp.activation.drivers import DestinationConfigError, driver_class
from opencdp.activation.drivers.nats import NatsDriver, covers, default_stream_subjects, subject_problem
from tests.broker_helpers import answers, delete_stream, free_port, message, require_broker, stream_messages

NATS_URL = os.environ.get("OPENCDP_TEST_NATS_URL", "nats://127.0.0.1:4222")


@pytest.fixture(scope="module")
def nats_url() -> str:
    parts = urlsplit(NATS_URL)
    require_broker("nats", parts.hostname or "127.0.0.1", parts.port or 4222)
    return NATS_URL


@pytest.fixture
def name(nats_url: str) -> Iterator[str]:
    """A unique stream name, also the first token of the test's subjects; the stream (if the test
    made one) is deleted afterwards."""
    stream = f"T{uuid.uuid4().hex[:12]}"
    yield stream
    delete_stream(nats_url, stream)


def _add_stream(url: str, stream: str, subjects: list[str], **options: Any) -> None:
    async def add() -> None:
        nc = await nats.connect(url)
        await nc.jetstream().add_stream(name=stream, subjects=subjects, **options)
        await nc.close()

    asyncio.run(add())


def _send(driver: NatsDriver, messages: list[Any], close: bool = True) -> list[Any]:
    async def go() -> list[Any]:
        try:
            return await driver.send(messages)
        finally:
            if close:
                await driver.close()

    return asyncio.run(go())


def _driver(url: str, secret: str | None = None, **config: Any) -> NatsDriver:
    return NatsDriver(NatsDriver.validate({"servers": [url], **config}), secret=secret)


def test_publishes_in_order_with_the_idempotency_key_as_message_id(nats_url: str, name: str) -> None:
    _add_stream(nats_url, name, [f"{name}.>"])
    driver = _driver(nats_url, subject=f"{name}.{{{{ kind }}}}.{{{{ event.event | replace(' ', '_') }}}}")
    messages = [
        message(n, key=f"key-{n}", event="Order Completed" if n % 2 else "Signed Up") for n in range(300)
    ]

    outcomes = _send(driver, messages)

    assert {o.status for o in outcomes} == {"delivered"} and len(outcomes) == 300
    stored = stream_messages(nats_url, name)
    assert [body["n"] for _, _, body in stored] == list(range(300))  # in order
    subject, headers, body = stored[1]
    assert subject == f"{name}.event.Order_Completed"
    assert stored[0][0] == f"{name}.event.Signed_Up"
    assert headers["Nats-Msg-Id"] == "key-1"
    assert headers["Content-Type"] == "application/json"
    assert body == {"event": "Order Completed", "n": 1}


def test_body_template_maps_fields_and_keeps_types(nats_url: str, name: str) -> None:
    _add_stream(nats_url, name, [f"{name}.>"])
    body = {
        "email": "{{ profile.traits.email }}",
        "n": "{{ event.properties.n }}",
        "who": "id {{ profile.id }}",
    }
    driver = _driver(nats_url, subject=f"{name}.x", body=body)

    assert _send(driver, [message(7, key="k7")])[0].status == "delivered"

    assert stream_messages(nats_url, name)[0][2] == {"email": "u7@example.com", "n": 7, "who": "id p7"}


def test_the_same_key_twice_is_stored_once(nats_url: str, name: str) -> None:
    """A retry after a lost ack carries the same key: JetStream drops it within its duplicate
    window and acknowledges it as a duplicate, which counts as delivered."""
    _add_stream(nats_url, name, [f"{name}.>"])
    driver = _driver(nats_url, subject=f"{name}.x")

    async def twice() -> list[Any]:
        first = await driver.send([message(1, key="same"), message(2, key="other")])
        again = await driver.send([message(1, key="same")])
        await driver.close()
        return first + again

    assert [o.status for o in asyncio.run(twice())] == ["delivered"] * 3
    stored = stream_messages(nats_url, name)
    assert [h["Nats-Msg-Id"] for _, h, _ in stored] == ["same", "other"]


def test_no_stream_for_the_subject_fails_with_a_clear_message(nats_url: str, name: str) -> None:
    outcome = _send(_driver(nats_url, subject=f"{name}.nobody"), [message(1, key="k")])[0]

    assert outcome.status == "failed"
    assert "no JetStream stream stores subject" in (outcome.error or "")


def test_a_configured_stream_that_does_not_exist_fails(nats_url: str, name: str) -> None:
    outcomes = _send(_driver(nats_url, subject=f"{name}.x", stream=name), [message(1, "a"), message(2, "b")])

    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert f"stream {name!r} does not exist" in (outcomes[0].error or "")


def test_create_stream_makes_one_for_the_subjects(nats_url: str, name: str) -> None:
    driver = _driver(nats_url, subject=f"{name}.{{{{ kind }}}}", stream=name, create_stream=True)

    assert _send(driver, [message(1, "a")])[0].status == "delivered"

    async def subjects() -> list[str]:
        nc = await nats.connect(nats_url)
        info = await nc.jetstream().stream_info(name)
        await nc.close()
        return list(info.config.subjects or [])

    assert asyncio.run(subjects()) == [f"{name}.>"]
    assert len(stream_messages(nats_url, name)) == 1


def test_a_subject_outside_the_stream_fails_alone(nats_url: str, name: str) -> None:
    _add_stream(nats_url, name, [f"{name}.event"])
    driver = _driver(nats_url, subject=f"{name}.{{{{ kind }}}}", stream=name)
    audience = message(2, "b", kind="audience", action="add")

    outcomes = _send(driver, [message(1, "a"), audience])

    assert [o.status for o in outcomes] == ["delivered", "failed"]
    assert f"does not store subject '{name}.audience'" in (outcomes[1].error or "")


def test_a_message_that_cannot_be_rendered_fails_alone(nats_url: str, name: str) -> None:
    _add_stream(nats_url, name, [f"{name}.>"])
    driver = _driver(nats_url, subject=f"{name}.{{{{ event.event }}}}")
    batch = [
        message(1, "a", event="Signed_Up"),
        message(2, "b", event="Order Completed"),  # a space
        message(3, "c", event="orders.*"),  # a wildcard
        message(4, "d", event="Paid"),
    ]

    outcomes = _send(driver, batch)

    assert [o.status for o in outcomes] == ["delivered", "failed", "failed", "delivered"]
    assert "whitespace" in (outcomes[1].error or "")
    assert len(stream_messages(nats_url, name)) == 2


def test_an_unreachable_server_means_retry_for_all_quickly() -> None:
    driver = _driver(f"nats://127.0.0.1:{free_port()}", subject="x.y", timeout_seconds=0.5)

    started = time.monotonic()
    outcomes = _send(driver, [message(1, "a"), message(2, "b")])

    assert [o.status for o in outcomes] == ["retry", "retry"]
    assert "cannot connect to NATS" in (outcomes[0].error or "")
    assert time.monotonic() - started < 3


def test_a_closed_connection_is_opened_again(nats_url: str, name: str) -> None:
    _add_stream(nats_url, name, [f"{name}.>"])
    driver = _driver(nats_url, subject=f"{name}.x")

    async def scenario() -> list[str]:
        first = await driver.send([message(1, "a")])
        assert driver._nc is not None
        await driver._nc.close()  # as when the client gives up or the server kicks it out
        second = await driver.send([message(2, "b")])
        await driver.close()
        third = await driver.send([message(3, "c")])  # close() is not the end of the driver
        await driver.close()
        return [o.status for o in first + second + third]

    assert asyncio.run(scenario()) == ["delivered"] * 3
    assert len(stream_messages(nats_url, name)) == 3


@pytest.mark.skipif(shutil.which("nats-server") is None, reason="needs the nats-server binary")
def test_a_server_restart_means_retry_then_delivery(tmp_path: Any) -> None:
    """The test's own server, killed and started again: meanwhile every send is a quick retry,
    and the client's background reconnection makes the next one go through."""
    port = free_port()
    command = ["nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(tmp_path)]

    def start() -> subprocess.Popen[bytes]:
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not answers("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return server

    server = start()
    config = {"subject": "orders.x", "stream": "ORDERS", "create_stream": True, "timeout_seconds": 1}
    driver = _driver(f"nats://127.0.0.1:{port}", **config)

    async def scenario() -> list[str]:
        nonlocal server
        statuses = [o.status for o in await driver.send([message(1, "a")])]
        server.kill()
        server.wait()
        statuses += [o.status for o in await driver.send([message(2, "b")])]
        server = start()
        deadline = time.monotonic() + 5
        while (outcome := (await driver.send([message(2, "b")]))[0]).status != "delivered":
            assert time.monotonic() < deadline, outcome
            await asyncio.sleep(0.2)
        await driver.close()
        return [*statuses, outcome.status]

    try:
        assert asyncio.run(scenario()) == ["delivered", "retry", "delivered"]
    finally:
        server.kill()
        server.wait()


def test_token_is_sent_from_the_secret(nats_url: str, name: str) -> None:
    """The local server has no auth: a token is accepted and ignored, proving only that it
    does not break the connection; the secret never appears in outcomes."""
    _add_stream(nats_url, name, [f"{name}.>"])
    assert _send(_driver(nats_url, secret="t0ken", subject=f"{name}.x"), [message(1, "a")])[0].status == (
        "delivered"
    )


def test_the_kinds_registry_finds_the_driver() -> None:
    assert driver_class("nats") is NatsDriver


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "subject"),
        ({"subject": "a.b", "colour": "red"}, "colour"),
        ({"subject": "a.b", "servers": ["http://x"]}, "servers"),
        ({"subject": "a.b", "servers": ["nats://u:p@x:4222"]}, "servers"),
        ({"subject": "a.b", "servers": []}, "servers"),
        ({"subject": "a b"}, "subject"),
        ({"subject": "a.*"}, "subject"),
        ({"subject": "a..b"}, "subject"),
        ({"subject": "a.{{ kind "}, "subject"),
        ({"subject": "a.b", "body": {"x": "{{ oops"}}, "body"),
        ({"subject": "a.b", "stream": "has.dot"}, "stream"),
        ({"subject": "a.b", "create_stream": True}, "create_stream"),
        ({"subject": "{{ kind }}.x", "stream": "S", "create_stream": True}, "stream_subjects"),
        ({"subject": "a.b", "stream": "S", "stream_subjects": ["a.>"]}, "stream_subjects"),
        (
            {"subject": "a.b", "stream": "S", "create_stream": True, "stream_subjects": ["a.>.b"]},
            "stream_subjects",
        ),
        ({"subject": "a.b", "timeout_seconds": 0}, "timeout_seconds"),
        ({"subject": "a.b", "timeout_seconds": True}, "timeout_seconds"),
        ({"subject": "a.b", "create_stream": "yes"}, "create_stream"),
    ],
)
def test_validate_refuses_what_cannot_work(config: dict[str, Any], field: str) -> None:
    with pytest.raises(DestinationConfigError) as caught:
        NatsDriver.validate(config)
    assert caught.value.field == field


def test_validate_fills_defaults() -> None:
    config = NatsDriver.validate({"subject": "cdp.{{ kind }}", "servers": "nats://h:4222"})

    assert config["servers"] == ["nats://h:4222"]
    assert config["stream"] is None and config["create_stream"] is False
    assert config["timeout_seconds"] == 10.0


@pytest.mark.parametrize(
    ("subject_filter", "subject", "expected"),
    [
        ("a.b", "a.b", True),
        ("a.b", "a.b.c", False),
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", False),
        ("a.>", "a.b.c", True),
        ("a.>", "a", False),
        ("*.b.>", "x.b.y", True),
        ("a.*.c", "a.b.d", False),
    ],
)
def test_covers(subject_filter: str, subject: str, expected: bool) -> None:
    assert covers(subject_filter, subject) is expected


def test_subject_rules_and_default_stream_subjects() -> None:
    assert subject_problem("cdp.event.Order_Completed") is None
    assert (
        subject_problem("") and subject_problem("a.") and subject_problem("a\tb") and subject_problem("a.>")
    )
    assert default_stream_subjects("cdp.{{ kind }}.{{ event.event }}") == ["cdp.>"]
    assert default_stream_subjects("cdp.orders") == ["cdp.orders"]
    assert default_stream_subjects("{{ kind }}") is None
