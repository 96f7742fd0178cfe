"""Authentication: write keys for the collection API, scoped bearer API keys for /api.

API keys have a role, the widest scope they hold: admin ⊇ export ⊇ read ⊇ metrics. A route declares the
scope it needs with `ReadKey`, `ExportKey` or `AdminKey`; an unknown or disabled key gets 401, a
key without the scope 403 naming the scope. Secrets are compared as hashes (see `access.keys`).
Also here, because they guard the same door: the per-write-key rate limit of /v1 and the refusal
of text no database can store (NUL, unpaired surrogates) in /api parameters and bodies.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from opencdp.access.keys import SCOPES, ApiKey, Source, grants
from opencdp.access.ratelimit import TokenBuckets
from opencdp.api.errors import ApiError
from opencdp.system import OpenCDP

_BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="opencdp"'}


def write_key_from_header(request: Request) -> str | None:
    """The Segment convention: HTTP Basic with the write key as user name and no password."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise ApiError(
            401,
            "unauthorized",
            "use HTTP Basic auth with the write key as user name",
            headers=_BASIC_CHALLENGE,
        )
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(
            401, "unauthorized", "the Authorization header is not valid Basic auth", headers=_BASIC_CHALLENGE
        ) from None
    return decoded.partition(":")[0]


def source_for(cdp: OpenCDP, write_key: str | None) -> Source:
    if not write_key:
        raise ApiError(
            401,
            "unauthorized",
            "a write key is required (HTTP Basic user name or writeKey)",
            headers=_BASIC_CHALLENGE,
        )
    source = cdp.keys.source_for(write_key)
    if source is None:
        raise ApiError(401, "unauthorized", "unknown or disabled write key", headers=_BASIC_CHALLENGE)
    return source


def check_rate(request: Request, source: Source) -> None:
    """429 with Retry-After when the source has used up its token bucket (`OPENCDP_RATE_LIMIT`)."""
    buckets: TokenBuckets | None = getattr(request.app.state, "rate_limits", None)
    if buckets is None:
        return
    wait = buckets.take(source.id)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests for this write key (at most {buckets.limit.rate:g} per second, "
            f"bursts of {buckets.limit.burst}); nothing was stored, retry after {seconds} s",
            headers={"Retry-After": str(seconds)},
        )


class MissingScope(ApiError):
    """403 whose body also carries `required_scope`, so a client can tell which key it needs."""

    def __init__(self, scope: str, role: str) -> None:
        super().__init__(
            403, "forbidden", f"this endpoint needs the {scope!r} scope; this key's role {role!r} lacks it"
        )
        self.scope = scope

    def body(self) -> dict[str, Any]:
        return {**super().body(), "required_scope": self.scope}


_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `opencdp keys create --role metrics|read|export|admin`. "
    "admin may do everything; export may also list and export segment members and export personal "
    "data; read may read profiles, events, segments and traits, preview segments and list destinations "
    "(never their secrets), forwarding rules, audience syncs and deliveries; metrics may "
    "only scrape /metrics. A public decide key (`--role decide`, pk_…) opens only POST /v1/decide.",
)
_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="opencdp"'}
#: The bearer credentials, if any, for a route that checks them itself (GET /metrics).
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def require(scope: str) -> Callable[..., ApiKey]:
    """A FastAPI dependency: the request's API key, which must hold `scope`."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def api_key(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> ApiKey:
        if credentials is None or not credentials.credentials.strip():
            raise ApiError(
                401,
                "unauthorized",
                f"an API key with the {scope!r} scope is required: Authorization: Bearer <key>",
                headers=_BEARER_CHALLENGE,
            )
        cdp: OpenCDP = request.app.state.cdp
        key = cdp.keys.api_key_for(credentials.credentials.strip())
        if key is None:
            raise ApiError(401, "unauthorized", "unknown or disabled API key", headers=_BEARER_CHALLENGE)
        if not grants(key.role, scope):
            raise MissingScope(scope, key.role)
        for name, value in [*request.path_params.items(), *request.query_params.multi_items()]:
            if isinstance(value, str) and not is_storable(value):
                raise ApiError(
                    400, "invalid_request", f"{name}: {UNSTORABLE}", [{"field": name, "problem": UNSTORABLE}]
                )
        return key

    api_key.__name__ = f"{scope}_key"
    return api_key


metrics_key = require("metrics")
read_key = require("read")
export_key = require("export")
admin_key = require("admin")

ReadKey = Annotated[ApiKey, Depends(read_key)]
ExportKey = Annotated[ApiKey, Depends(export_key)]
AdminKey = Annotated[ApiKey, Depends(admin_key)]


# --- Text the database cannot store --------------------------------------------------------------
# PostgreSQL refuses NUL in text, and neither driver encodes an unpaired surrogate (which JSON can
# carry as "\ud800"). Such input is refused with 400 at the edge instead of failing as a 500 deep
# in a query. Path and query parameters are checked by `require`, bodies by `storable`.

UNSTORABLE = "text may not contain NUL characters or unpaired surrogates"
T = TypeVar("T")


def is_storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check(value: Any, nul_in_values_ok: bool) -> None:
    stack = [value.model_dump() if isinstance(value, BaseModel) else value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not is_storable(item) and not (nul_in_values_ok and is_storable(item.replace("\x00", ""))):
                raise ValueError(UNSTORABLE)
        elif isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str) and not is_storable(key):
                    raise ValueError(UNSTORABLE)
                stack.append(inner)
        elif isinstance(item, list | tuple):
            stack.extend(item)


def storable(value: T) -> T:
    """A pydantic AfterValidator: every string inside `value`, keys included, can be stored."""
    _check(value, nul_in_values_ok=False)
    return value


def storable_rows(rows: T) -> T:
    """Like `storable`, but NUL in a value is left to the import, which rejects that row alone."""
    _check(rows, nul_in_values_ok=True)
    return rows
