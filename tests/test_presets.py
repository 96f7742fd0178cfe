"""Presets end to end: each preset's destination, its API base URL pointed at a real local
receiver, gets a segment's entries and exits through the delivery worker, and the receiver sees
exactly the request the vendor documents (method, path, headers, body, hashes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from opencdp.activation import outbox
from opencdp.activation.audiences import create_sync
from opencdp.activation.destinations import DestinationSpec, create
from opencdp.activation.drivers import DestinationConfigError
from opencdp.activation.presets import PRESETS, get, merge
from opencdp.activation.templates import hash_phone, md5, normalise_phone, render_value
from opencdp.activation.worker import DeliveryWorker
from opencdp.segments.store import save as save_segment
from opencdp.store.schema import deliveries, destinations
from opencdp.system import OpenCDP
from tests.identity_helpers import log_messages, process
from tests.receivers import Receiver

# known test vectors, computed independently of the code under test
SHA256_EMAIL = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"  # test@example.com
SHA256_PHONE_DIGITS = "6c91c4c640f6ef0162833260db4f13dec0df2b683092f4dba7e874bef1acea37"  # 442070313000
MD5_EMAIL = "55502f40dc8b7c769880b10874abc9d0"  # test@example.com
BASIC = "Basic b3BlbmNkcDowMTIzYWJjZC11czY="  # base64("opencdp:0123abcd-us6")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def base(receiver: Receiver) -> str:
    return f"http://127.0.0.1:{receiver.port}"


def people(system: OpenCDP) -> None:
    """ann has an e-mail (untidy), a phone number and a first name; bob has none of them. Both buy."""
    log_messages(
        system.engine,
        [
            {
                "type": "identify",
                "userId": "ann",
                "messageId": "ann-id",
                "timestamp": "2026-06-01T10:00:00Z",
                "traits": {"email": " Test@Example.com ", "phone": "+44 20 7031 3000", "firstName": "Ann"},
            },
            {
                "type": "track",
                "userId": "ann",
                "event": "Order Completed",
                "messageId": "ann-1",
                "timestamp": "2026-06-01T10:00:01Z",
            },
            {
                "type": "track",
                "userId": "bob",
                "event": "Order Completed",
                "messageId": "bob-1",
                "timestamp": "2026-06-01T10:00:02Z",
            },
        ],
    )
    process(system.engine)
    save_segment(system.engine, "buyers", {"event": "Order Completed"}, description="")


def sync(system: OpenCDP, preset: str, options: dict[str, str], secret: str) -> int:
    config = get(preset).build(options)
    with system.engine.begin() as conn:
        dest = create(conn, system.settings, DestinationSpec(preset, "webhook", config, secret=secret))
        create_sync(conn, "buyers", dest)
    return dest


def everyone_leaves(system: OpenCDP) -> None:
    save_segment(system.engine, "buyers", {"event": "Never Happens"}, replace=True)


def dead_errors(system: OpenCDP) -> list[str]:
    query = sa.select(deliveries.c.last_error).where(deliveries.c.status == outbox.DEAD)
    with system.engine.connect() as conn:
        return list(conn.execute(query).scalars())


def test_hubspot_contacts_batch_upsert_by_email(system: OpenCDP, receiver: Receiver) -> None:
    people(system)
    sync(
        system,
        "hubspot-contacts",
        {"base_url": base(receiver), "membership_property": "opencdp_buyer"},
        "pat-na1-token",
    )
    worker = DeliveryWorker(system.engine, system.settings)
    result = worker.run_until_idle()
    assert (result.delivered, result.dead) == (1, 1)  # bob has no e-mail: a dead letter, not a request
    assert dead_errors(system) == ["required value 'email' is empty: not sent"]
    [request] = receiver.received
    assert (request.method, request.path) == ("POST", "/crm/v3/objects/contacts/batch/upsert")
    assert request.headers["authorization"] == "Bearer pat-na1-token"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "inputs": [
            {
                "idProperty": "email",
                "id": "test@example.com",
                "properties": {
                    "email": "test@example.com",
                    "firstname": "Ann",
                    "phone": "+44 20 7031 3000",
                    "opencdp_buyer": "true",
                },
            }
        ]
    }
    everyone_leaves(system)
    worker.run_until_idle()
    assert receiver.bodies()[1]["inputs"][0]["properties"]["opencdp_buyer"] == "false"
    assert receiver.received[1].path == "/crm/v3/objects/contacts/batch/upsert"


def test_mailchimp_member_put_by_subscriber_hash(system: OpenCDP, receiver: Receiver) -> None:
    people(system)
    sync(
        system,
        "mailchimp-members",
        {"dc": "us6", "list_id": "a1b2c3d4e5", "base_url": base(receiver)},
        "0123abcd-us6",
    )
    worker = DeliveryWorker(system.engine, system.settings)
    assert worker.run_until_idle().delivered == 1
    [request] = receiver.received
    assert (request.method, request.path) == ("PUT", f"/3.0/lists/a1b2c3d4e5/members/{MD5_EMAIL}")
    assert request.headers["authorization"] == BASIC
    assert request.json() == {
        "email_address": "test@example.com",
        "status_if_new": "subscribed",
        "merge_fields": {"FNAME": "Ann"},
    }
    everyone_leaves(system)
    worker.run_until_idle()
    leave = receiver.received[1]
    assert (leave.method, leave.path) == ("PUT", f"/3.0/lists/a1b2c3d4e5/members/{MD5_EMAIL}")
    assert leave.json()["status_if_new"] == "unsubscribed"
    assert "status" not in leave.json()  # an existing member's status is left alone


def test_meta_custom_audience_add_with_post_remove_with_delete(system: OpenCDP, receiver: Receiver) -> None:
    people(system)
    sync(
        system,
        "meta-custom-audience",
        {"audience_id": "23850000000000001", "api_version": "v25.0", "base_url": base(receiver)},
        "EAAB-system-user-token",
    )
    worker = DeliveryWorker(system.engine, system.settings)
    result = worker.run_until_idle()
    assert (result.delivered, result.dead) == (1, 1)
    assert dead_errors(system) == ["required value 'email or phone' is empty: not sent"]
    [request] = receiver.received
    assert (request.method, request.path) == ("POST", "/v25.0/23850000000000001/users")
    assert request.headers["authorization"] == "Bearer EAAB-system-user-token"
    expected = {"payload": {"schema": ["EMAIL", "PHONE"], "data": [[SHA256_EMAIL, SHA256_PHONE_DIGITS]]}}
    assert request.json() == expected
    everyone_leaves(system)
    worker.run_until_idle()
    leave = receiver.received[1]
    assert (leave.method, leave.path) == ("DELETE", "/v25.0/23850000000000001/users")
    assert leave.json() == expected


def test_meta_never_batches_adds_with_removes() -> None:
    """Entries and exits in one claim go out as a POST and a DELETE, each with its own members."""
    import asyncio

    from opencdp.activation.drivers import Message
    from opencdp.activation.drivers.webhook import WebhookDriver

    receiver = Receiver().start()
    try:
        config = WebhookDriver.validate(
            get("meta-custom-audience").build({"audience_id": "1", "base_url": base(receiver)})
        )
        driver = WebhookDriver(config=config, secret="t")

        def message(n: int, action: str, email: str | None) -> Message:
            profile = {"id": f"p{n}", "traits": {"email": email} if email else {}}
            return Message(n, f"k{n}", {"kind": "audience", "action": action, "profile": profile}, {})

        async def go() -> list[Any]:
            try:
                return await driver.send(
                    [
                        message(1, "add", "test@example.com"),
                        message(2, "remove", "other@example.com"),
                        message(3, "add", None),
                        message(4, "add", "TEST@example.com"),
                    ]
                )
            finally:
                await driver.close()

        outcomes = asyncio.run(go())
        assert [o.status for o in outcomes] == ["delivered", "delivered", "failed", "delivered"]
        sent = sorted((r.method, len(r.json()["payload"]["data"])) for r in receiver.received)
        assert sent == [("DELETE", 1), ("POST", 2)]
    finally:
        receiver.stop()


def test_options_are_checked_by_name() -> None:
    for preset, options, field in (
        ("hubspot-contacts", {"colour": "red"}, "colour"),
        ("hubspot-contacts", {"properties": "firstname"}, "properties"),
        ("hubspot-contacts", {"email_trait": "email }}{{ secret"}, "email_trait"),
        ("mailchimp-members", {"list_id": "abc"}, "dc"),
        ("mailchimp-members", {"dc": "us6"}, "list_id"),
        ("mailchimp-members", {"dc": "us6/../x", "list_id": "abc"}, "dc"),
        ("mailchimp-members", {"dc": "us6", "list_id": "abc", "status_if_new": "cleaned"}, "status_if_new"),
        ("meta-custom-audience", {}, "audience_id"),
        ("meta-custom-audience", {"audience_id": "12x"}, "audience_id"),
        ("meta-custom-audience", {"audience_id": "1", "api_version": "25"}, "api_version"),
        ("meta-custom-audience", {"audience_id": "1", "batch_size": "1"}, "batch_size"),
        ("meta-custom-audience", {"audience_id": "1", "default_region": "gb"}, "default_region"),
        ("meta-custom-audience", {"audience_id": "1", "base_url": "ftp://x"}, "base_url"),
    ):
        with pytest.raises(DestinationConfigError) as info:
            get(preset).build(options)
        assert info.value.field == field, (preset, options)
    with pytest.raises(DestinationConfigError) as info:
        get("salesforce")
    assert info.value.field == "preset"


def test_every_preset_builds_a_valid_webhook_with_its_vendor_url() -> None:
    from opencdp.activation.drivers.webhook import WebhookDriver

    minimal = {
        "hubspot-contacts": {},
        "mailchimp-members": {"dc": "us6", "list_id": "abc"},
        "meta-custom-audience": {"audience_id": "1"},
    }
    urls = {
        "hubspot-contacts": "https://api.hubapi.com/crm/v3/objects/contacts/batch/upsert",
        "mailchimp-members": "https://us6.api.mailchimp.com/3.0/lists/abc/members/",
        "meta-custom-audience": "https://graph.facebook.com/v25.0/1/users",
    }
    assert set(PRESETS) == set(minimal)
    for name, preset in PRESETS.items():
        config = WebhookDriver.validate(preset.build(minimal[name]))
        assert config["url"].startswith(urls[name])
        assert preset.reference.startswith("https://")
        assert all(o.description for o in preset.options)


def test_filters_for_vendor_formats() -> None:
    assert md5(" Test@Example.com ".strip().lower()) == MD5_EMAIL
    assert normalise_phone("020 7031 3000", "GB", plus=False) == "442070313000"
    assert normalise_phone("020 7031 3000", "GB") == "+442070313000"
    assert hash_phone("+44 20 7031 3000", plus=False) == SHA256_PHONE_DIGITS
    assert render_value("{{ {'a': x, 'b': none, 'c': ''} | compact }}", {"x": 1}) == {"a": 1}


def test_merge_keeps_what_is_not_given() -> None:
    config = get("hubspot-contacts").build({})
    merged = merge(config, {"headers": {"X-Extra": "1"}, "timeout_seconds": 30})
    assert merged["headers"] == {"Authorization": "Bearer {{ secret }}", "X-Extra": "1"}
    assert merged["timeout_seconds"] == 30 and merged["body"] == config["body"]


def test_cli_adds_a_destination_from_a_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from opencdp.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"  # the command line's part is the same on either database
    monkeypatch.setenv("OPENCDP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OPENCDP_DATABASE_URL", url)
    runner = CliRunner()
    listed = runner.invoke(main, ["destinations", "presets"])
    assert listed.exit_code == 0, listed.output
    assert "hubspot-contacts" in listed.output and "--option audience_id" in listed.output
    args = ["destinations", "add", "mc", "--preset", "mailchimp-members", "--secret", "k-us6"]
    missing = runner.invoke(main, [*args, "--option", "dc=us6"])
    assert missing.exit_code != 0 and "list_id" in missing.output
    made = runner.invoke(
        main,
        [*args, "--option", "dc=us6", "--option", "list_id=abc", "--config", '{"timeout_seconds": 30}'],
    )
    assert made.exit_code == 0, made.output
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(sa.select(destinations).where(destinations.c.name == "mc")).one()
    engine.dispose()
    assert row.kind == "webhook" and row.config["method"] == "PUT" and row.config["timeout_seconds"] == 30
