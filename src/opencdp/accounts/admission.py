"""Admission control for the customer face: a sign-in flood must not starve collection.

The hosted pages, the OpenID endpoints and the preference centre share one server process (and
one interpreter lock) with the collector. One full sign-in costs the server tens of milliseconds
of Python besides the password hash; fifty a second need more than the one core the process
has, and unbounded they queue inside the process, where every waiting request takes its turns at
the interpreter lock with the collector's — whose answers then took seconds (BENCHMARKS.md).

So at most `concurrency` customer-face requests are worked on at once; the next `queue` wait for
a turn in arrival order (in the event loop, holding no thread), for at most `wait_seconds`; beyond
that the answer is at once 503 with `Retry-After`, a page for browsers and the OAuth error
`temporarily_unavailable` for the token and userinfo endpoints. Nothing else is bounded here:
the collector, the decide API and the dashboard never wait for a customer-face turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from opencdp import logs, metrics

log = logs.get("opencdp.accounts")

#: the paths of the customer face (everything the customer's browser or a relying party calls)
PREFIXES = ("/accounts/", "/preferences/", "/.well-known/openid-configuration", "/.well-known/jwks.json")
#: answered as OAuth endpoints (JSON), not pages
_MACHINE_PATHS = ("/accounts/token", "/accounts/userinfo", "/accounts/jwks", "/.well-known/")
_PAGE = (
    b"<!doctype html><html><head><meta charset=utf-8><title>Busy</title></head><body>"
    b"<h1>Just a moment</h1><p>Many people are signing in right now. Please try again in a few seconds.</p>"
    b"</body></html>"
)


SCOPE_KEY = "opencdp.admission"


def is_customer_face(path: str) -> bool:
    return path.startswith(PREFIXES)


class _Turn:
    """A request's turn, which it may give up while it only waits (`paused`)."""

    def __init__(self, turns: asyncio.Semaphore) -> None:
        self._turns = turns
        self.held = True

    def end(self) -> None:
        if self.held:
            self.held = False
            self._turns.release()

    async def again(self) -> None:
        await self._turns.acquire()
        self.held = True


@contextlib.asynccontextmanager
async def paused(scope: Scope) -> AsyncIterator[None]:
    """Give the request's turn to the next one while this one only waits (an e-mail being sent,
    processing to catch up): turns bound work, not waiting. A no-op outside the middleware."""
    turn: _Turn | None = scope.get(SCOPE_KEY)
    if turn is None or not turn.held:
        yield
        return
    turn.end()
    try:
        yield
    finally:
        await turn.again()


class CustomerFaceAdmission:
    """Pure ASGI middleware: bounded concurrency and a bounded, time-limited queue for the
    customer face; every other path passes straight through."""

    def __init__(
        self, app: ASGIApp, concurrency: int = 2, queue: int = 64, wait_seconds: float = 10.0
    ) -> None:
        self.app = app
        self.concurrency, self.queue, self.wait_seconds = concurrency, queue, wait_seconds
        self._turns: asyncio.Semaphore | None = None  # made in the serving event loop
        self._waiting = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_customer_face(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        if self._turns is None:
            self._turns = asyncio.Semaphore(self.concurrency)
        turns = self._turns
        if turns.locked() and self._waiting >= self.queue:
            await self._refuse(scope, send, "queue full")
            return
        self._waiting += 1
        started = time.monotonic()
        try:
            await asyncio.wait_for(turns.acquire(), self.wait_seconds)
        except TimeoutError:
            await self._refuse(scope, send, "waited too long")
            return
        finally:
            self._waiting -= 1
        metrics.record_admission_wait(time.monotonic() - started)
        turn = _Turn(turns)
        scope[SCOPE_KEY] = turn
        try:
            await self.app(scope, receive, send)
        finally:
            turn.end()

    def in_flight(self) -> int:
        return 0 if self._turns is None else self.concurrency - self._turns._value

    async def _refuse(self, scope: Scope, send: Send, why: str) -> None:
        path = scope.get("path", "")
        metrics.record_admission_refused()
        log.info("customer face busy; answered 503", path=path, why=why)
        if path.startswith(_MACHINE_PATHS):
            body = orjson.dumps(
                {"error": "temporarily_unavailable", "error_description": "too many requests; retry shortly"}
            )
            content_type = b"application/json"
        else:
            body, content_type = _PAGE, b"text/html; charset=utf-8"
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", b"2"),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
