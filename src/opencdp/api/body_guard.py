"""Slow and vanishing clients: a deadline for the request body, and quiet disconnects.

Without a deadline, a client that opens a request and sends its body a byte at a time (or never)
holds a connection and a task for as long as it likes; a few hundred such clients exhaust the
server. Every request body must arrive whole within `OPENCDP_BODY_TIMEOUT_SECONDS` of the moment
the application starts reading it (a total, so dripping a byte at a time does not reset it);
otherwise the client gets 408 with a JSON body and the connection is closed.

A client that goes away while sending is normal on the internet (a closed tab, a lost mobile
network): it is one line in the log at info level, not a traceback and a 500.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import anyio
import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opencdp import logs

log = logs.get("opencdp.http")
ENV_VAR = "OPENCDP_BODY_TIMEOUT_SECONDS"


@dataclass
class _Exchange:
    deadline: float | None = None
    body_done: bool = False
    response_started: bool = False
    timed_out: bool = False


class BodyGuard:
    """Pure ASGI middleware (no buffering, so streamed responses stay streamed)."""

    def __init__(self, app: ASGIApp, timeout_seconds: float) -> None:
        self.app = app
        self.timeout = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = _Exchange()
        path = scope.get("path", "")

        async def guarded_send(message: Message) -> None:
            if state.timed_out:
                return  # the 408 went out already; whatever the app answers goes nowhere
            if message["type"] == "http.response.start":
                state.response_started = True
            await send(message)

        async def guarded_receive() -> Message:
            if state.timed_out:
                return {"type": "http.disconnect"}
            if state.body_done:
                return await receive()  # e.g. a streaming response listening for a disconnect
            if state.deadline is None:
                state.deadline = anyio.current_time() + self.timeout
            message: Message | None = None
            with anyio.move_on_after(state.deadline - anyio.current_time()):
                message = await receive()
            if message is None:
                state.timed_out = True
                log.info("request body too slow; answered 408", path=path, seconds=self.timeout)
                if not state.response_started:
                    await send(_timeout_start())
                    await send(_timeout_body(self.timeout))
                return {"type": "http.disconnect"}
            if message["type"] == "http.disconnect":
                state.body_done = True
                log.info("client went away while sending the request body", path=path)
            elif not message.get("more_body", False):
                state.body_done = True
            return message

        with contextlib.suppress(ClientDisconnect):  # logged above in one line; nobody left to answer
            await self.app(scope, guarded_receive, guarded_send)


def _timeout_start() -> Message:
    return {
        "type": "http.response.start",
        "status": 408,
        "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
    }


def _timeout_body(seconds: float) -> Message:
    body = {
        "success": False,
        "error": "body_timeout",
        "message": f"the request body did not arrive within {seconds:g} seconds ({ENV_VAR}); "
        "nothing was stored, send it again",
    }
    return {"type": "http.response.body", "body": orjson.dumps(body), "more_body": False}
