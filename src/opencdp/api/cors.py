"""CORS for the browser-facing API under /v1: collection (analytics.js posts from the shop's own
origin), the analytics.js settings document and the decide API.

Only /v1/* answers other origins; the dashboard and /api/* stay same-origin (no CORS headers at all,
so a browser refuses to let another site read them). Allowed origins come from
`OPENCDP_CORS_ORIGINS`: `*` (the default: write keys and decide keys are public anyway, and nothing
is sent with cookies) or a comma-separated list of origins such as `https://shop.example`.

A preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here with 204 and never
reaches a route; every other response of /v1 gets `Access-Control-Allow-Origin`, errors too, so the
browser lets analytics.js see a 429's status and `Retry-After` and retry. CORS headers a route sets
itself are replaced by these, so that `OPENCDP_CORS_ORIGINS` holds for every /v1 route.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/v1/"
ALLOW_METHODS = "GET, POST, OPTIONS"
#: what analytics.js and opencdp.js send: Basic/Bearer auth, the JSON (text/plain) body, retries
ALLOW_HEADERS = "Authorization, Content-Type, X-Retry-Count"
EXPOSE_HEADERS = "Retry-After"
MAX_AGE = "600"


class Cors:
    """ASGI middleware: CORS headers for /v1/*, nothing anywhere else."""

    def __init__(self, app: ASGIApp, origins: Iterable[str] = ("*",)) -> None:
        self.app = app
        self.origins = tuple(origins)
        self.any_origin = "*" in self.origins

    def _allow(self, origin: str | None) -> str | None:
        if self.any_origin:
            return "*"
        if origin and origin.rstrip("/") in self.origins:
            return origin
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        allowed = self._allow(headers.get("origin"))
        common: list[tuple[bytes, bytes]] = []
        if not self.any_origin:
            common.append((b"vary", b"Origin"))
        if allowed:
            common.append((b"access-control-allow-origin", allowed.encode("latin-1")))

        if scope["method"] == "OPTIONS":
            extra = [
                (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                (b"access-control-max-age", MAX_AGE.encode()),
                (b"allow", ALLOW_METHODS.encode()),
                (b"content-length", b"0"),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": common + extra})
            await send({"type": "http.response.body", "body": b""})
            return

        if allowed:
            common.append((b"access-control-expose-headers", EXPOSE_HEADERS.encode()))

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                # one policy for all of /v1: a route's own CORS headers give way to this one's
                # (two Access-Control-Allow-Origin headers make a browser refuse the response)
                kept = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if not k.lower().startswith(b"access-control-")
                ]
                message = {**message, "headers": [*kept, *common]}
            await send(message)

        await self.app(scope, receive, send_with_cors)
