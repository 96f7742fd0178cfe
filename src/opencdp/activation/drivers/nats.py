"""NATS JetStream: each delivery is published to a subject and acknowledged by the stream storing it.

JetStream rather than core NATS because core NATS acknowledges nothing: a message published while
nobody listens is gone, yet would count as delivered. A JetStream PubAck means the message is
stored. The idempotency key travels as `Nats-Msg-Id`, so a retry after a lost acknowledgement is
stored once (the server drops a repeated id within the stream's duplicate window, two minutes
unless the stream says otherwise).

A batch is published in order on one connection without waiting for each acknowledgement, then
the acknowledgements are collected: one round trip per batch instead of one per message.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from opencdp import logs
from opencdp.activation.drivers import common
from opencdp.activation.drivers.base import DestinationConfigError, Driver, Message, Outcome
from opencdp.activation.templates import TemplateProblem, render_text

log = logs.get(__name__)

DEFAULTS: dict[str, Any] = {
    "servers": ["nats://127.0.0.1:4222"],
    "body": None,
    "stream": None,
    "create_stream": False,
    "stream_subjects": None,
    "user": None,
    "timeout_seconds": 10.0,
}
SCHEMES = ("nats", "tls", "ws", "wss")
#: a token of a subject one publishes to: no wildcards, whitespace or control characters
_TOKEN = re.compile(r"^[^\s*>\x00-\x1f\x7f]+$")
_FILTER_TOKEN = re.compile(r"^(\*|>|[^\s*>\x00-\x1f\x7f]+)$")
_STREAM_NAME = re.compile(r"^[^\s.*>/\\\x00-\x1f\x7f]{1,255}$")
#: subject, payload, headers
Prepared = tuple[str, bytes, dict[str, str]]


def subject_problem(subject: str) -> str | None:
    """Why `subject` cannot be published to, or None."""
    if not subject:
        return "the subject is empty"
    tokens = subject.split(".")
    if any(not token for token in tokens):
        return f"subject {subject!r} has an empty token (a leading, trailing or double dot)"
    if not all(_TOKEN.match(token) for token in tokens):
        return f"subject {subject!r} has whitespace, a wildcard (* or >) or a control character"
    return None


def _filter_problem(subject_filter: str) -> str | None:
    tokens = subject_filter.split(".")
    if not all(token and _FILTER_TOKEN.match(token) for token in tokens) or ">" in tokens[:-1]:
        return f"{subject_filter!r} is not a subject filter"
    return None


def covers(subject_filter: str, subject: str) -> bool:
    """Whether a stream's subject filter (with * and > wildcards) matches the subject."""
    wanted, tokens = subject_filter.split("."), subject.split(".")
    for i, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > i
        if i >= len(tokens) or (token != "*" and token != tokens[i]):
            return False
    return len(wanted) == len(tokens)


def default_stream_subjects(subject_template: str) -> list[str] | None:
    """What a stream created for `subject_template` stores: the subject itself when it is not a
    template, else everything under its literal leading tokens (`cdp.{{ kind }}` → `cdp.>`)."""
    if "{" not in subject_template:
        return [subject_template]
    prefix = subject_template[: subject_template.index("{")]
    if "." not in prefix:
        return None
    return [prefix[: prefix.rindex(".")] + ".>"]


@dataclass
class NatsDriver(Driver):
    """Publishes to NATS JetStream; `secret` is the password (with `user`) or else the token."""

    kind: ClassVar[str] = "nats"

    _nc: Client | None = field(default=None, init=False, repr=False)
    _js: JetStreamContext | None = field(default=None, init=False, repr=False)
    _stream_subjects: list[str] | None = field(default=None, init=False, repr=False)

    @classmethod
    def validate(cls, config: dict[str, Any]) -> dict[str, Any]:
        out = common.settings(config, DEFAULTS, required=("subject",))
        servers = [out["servers"]] if isinstance(out["servers"], str) else out["servers"]
        if not isinstance(servers, list) or not servers:
            raise DestinationConfigError("servers", "must be a list of nats:// URLs")
        for server in servers:
            parts = urlsplit(server) if isinstance(server, str) else None
            if parts is None or parts.scheme not in SCHEMES or not parts.hostname:
                raise DestinationConfigError("servers", f"{server!r} is not a nats:// (or tls://) URL")
            if parts.username or parts.password:
                raise DestinationConfigError(
                    "servers", "no credentials in the URL: set `user` and keep the password or token secret"
                )
        out["servers"] = servers
        subject = common.text_template(out, "subject")
        if "{" not in subject and (problem := subject_problem(subject)):
            raise DestinationConfigError("subject", problem)
        out["body"] = common.body_template(out)
        stream = common.optional_text(out, "stream")
        if stream is not None and not _STREAM_NAME.match(stream):
            raise DestinationConfigError("stream", "a stream name has no spaces, dots, *, >, / or \\")
        if common.flag(out, "create_stream") and stream is None:
            raise DestinationConfigError("create_stream", "needs `stream`, the name of the stream to create")
        if out["stream_subjects"] is not None:
            if not out["create_stream"]:
                raise DestinationConfigError("stream_subjects", "only used with create_stream")
            subjects = out["stream_subjects"]
            if (
                not isinstance(subjects, list)
                or not subjects
                or not all(isinstance(s, str) for s in subjects)
            ):
                raise DestinationConfigError("stream_subjects", "must be a list of subject filters")
            for subject_filter in subjects:
                if problem := _filter_problem(subject_filter):
                    raise DestinationConfigError("stream_subjects", problem)
        elif out["create_stream"] and default_stream_subjects(subject) is None:
            raise DestinationConfigError(
                "stream_subjects", "give the subjects the stream stores (the subject starts with a template)"
            )
        common.optional_text(out, "user")
        out["timeout_seconds"] = common.timeout(out)
        return out

    def batch_size(self) -> int:
        return 500

    @property
    def _timeout(self) -> float:
        return float(self.config["timeout_seconds"])

    async def send(self, messages: list[Message]) -> list[Outcome]:
        try:
            js = await self._jetstream()
        except Exception as exc:
            error = f"cannot connect to NATS at {', '.join(self.config['servers'])}: {self._describe(exc)}"
            return [Outcome.again(error) for _ in messages]
        prepared = [self._prepare(message) for message in messages]
        if self.config["stream"] is not None:
            problem = await self._check_stream(js, {p[0] for p in prepared if isinstance(p, tuple)})
            if isinstance(problem, Outcome):
                return [problem for _ in messages]
            prepared = [
                p if isinstance(p, Outcome) or p[0] not in problem else problem[p[0]] for p in prepared
            ]
        return await self._publish(js, prepared)

    def _prepare(self, message: Message) -> Prepared | Outcome:
        """The subject, payload and headers of one message, or why it cannot be sent."""
        try:
            subject = render_text(self.config["subject"], message.context)
            payload = common.payload(self.config, message)
        except TemplateProblem as exc:
            return Outcome.fail(str(exc))
        if problem := subject_problem(subject):
            return Outcome.fail(problem)
        headers = {"Nats-Msg-Id": message.key, "Content-Type": "application/json"}
        limit = self._nc.max_payload if self._nc is not None else 0
        if limit and len(payload) > limit:
            return Outcome.fail(f"the message has {len(payload)} bytes; the server takes at most {limit}")
        return subject, payload, headers

    async def _publish(self, js: JetStreamContext, prepared: list[Prepared | Outcome]) -> list[Outcome]:
        """Publish everything in order, then wait (once, for the whole batch) for the acks."""
        if self._nc is not None and self._nc.is_reconnecting:
            return [Outcome.again("the connection to NATS is lost; reconnecting") for _ in prepared]
        stream = self.config["stream"]
        slots: list[tuple[asyncio.Future[Any] | Outcome, str]] = []
        for i, item in enumerate(prepared):
            if isinstance(item, Outcome):
                slots.append((item, ""))
                continue
            subject, payload, headers = item
            try:
                # No wait_stall: it would cost a task (and with it a socket write) per message; a
                # batch stays far below the client's 4,000 unacknowledged publishes.
                future = await js.publish_async(subject, payload, stream=stream, headers=headers)
            except Exception as exc:
                # The client keeps the ack slot of a publish that raised: start a fresh context.
                self._js = None
                again = Outcome.again(f"publishing to NATS failed: {self._describe(exc)}")
                slots.extend((p if isinstance(p, Outcome) else again, "") for p in prepared[i:])
                break
            slots.append((future, subject))
        futures = [slot for slot, _ in slots if isinstance(slot, asyncio.Future)]
        if futures:
            _, late = await asyncio.wait(futures, timeout=self._timeout)
            for future in late:
                future.cancel()
        return [
            slot if isinstance(slot, Outcome) else self._outcome(slot, subject) for slot, subject in slots
        ]

    def _outcome(self, future: asyncio.Future[Any], subject: str) -> Outcome:
        if future.cancelled():
            return Outcome.again(f"no acknowledgement from JetStream within {self._timeout:g} s")
        exc = future.exception()
        if exc is None:
            return Outcome.ok()  # a PubAck with duplicate=True: stored before, under the same Nats-Msg-Id
        if isinstance(exc, nats.js.errors.NoStreamResponseError | nats.errors.NoRespondersError):
            self._stream_subjects = None  # the stream may be gone: look it up (or create it) again
            return Outcome.fail(
                f"no JetStream stream stores subject {subject!r}: create a stream whose subjects cover it"
            )
        if isinstance(exc, nats.js.errors.APIError) and exc.code is not None and exc.code < 500:
            return Outcome.fail(f"JetStream refused the message: {exc.description} (error {exc.err_code})")
        return Outcome.again(f"JetStream did not store the message: {self._describe(exc)}")

    async def _check_stream(self, js: JetStreamContext, subjects: set[str]) -> Outcome | dict[str, Outcome]:
        """Look the stream up at the first send (and again when a subject falls outside it),
        creating it if asked to. An Outcome for the whole batch when the stream cannot be used,
        else one for each subject it does not store."""
        stream = self.config["stream"]
        uncovered: list[str] = []
        for refresh in (False, True):
            if self._stream_subjects is None or refresh:
                try:
                    self._stream_subjects = await self._stream_info(js, stream)
                except nats.js.errors.NotFoundError:
                    return Outcome.fail(
                        f"JetStream stream {stream!r} does not exist: create it (or, in development, set "
                        "create_stream)"
                    )
                except nats.errors.NoRespondersError:
                    return Outcome.fail("no JetStream on the NATS server: is it enabled?")
                except Exception as exc:
                    return Outcome.again(f"cannot look up JetStream stream {stream!r}: {self._describe(exc)}")
            uncovered = [s for s in subjects if not any(covers(f, s) for f in self._stream_subjects)]
            if not uncovered:
                break
        listed = ", ".join(self._stream_subjects or []) or "none"
        return {
            s: Outcome.fail(f"JetStream stream {stream!r} (subjects {listed}) does not store subject {s!r}")
            for s in uncovered
        }

    async def _stream_info(self, js: JetStreamContext, stream: str) -> list[str]:
        try:
            info = await js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            if not self.config["create_stream"]:
                raise
            subjects = self.config["stream_subjects"] or default_stream_subjects(self.config["subject"])
            info = await js.add_stream(name=stream, subjects=subjects)
            log.info("nats stream created", stream=stream, subjects=subjects)
        return list(info.config.subjects or [])

    async def _jetstream(self) -> JetStreamContext:
        """The driver's one connection, opened at first use and again once it has been closed;
        while it is merely broken, the client reconnects in the background on its own."""
        if self._nc is None or self._nc.is_closed:
            self._nc, self._js, self._stream_subjects = await self._connect(), None, None
        if self._js is None:
            self._js = self._nc.jetstream(timeout=self._timeout)
        return self._js

    async def _connect(self) -> Client:
        client = Client()

        async def on_error(exc: Exception) -> None:
            log.debug("nats connection error", error=self._describe(exc))

        async def on_disconnected() -> None:
            if self._nc is client:  # not when close() is the cause
                log.warning("nats disconnected", servers=self.config["servers"])

        async def on_reconnected() -> None:
            log.info("nats reconnected", servers=self.config["servers"])

        credentials: dict[str, str] = {}
        if self.config["user"] is not None:
            credentials = {"user": self.config["user"], "password": self.secret or ""}
        elif self.secret:
            credentials = {"token": self.secret}
        try:
            await asyncio.wait_for(
                client.connect(
                    servers=self.config["servers"],
                    name="opencdp",
                    connect_timeout=max(1, round(self._timeout)),
                    reconnect_time_wait=1,
                    max_reconnect_attempts=-1,  # a long-lived worker: keep trying, report `retry` meanwhile
                    error_cb=on_error,
                    disconnected_cb=on_disconnected,
                    reconnected_cb=on_reconnected,
                    **credentials,  # type: ignore[arg-type]
                ),
                self._timeout,
            )
        except BaseException:
            await client.close()
            raise
        return client

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, asyncio.TimeoutError | nats.errors.TimeoutError):
            return f"timed out after {self._timeout:g} s"
        return common.describe(exc, self.secret)

    async def close(self) -> None:
        """Drain (publishes in flight finish), or close outright when draining cannot work."""
        client, self._nc, self._js = self._nc, None, None
        if client is None or client.is_closed:
            return
        try:
            await asyncio.wait_for(client.drain(), self._timeout)
        except Exception:
            await client.close()
