"""The SMTP driver against a real SMTP server (aiosmtpd) on a free local port."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from opencdp.activation.drivers import DestinationConfigError, Message, Outcome, driver_class
from opencdp.activation.drivers.smtp import SmtpDriver, message_id
from tests.receivers import MailRecorder, free_port, start_mail_server

Recorder = MailRecorder
_free_port = free_port
_start = start_mail_server


@pytest.fixture
def server() -> Iterator[tuple[Recorder, int]]:
    handler = Recorder()
    controller = _start(handler)
    yield handler, controller.port
    controller.stop()


def _config(port: int, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": "news@shop.example",
        "from_name": "The Shop",
        "subject": "Hello {{ profile.traits.first_name }}",
        "text": "Hi {{ profile.traits.first_name }}, your total was {{ event.properties.total }}.",
        "html": "<p>Hi <b>{{ profile.traits.first_name }}</b></p>",
        "reply_to": "help@shop.example",
        "unsubscribe_url": "https://shop.example/unsubscribe?p={{ profile.id }}",
        "timeout_seconds": 5,
    }
    config.update(overrides)
    return config


def _driver(config: dict[str, Any], secret: str | None = None) -> SmtpDriver:
    return SmtpDriver(config=SmtpDriver.validate(config), secret=secret)


def _message(n: int, email_address: str | None = "ada@example.com", first_name: str = "Ada") -> Message:
    traits: dict[str, Any] = {"first_name": first_name}
    if email_address is not None:
        traits["email"] = email_address
    context = {
        "kind": "event",
        "event": {"type": "track", "event": "Order Completed", "properties": {"total": 42}},
        "profile": {"id": f"p{n}", "traits": traits, "computed": {}, "consent": {}},
        "destination": {"id": 1, "name": "newsletter"},
    }
    return Message(delivery_id=n, key=f"dlv:{n}:abc", context=context, body={})


def _send(driver: SmtpDriver, messages: list[Message]) -> list[Outcome]:
    async def run() -> list[Outcome]:
        with anyio.fail_after(20):
            return await driver.send(messages)

    return anyio.run(run)


def test_the_kind_is_registered() -> None:
    assert driver_class("smtp") is SmtpDriver


def test_each_message_is_one_mail_with_both_parts(server: tuple[Recorder, int]) -> None:
    handler, port = server
    driver = _driver(_config(port))
    messages = [_message(1), _message(2, "grace@example.com", "<script>alert(1)</script> & Grace")]
    assert _send(driver, messages) == [Outcome.ok(), Outcome.ok()]

    assert [m[1] for m in handler.mails] == [["ada@example.com"], ["grace@example.com"]]
    assert {m[0] for m in handler.mails} == {"news@shop.example"}
    assert len({m[3] for m in handler.mails}) == 1, "one connection for the batch"
    first, second = handler.mails[0][2], handler.mails[1][2]
    assert first["To"] == "ada@example.com"
    assert first["From"] == "The Shop <news@shop.example>"
    assert first["Reply-To"] == "help@shop.example"
    assert first["Subject"] == "Hello Ada"
    assert first.get_content_type() == "multipart/alternative"
    text_part = first.get_body(("plain",))
    html_part = first.get_body(("html",))
    assert text_part is not None and html_part is not None
    assert text_part.get_content().splitlines() == ["Hi Ada, your total was 42."]
    assert html_part.get_content().splitlines() == ["<p>Hi <b>Ada</b></p>"]
    # HTML values are escaped; the text part and the subject keep them as written
    html = second.get_body(("html",))
    assert html is not None
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Grace" in html.get_content()
    assert "<script>" not in html.get_content()
    assert second["Subject"] == "Hello <script>alert(1)</script> & Grace"
    # RFC 8058 one-click unsubscribe
    assert first["List-Unsubscribe"] == "<https://shop.example/unsubscribe?p=p1>"
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # the idempotency key, for receivers that de-duplicate
    assert first["X-OpenCDP-Idempotency-Key"] == "dlv:1:abc"
    assert first["Message-ID"] == message_id("dlv:1:abc", "shop.example")
    assert first["Date"]


def test_the_message_id_is_stable_for_a_key_and_distinct_between_keys(server: tuple[Recorder, int]) -> None:
    handler, port = server
    driver = _driver(_config(port))
    _send(driver, [_message(1)])
    _send(driver, [_message(1), _message(2)])
    ids = [m[2]["Message-ID"] for m in handler.mails]
    assert ids[0] == ids[1] != ids[2]
    assert message_id("dlv:1:abc", "x.example") == message_id("dlv:1:abc", "x.example")
    # keys that differ only in unsafe characters stay distinct; the result is a valid msg-id
    assert message_id("a:b", "x.example") != message_id("a/b", "x.example")
    assert message_id("plain-key_1", "x.example") == "<plain-key_1@x.example>"
    weird = message_id("<é> \r\n", "x.example")
    assert weird.startswith("<") and weird.endswith("@x.example>")
    assert not set(weird[1:-1].partition("@")[0]) - set("abcdefghijklmnopqrstuvwxyz0123456789-.")


def test_html_only_and_text_only_mails(server: tuple[Recorder, int]) -> None:
    handler, port = server
    _send(_driver(_config(port, text=None)), [_message(1)])
    _send(_driver(_config(port, html=None, unsubscribe_url=None)), [_message(2)])
    html_only, text_only = handler.mails[0][2], handler.mails[1][2]
    assert html_only.get_content_type() == "text/html"
    assert text_only.get_content_type() == "text/plain"
    assert "List-Unsubscribe" not in text_only


def test_no_usable_recipient_fails_that_message_only(server: tuple[Recorder, int]) -> None:
    handler, port = server
    driver = _driver(_config(port))
    outcomes = _send(
        driver,
        [
            _message(1, None),
            _message(2),
            _message(3, "not-an-address"),
            _message(4, "a@b.example, c@d.example"),
        ],
    )
    assert [o.status for o in outcomes] == ["failed", "delivered", "failed", "failed"]
    assert outcomes[0].error is not None and "rendered empty" in outcomes[0].error
    assert outcomes[2].error is not None and "valid e-mail address" in outcomes[2].error
    assert [m[1] for m in handler.mails] == [["ada@example.com"]]


def test_a_template_that_fails_to_render_fails_its_message(server: tuple[Recorder, int]) -> None:
    _, port = server
    driver = _driver(_config(port, subject="{{ 1 // profile.traits.zero }}"))
    message = _message(1)
    message.context["profile"]["traits"]["zero"] = 0
    [outcome] = _send(driver, [message])
    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error.startswith("template error")


def test_a_550_fails_that_recipient_and_the_others_are_delivered(server: tuple[Recorder, int]) -> None:
    handler, port = server
    handler.refuse["nobody@example.com"] = "550 5.1.1 No such user"
    outcomes = _send(_driver(_config(port)), [_message(1), _message(2, "nobody@example.com"), _message(3)])
    assert [o.status for o in outcomes] == ["delivered", "failed", "delivered"]
    assert outcomes[1].error == "recipient refused: 550 5.1.1 No such user"
    assert [m[1] for m in handler.mails] == [["ada@example.com"], ["ada@example.com"]]


def test_a_451_is_retried(server: tuple[Recorder, int]) -> None:
    handler, port = server
    handler.refuse["busy@example.com"] = "451 4.7.1 Greylisted, try again later"
    outcomes = _send(_driver(_config(port)), [_message(1, "busy@example.com"), _message(2)])
    assert outcomes[0] == Outcome.again("recipient refused: 451 4.7.1 Greylisted, try again later")
    assert outcomes[1] == Outcome.ok()


def test_a_421_closes_the_connection_and_the_rest_are_retried(server: tuple[Recorder, int]) -> None:
    handler, port = server
    handler.refuse["busy@example.com"] = "421 4.3.2 Too busy, closing"
    outcomes = _send(_driver(_config(port)), [_message(1), _message(2, "busy@example.com"), _message(3)])
    assert [o.status for o in outcomes] == ["delivered", "retry", "retry"]
    assert outcomes[2].error is not None and outcomes[2].error.startswith("not sent")
    assert len(handler.mails) == 1


def test_nothing_listening_retries_every_message() -> None:
    driver = _driver(_config(_free_port()))
    outcomes = _send(driver, [_message(1), _message(2, None), _message(3)])
    assert [o.status for o in outcomes] == ["retry", "failed", "retry"]
    assert outcomes[0].error is not None and "cannot reach SMTP server 127.0.0.1" in outcomes[0].error


def test_a_server_that_never_answers_times_out_and_is_retried() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        driver = _driver(_config(silent.getsockname()[1], timeout_seconds=0.3))
        [outcome] = _send(driver, [_message(1)])
    assert outcome.status == "retry"
    assert outcome.error is not None and "Timeout" in outcome.error


class Passwords:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.users.get(auth_data.login.decode()) == auth_data.password.decode()
        )
        return AuthResult(success=ok, handled=False)


def test_login_with_username_and_password() -> None:
    handler = Recorder()
    controller = _start(handler, authenticator=Passwords({"shop": "s3cret"}), auth_require_tls=False)
    try:
        config = _config(controller.port, username="shop")
        assert _send(_driver(config, secret="s3cret"), [_message(1)]) == [Outcome.ok()]
        outcomes = _send(_driver(config, secret="wrong"), [_message(2), _message(3)])
        assert [o.status for o in outcomes] == ["failed", "failed"]
        assert outcomes[0].error is not None
        assert "refused the login of 'shop' (535" in outcomes[0].error
        assert "check the username and password" in outcomes[0].error
        [no_password] = _send(_driver(config), [_message(4)])
        assert no_password.status == "failed" and "no password" in (no_password.error or "")
        assert len(handler.mails) == 1
    finally:
        controller.stop()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, made here (no network, no openssl binary)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def test_starttls_then_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    handler = Recorder()
    controller = _start(
        handler, authenticator=Passwords({"shop": "s3cret"}), tls_context=context, require_starttls=True
    )
    try:
        # the driver verifies certificates: an unknown one is refused (worth retrying: it may be renewed)
        [untrusted] = _send(_driver(_config(controller.port, security="starttls")), [_message(1)])
        assert untrusted.status == "retry" and "CERTIFICATE_VERIFY_FAILED" in (untrusted.error or "")
        # trust our test certificate the standard way
        monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
        config = _config(controller.port, security="starttls", username="shop")
        assert _send(_driver(config, secret="s3cret"), [_message(1)]) == [Outcome.ok()]
        assert len(handler.mails) == 1
        # without STARTTLS this server refuses to take mail
        [plain] = _send(_driver(_config(controller.port)), [_message(2)])
        assert plain.status == "failed" and "530" in (plain.error or "")
    finally:
        controller.stop()


def test_settings_the_server_does_not_support_fail_clearly(server: tuple[Recorder, int]) -> None:
    handler, port = server
    [no_starttls] = _send(_driver(_config(port, security="starttls")), [_message(1)])
    assert no_starttls.status == "failed" and "STARTTLS" in (no_starttls.error or "")
    [no_auth] = _send(_driver(_config(port, username="shop"), secret="pw"), [_message(2)])
    assert no_auth.status == "failed" and "AUTH" in (no_auth.error or "")
    assert handler.mails == []


def test_a_display_name_in_to(server: tuple[Recorder, int]) -> None:
    handler, port = server
    to = "{{ profile.traits.first_name }} <{{ profile.traits.email }}>"
    assert _send(_driver(_config(port, to=to)), [_message(1)]) == [Outcome.ok()]
    assert handler.mails[0][1] == ["ada@example.com"]
    assert handler.mails[0][2]["To"] == "Ada <ada@example.com>"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"host": None}, "host"),
        ({"host": "smtp://relay"}, "host"),
        ({"port": 0}, "port"),
        ({"port": "25"}, "port"),
        ({"port": 70000}, "port"),
        ({"security": "tls"}, "security"),
        ({"from_address": "The Shop"}, "from_address"),
        ({"from_address": None}, "from_address"),
        ({"from_address": "a..b@shop.example"}, "from_address"),
        ({"security": ["none"]}, "security"),
        ({"reply_to": "nope"}, "reply_to"),
        ({"subject": ""}, "subject"),
        ({"subject": "Hello {{ profile.traits.first_name"}, "subject"),
        ({"text": "{% if %}"}, "text"),
        ({"html": "<p>{{ 1 + }}</p>"}, "html"),
        ({"to": "{{ profile.traits.email }"}, "to"),
        ({"unsubscribe_url": "https://x/{{ }}"}, "unsubscribe_url"),
        ({"text": None, "html": None}, "text"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"from_name": "a\nBcc: x@y.example"}, "from_name"),
        ({"hostname": "typo"}, "hostname"),
    ],
)
def test_config_errors_name_the_field(change: dict[str, Any], field: str) -> None:
    config = _config(25)
    for key, value in change.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    with pytest.raises(DestinationConfigError) as caught:
        SmtpDriver.validate(config)
    assert caught.value.field == field


def test_validate_fills_in_defaults() -> None:
    config = SmtpDriver.validate(
        {"host": "relay.example", "from_address": "a@b.example", "subject": "Hi", "text": "x"}
    )
    assert config["port"] == 587 and config["security"] == "starttls"
    assert config["to"] == "{{ profile.traits.email }}"
    assert config["timeout_seconds"] == 30
    assert SmtpDriver.validate({**config, "security": "ssl", "port": None})["port"] == 465
    assert SmtpDriver.validate(config) == config, "validating stored config again changes nothing"
