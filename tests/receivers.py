"""A real HTTP receiver for destination tests: a threaded server on localhost that records every
request and answers as the test tells it (ok, an HTTP error, 429 with Retry-After, or a delay)."""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    """Start with `start()`; `status`/`retry_after`/`delay` say how to answer; `stop()` makes the
    port refuse connections until `start()` again (same port)."""

    port: int = 0
    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0
    #: answer these idempotency keys with this status instead (e.g. one poisoned message)
    per_key: dict[str, int] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    #: requests that reached the handler (before its delay and answer)
    started: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Receiver:
        if not self.port:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.started += 1
                if receiver.delay:
                    time.sleep(receiver.delay)
                key = self.headers.get("Idempotency-Key", "")
                status = receiver.per_key.get(key, receiver.status)
                if 200 <= status < 300:
                    with receiver._lock:
                        receiver.received.append(
                            Received(
                                self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                            )
                        )
                answer = b'{"ok": true}' if status < 300 else b'{"error": "test"}'
                self.send_response(status)
                if status == 429 and receiver.retry_after:
                    self.send_header("Retry-After", receiver.retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def idempotency_keys(self) -> list[str]:
        with self._lock:
            return [r.headers.get("idempotency-key", "") for r in self.received]

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.json() for r in self.received]


def verify_signature(secret: str, received: Received, tolerance: float = 300.0) -> bool:
    """What a receiver does (docs/activation.md): recompute the HMAC and refuse stale timestamps."""
    stamp = received.headers["x-opencdp-timestamp"]
    if abs(time.time() - int(stamp)) > tolerance:
        return False
    expected = (
        "v1=" + hmac.new(secret.encode(), stamp.encode() + b"." + received.body, hashlib.sha256).hexdigest()
    )
    return hmac.compare_digest(expected, received.headers["x-opencdp-signature"])


class MailRecorder:
    """An aiosmtpd handler that keeps what it receives and refuses chosen recipients."""

    def __init__(self) -> None:
        self.mails: list[tuple[str, list[str], Any, Any]] = []
        self.refuse: dict[str, str] = {}

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import email
        import email.policy

        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), parsed, session.peer))
        return "250 Message accepted"

    def to(self, address: str) -> list[Any]:
        """The mails received for one recipient, in order."""
        return [m[2] for m in self.mails if address in m[1]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_mail_server(handler: MailRecorder, **kwargs: Any) -> Any:
    """A real SMTP server (aiosmtpd) on a free local port; `.port`, `.stop()`."""
    from aiosmtpd.controller import Controller

    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller
