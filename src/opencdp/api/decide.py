"""`POST /v1/decide`: what each placement of a page shows to this visitor, in real time.

Keys (docs/personalisation.md, "The decide API"):

- a **public decide-only key** (`pk_…`, `opencdp keys create --role decide`) is meant to be put into
  web pages. It is accepted here and nowhere else (it holds none of the scopes of /api), and its
  answers carry decisions only: content per placement, never a trait value;
- a **secret API key** with at least the `read` scope (servers) may also ask for trait values
  (`"traits": ["first_name"]`) for templating. A secret key is only taken from the Authorization
  header, never from the URL (URLs end up in logs and browser histories).

The key goes in `Authorization: Bearer <key>`, HTTP Basic (the key as user name, as for write
keys), or — public keys only — `?key=<key>`. Cross-origin calls are allowed from the origins in
`OPENCDP_CORS_ORIGINS` (default any site; api/cors.py, never cookies); a script that wants no preflight
sends the body as `text/plain` with `?key=`.

Each decision an experience made is logged as an `Experience Viewed` event of the built-in source
`opencdp-decide`. The rows are handed to the log writer and the answer does **not** wait for their
commit (a decision must not wait for an fsync): an exposure can be lost if the process dies in the
few milliseconds before the writer's next group commit. Visitors on the erasure suppression list
are decided as anyone but nothing is logged for them.
"""

from __future__ import annotations

import base64
import binascii
import threading
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opencdp import logs
from opencdp.access.keys import DECIDE_ROLE, ApiKey, grants
from opencdp.api.auth import MissingScope
from opencdp.api.errors import ApiError
from opencdp.api.http_body import parse_json_object, read_body
from opencdp.api.responses import FastJSONResponse
from opencdp.collect.writer import WriterClosed
from opencdp.personalise.decide import Decider, DecideRequest, DecideRequestError, parse_decide_request
from opencdp.personalise.experiences import DECIDE_SOURCE
from opencdp.personalise.exposures import ExposureMemory
from opencdp.privacy.consent_events import system_source_id
from opencdp.system import OpenCDP

router = APIRouter(prefix="/v1", tags=["decide"])
log = logs.get("opencdp.decide")

#: A decide request is small: identifiers, placements and the page's context.
MAX_BODY_BYTES = 64 * 1024
# CORS (preflights, Access-Control-* on every answer, errors too) is the /v1 policy of api/cors.py.
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="opencdp"'}
#: A decision is for this visitor now: no cache (browser or shared) may keep it.
_ANSWER = {"Cache-Control": "no-store"}
_lock = threading.Lock()


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers=_CHALLENGE)


def presented_key(request: Request) -> tuple[str, bool]:
    """The key the request presents and whether it came in the URL."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip(), False
        if scheme.lower() == "basic":
            try:
                user = base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                raise _unauthorized("the Authorization header is not valid Basic auth") from None
            if user:
                return user, False
        raise _unauthorized("use Authorization: Bearer <key> (or Basic with the key as user name)")
    key = request.query_params.get("key")
    if key:
        return key, True
    raise _unauthorized(
        "a key is required: a public decide key (pk_…) or a secret API key with the 'read' scope, "
        "as Authorization: Bearer <key> (public keys also as ?key=)"
    )


def decide_key(request: Request) -> tuple[ApiKey, bool]:
    """The request's key and whether it may see trait values (secret keys with `read`)."""
    cdp: OpenCDP = request.app.state.cdp
    secret, in_url = presented_key(request)
    try:
        key = cdp.keys.api_key_for(secret)
    except UnicodeEncodeError:
        key = None
    if key is None:
        raise _unauthorized("unknown or disabled key")
    if key.role == DECIDE_ROLE:
        return key, False
    if in_url:
        raise _unauthorized(
            "a secret API key must not travel in a URL; send it as Authorization: Bearer <key> "
            "(only public pk_ keys may be given as ?key=)"
        )
    if not grants(key.role, "read"):
        raise MissingScope("read", key.role)
    return key, True


def decider_of(request: Request) -> Decider:
    """The app's one `Decider` (it caches experiences between decisions), made on first use."""
    state = request.app.state
    found: Decider | None = getattr(state, "decider", None)
    if found is None:
        with _lock:
            found = getattr(state, "decider", None)
            if found is None:
                cdp: OpenCDP = state.cdp
                found = Decider(cdp.engine, cdp.settings, cdp.processor.rules)
                state.decider = found
    return found


def invalidate_decisions(request: Request) -> None:
    """After a change of experiences in this process: decide with it from the next request on."""
    found = getattr(request.app.state, "decider", None)
    if found is not None:
        found.invalidate()


def decide_source_id(request: Request) -> int:
    """The id of the built-in source `opencdp-decide` (created on first use, then cached)."""
    state = request.app.state
    found: int | None = getattr(state, "decide_source_id", None)
    if found is None:
        cdp: OpenCDP = state.cdp
        for attempt in range(2):
            try:
                with cdp.engine.begin() as conn:
                    found = system_source_id(conn, DECIDE_SOURCE)
                break
            except sa.exc.IntegrityError:  # created at the same moment by another process
                if attempt:
                    raise
        state.decide_source_id = found
    assert found is not None
    return found


def _logged(future: Future[None]) -> None:
    exc = future.exception()
    if exc is not None:
        log.warning("exposure events not logged", error=str(exc))


def exposure_memory(request: Request) -> ExposureMemory:
    """The app's memory of logged exposures (one per server process), made on first use."""
    state = request.app.state
    found: ExposureMemory | None = getattr(state, "exposures", None)
    if found is None:
        with _lock:
            found = getattr(state, "exposures", None)
            if found is None:
                cdp: OpenCDP = state.cdp
                found = ExposureMemory(cdp.settings.session_gap_minutes * 60.0)
                state.exposures = found
    return found


def log_exposures(request: Request, rows: list[dict[str, Any]]) -> int:
    """Hand the `Experience Viewed` rows to the log writer without waiting for the commit: the first
    exposure of a visitor to an arm within a visit (`personalise/exposures.py`); rows of visitors
    on the suppression list are dropped. Returns how many rows were handed over."""
    cdp: OpenCDP = request.app.state.cdp
    rows = exposure_memory(request).fresh(rows)
    if not rows:
        return 0
    suppressed = cdp.suppressor.current()
    if suppressed:
        rows = [
            r
            for r in rows
            if not suppressed.is_suppressed(
                {"userId": r.get("user_id"), "anonymousId": r.get("anonymous_id")}
            )
        ]
    if not rows:
        return 0
    try:
        cdp.writer.submit(rows, suppressed.version).add_done_callback(_logged)
    except WriterClosed:
        log.warning("exposure events not logged: the server is shutting down", rows=len(rows))
        return 0
    return len(rows)


REQUEST_EXAMPLE: dict[str, Any] = {
    "anonymousId": "5f1c8e9a-visitor",
    "userId": "u-1042",
    "placements": ["home-hero", "checkout-help"],
    "context": {
        "page": {"url": "https://shop.example/", "path": "/", "referrer": "https://news.example/"},
        "utm": {"source": "newsletter", "campaign": "winter"},
        "device": {"type": "mobile"},
        "locale": "de-DE",
        "timezone": "Europe/Berlin",
        "country": "DE",
        "cart": {"value": 129.5, "items": 3},
    },
}
RESPONSE_EXAMPLE: dict[str, Any] = {
    "decisions": {
        "home-hero": {
            "experience": "winter boots hero",
            "variant": "boots",
            "content": {"html": "<h2>Boots for the snow</h2>"},
            "holdout": False,
            "reason": "matched",
        },
        "checkout-help": {
            "experience": None,
            "variant": None,
            "content": None,
            "holdout": False,
            "reason": "no_experience",
        },
    }
}


@router.post(
    "/decide",
    summary="Decide what each placement shows to this visitor (public pk_ key or secret key)",
    description=(
        "Content per placement for the visitor's anonymousId/userId, from their profile, live session "
        "and the page's context. A public decide-only key (pk_…) gets decisions only; a secret key with "
        "the read scope may also ask for `traits` (values by name). Each decision is logged as an "
        "`Experience Viewed` event (not awaited). Keys: Authorization Bearer or Basic; public keys "
        "also as ?key=."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["placements"],
                        "properties": {
                            "anonymousId": {"type": "string"},
                            "userId": {"type": "string"},
                            "placements": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
                            "context": {"type": "object"},
                            "traits": {
                                "type": "array",
                                "items": {"type": "string"},
                                "description": "Secret keys only: trait values to return",
                            },
                        },
                    },
                    "example": REQUEST_EXAMPLE,
                }
            },
        },
        "responses": {
            "200": {"content": {"application/json": {"example": RESPONSE_EXAMPLE}}},
        },
    },
    responses={
        400: {"description": "Invalid request; `problems` name the paths"},
        401: {"description": "Missing, unknown or disabled key (or a secret key in the URL)"},
        403: {"description": "A key without the read scope, or a public key asking for traits"},
    },
)
async def decide(request: Request) -> Response:
    received_at = datetime.now(UTC)
    _key, secret = decide_key(request)  # before reading a byte of the body
    body = parse_json_object(await read_body(request, MAX_BODY_BYTES))
    try:
        parsed = parse_decide_request(body)
    except DecideRequestError as exc:
        errors = [{"field": p["path"] or "body", "problem": p["problem"]} for p in exc.problems]
        error = ApiError(400, "invalid_request", str(exc), errors)
        return FastJSONResponse({**error.body(), "problems": exc.problems}, status_code=400)
    if parsed.traits and not secret:
        raise ApiError(
            403,
            "forbidden",
            "traits: a public key cannot read trait values; call from your server with a secret key",
            [{"field": "traits", "problem": "not allowed with a public key"}],
        )
    if decider_of(request).is_quick(parsed.placements):
        # a few indexed reads: cheaper in the event loop than a hop to a worker thread and back
        out: dict[str, Any] = _decide(request, parsed, secret, received_at)
    else:
        out = await run_in_threadpool(_decide, request, parsed, secret, received_at)
    return FastJSONResponse(out, headers=_ANSWER)


def _decide(request: Request, parsed: DecideRequest, secret: bool, received_at: datetime) -> dict[str, Any]:
    """The decision and its exposure rows handed to the writer (in a worker thread when it may
    read a profile's whole history)."""
    decision = decider_of(request).decide(parsed, reveal_traits=secret)
    log_exposures(request, decision.exposure_rows(decide_source_id(request), received_at))
    body: dict[str, Any] = decision.as_json()
    return body


class DecideFastPath:
    """ASGI middleware: `POST /v1/decide` answered without FastAPI's router and request machinery.

    At 1,000 decisions/s the server's one core is the limit, and routing a request through some
    twenty routers, the exception and exit-stack middleware and FastAPI's endpoint wrapper cost
    about a third of a decision. This path, inside the timing, CORS and body-guard middleware,
    answers the plain case: a key in the header or the URL, an uncompressed JSON body that fits in
    one read, a valid request without `traits`, experiences that need no worker thread. Anything
    else — every error included — goes on to the route with the body replayed, so the documented
    answers have one implementation."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._route: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/decide" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        received_at = datetime.now(UTC)
        first = await receive()
        answer = self._answer(scope, first, received_at)
        if answer is None:
            await self.app(scope, _replaying(first, receive), send)
            return
        scope["route"] = self._decide_route(scope)  # the request-latency metric's label
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(answer)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    def _answer(self, scope: Scope, first: Message, received_at: datetime) -> bytes | None:
        """The answer's body, or None to leave the request to the route."""
        body = first.get("body", b"")
        if first.get("more_body") or len(body) > MAX_BODY_BYTES:
            return None
        request = Request(scope)
        if request.headers.get("content-encoding"):
            return None
        try:
            _key, secret = decide_key(request)
            parsed = parse_decide_request(parse_json_object(body))
        except (ApiError, MissingScope, DecideRequestError):
            return None
        if parsed.traits or not decider_of(request).is_quick(parsed.placements):
            return None
        return orjson.dumps(_decide(request, parsed, secret, received_at), option=orjson.OPT_NON_STR_KEYS)

    def _decide_route(self, scope: Scope) -> Any:
        if self._route is None:
            self._route = next(
                (r for r in scope["app"].routes if getattr(r, "path", None) == "/v1/decide"), None
            )
        return self._route


def _replaying(first: Message, receive: Receive) -> Receive:
    """`receive` that gives `first` again before what is still to come."""
    pending = [first]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay
