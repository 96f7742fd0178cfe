"""E-mail through the user's own SMTP relay: one message per delivery, rendered from templates.

A batch shares one connection. The relay's reply decides the outcome: 4xx and network trouble are
worth retrying, 5xx is not (a 550 for an unknown mailbox will not change by itself). The delivery's
idempotency key becomes the Message-ID and an `X-OpenCDP-Idempotency-Key` header, so a retry that
reaches a relay twice can be recognised downstream.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses
from typing import Any

import aiosmtplib

from opencdp.activation.drivers.base import DestinationConfigError, Driver, Message, Outcome
from opencdp.activation.templates import TemplateProblem, check, render_text

DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
DEFAULTS: dict[str, Any] = {
    "security": "starttls",
    "username": None,
    "from_name": None,
    "to": "{{ profile.traits.email }}",
    "text": None,
    "html": None,
    "reply_to": None,
    "unsubscribe_url": None,
    "timeout_seconds": 30,
}
REQUIRED = ("host", "from_address", "subject")
KNOWN = {*DEFAULTS, *REQUIRED, "port"}
_ATOM = r"[^@\s<>()\[\],;:\"\\]+"
_ADDRESS = re.compile(rf"^{_ATOM}@{_ATOM}\.{_ATOM}$")
#: what may stand left of the @ in a Message-ID (dot-atom text, kept conservative)
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_=+-]+")


class _Unsendable(Exception):
    """This message cannot be sent as it is (template error, no address): it fails alone."""


def _address(value: Any) -> bool:
    if not isinstance(value, str) or not _ADDRESS.match(value):
        return False
    try:
        Address(addr_spec=value)
    except (ValueError, IndexError):  # what the e-mail package refuses (e.g. "a..b@x.example")
        return False
    return True


def _single_line(value: str) -> str:
    return " ".join(value.split())


def message_id(key: str, domain: str) -> str:
    """`<key@domain>` with the key made safe; a hash suffix keeps rewritten keys distinct."""
    safe = _ID_UNSAFE.sub("-", key).strip("-")[:120]
    if safe != key:
        safe = f"{safe}.{hashlib.sha256(key.encode()).hexdigest()[:16]}".lstrip(".")
    return f"<{safe}@{domain}>"


def _by_code(code: int, error: str) -> Outcome:
    """4xx replies are temporary by definition (RFC 5321 §4.2.1); anything else is permanent."""
    return Outcome.again(error) if 400 <= code < 500 else Outcome.fail(error)


def _reply(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {_single_line(exc.message)}"


class SmtpDriver(Driver):
    kind = "smtp"

    @classmethod
    def validate(cls, config: dict[str, Any]) -> dict[str, Any]:
        for key in config:
            if key not in KNOWN:
                raise DestinationConfigError(key, f"unknown setting; known: {', '.join(sorted(KNOWN))}")
        out = {**DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
        for key in REQUIRED:
            if not isinstance(out.get(key), str) or not out[key].strip():
                raise DestinationConfigError(key, "required (a non-empty text)")
        host = out["host"].strip()
        if any(c.isspace() for c in host) or "/" in host:
            raise DestinationConfigError("host", "a host name or IP address, without scheme or spaces")
        out["host"] = host
        if not isinstance(out["security"], str) or out["security"] not in DEFAULT_PORTS:
            raise DestinationConfigError("security", f"one of {', '.join(DEFAULT_PORTS)}")
        port = out.get("port", DEFAULT_PORTS[out["security"]])
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise DestinationConfigError("port", "a whole number from 1 to 65535")
        out["port"] = port
        for key in ("username", "from_name"):
            value = out[key]
            if value is not None and (not isinstance(value, str) or "\n" in value or "\r" in value):
                raise DestinationConfigError(key, "a single line of text")
        for key in ("from_address", "reply_to"):
            if out[key] is not None and not _address(out[key]):
                raise DestinationConfigError(key, "an e-mail address such as news@example.com")
        if out["text"] is None and out["html"] is None:
            raise DestinationConfigError("text", "give a text body, an HTML body or both")
        for key in ("to", "subject", "text", "html", "unsubscribe_url"):
            if out[key] is None:
                continue
            if not isinstance(out[key], str):
                raise DestinationConfigError(key, "a text template")
            try:
                check(out[key], html=key == "html")
            except TemplateProblem as exc:
                raise DestinationConfigError(key, str(exc)) from exc
        timeout = out["timeout_seconds"]
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 600:
            raise DestinationConfigError("timeout_seconds", "a number of seconds above 0, at most 600")
        return out

    async def send(self, messages: list[Message]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(messages)
        ready: list[tuple[int, EmailMessage]] = []
        for i, message in enumerate(messages):
            try:
                ready.append((i, self._compose(message)))
            except _Unsendable as exc:
                outcomes[i] = Outcome.fail(str(exc))
            except (ValueError, TypeError) as exc:  # a header the e-mail package refuses
                outcomes[i] = Outcome.fail(f"cannot build the e-mail: {exc}")
        if ready:
            await self._deliver(ready, outcomes)
        return [o if o is not None else Outcome.again("not attempted") for o in outcomes]

    def _compose(self, message: Message) -> EmailMessage:
        cfg, ctx = self.config, message.context
        try:
            to = render_text(cfg["to"], ctx).strip()
            subject = _single_line(render_text(cfg["subject"], ctx))
            text = render_text(cfg["text"], ctx) if cfg["text"] is not None else None
            html = render_text(cfg["html"], ctx, html=True) if cfg["html"] is not None else None
            unsubscribe = render_text(cfg["unsubscribe_url"], ctx).strip() if cfg["unsubscribe_url"] else ""
        except TemplateProblem as exc:
            raise _Unsendable(f"template error: {exc}") from exc
        mail = EmailMessage()
        mail["From"] = Address(_single_line(cfg["from_name"] or ""), addr_spec=cfg["from_address"])
        mail["To"] = _recipient(to)
        mail["Subject"] = subject
        mail["Date"] = format_datetime(datetime.now(UTC))
        mail["Message-ID"] = message_id(message.key, cfg["from_address"].rpartition("@")[2])
        mail["X-OpenCDP-Idempotency-Key"] = _single_line(message.key)
        if cfg["reply_to"]:
            mail["Reply-To"] = cfg["reply_to"]
        if unsubscribe:
            if not re.match(r"^(https?|mailto):[^\s<>]+$", unsubscribe):
                raise _Unsendable("unsubscribe_url did not render to an https:, http: or mailto: URL")
            mail["List-Unsubscribe"] = f"<{unsubscribe}>"
            if unsubscribe.startswith("https:"):  # RFC 8058 one-click needs an HTTPS URI
                mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        if text is not None:
            mail.set_content(text)
            if html is not None:
                mail.add_alternative(html, subtype="html")
        elif html is not None:
            mail.set_content(html, subtype="html")
        return mail

    def _client(self) -> aiosmtplib.SMTP:
        cfg = self.config
        return aiosmtplib.SMTP(
            hostname=cfg["host"],
            port=cfg["port"],
            use_tls=cfg["security"] == "ssl",
            start_tls=cfg["security"] == "starttls",
            timeout=cfg["timeout_seconds"],
            username=cfg["username"] or None,
            password=self.secret if cfg["username"] else None,
        )

    async def _connect(self) -> aiosmtplib.SMTP | Outcome:
        """A connected, authenticated client, or the outcome every message of the batch gets."""
        cfg = self.config
        where = f"SMTP server {cfg['host']}:{cfg['port']}"
        if cfg["username"] and not self.secret:
            return Outcome.fail(f"{where}: a username is set but no password is stored for it")
        client = self._client()
        try:
            await client.connect()
            return client
        except aiosmtplib.SMTPAuthenticationError as exc:
            error = (
                f"{where} refused the login of {cfg['username']!r} ({_reply(exc)}): "
                "check the username and password, then replay the failed deliveries"
            )
            outcome = _by_code(exc.code, error)
        except aiosmtplib.SMTPResponseException as exc:
            outcome = _by_code(exc.code, f"{where} answered {_reply(exc)} while connecting")
        except OSError as exc:  # refused, unreachable, timed out, TLS handshake failed
            outcome = Outcome.again(f"cannot reach {where}: {type(exc).__name__}: {exc}")
        except aiosmtplib.SMTPException as exc:  # STARTTLS or AUTH not offered: the settings are wrong
            outcome = Outcome.fail(f"{where}: {exc} (check security and username)")
        client.close()
        return outcome

    async def _deliver(self, ready: list[tuple[int, EmailMessage]], outcomes: list[Outcome | None]) -> None:
        connected = await self._connect()
        if isinstance(connected, Outcome):
            for i, _ in ready:
                outcomes[i] = connected
            return
        client = connected
        try:
            for n, (i, mail) in enumerate(ready):
                outcome = outcomes[i] = await self._send_one(client, mail)
                if not client.is_connected and n + 1 < len(ready):
                    lost = Outcome.again(f"not sent: the connection closed ({outcome.error})")
                    for j, _ in ready[n + 1 :]:
                        outcomes[j] = lost
                    return
        finally:
            await _hang_up(client)

    async def _send_one(self, client: aiosmtplib.SMTP, mail: EmailMessage) -> Outcome:
        sender = self.config["from_address"]
        try:
            await client.send_message(mail, sender=sender)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            return _by_code(refused.code, f"recipient refused: {_reply(refused)}")
        except aiosmtplib.SMTPSenderRefused as exc:
            return _by_code(exc.code, f"sender {sender} refused: {_reply(exc)}")
        except aiosmtplib.SMTPResponseException as exc:
            return _by_code(exc.code, f"SMTP server answered {_reply(exc)}")
        except OSError as exc:  # timeouts and disconnections are OSErrors too
            client.close()  # the state of the conversation is unknown: never reuse it
            return Outcome.again(f"connection lost while sending: {type(exc).__name__}: {exc}")
        except aiosmtplib.SMTPNotSupported as exc:  # e.g. a non-ASCII address and no SMTPUTF8
            return Outcome.fail(str(exc))
        except aiosmtplib.SMTPException as exc:
            client.close()
            return Outcome.again(f"SMTP error: {type(exc).__name__}: {exc}")
        except ValueError as exc:  # an address aiosmtplib will not put on the wire
            return Outcome.fail(f"cannot send: {exc}")
        return Outcome.ok()


def _recipient(text: str) -> Address:
    if not text:
        raise _Unsendable("no recipient: the 'to' template rendered empty (does the profile have an e-mail?)")
    pairs = getaddresses([text]) if "\n" not in text and "\r" not in text else []
    if len(pairs) != 1 or not _address(pairs[0][1]):
        raise _Unsendable("no recipient: the 'to' template did not render one valid e-mail address")
    name, addr = pairs[0]
    try:
        return Address(display_name=_single_line(name), addr_spec=addr)
    except (ValueError, IndexError) as exc:
        raise _Unsendable(f"no recipient: the address is not usable ({exc})") from exc


async def _hang_up(client: aiosmtplib.SMTP) -> None:
    if not client.is_connected:
        return
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()
