"""Authentication: write keys for the collection API, bearer admin keys for /api."""

from __future__ import annotations

import base64
import binascii

from fastapi import Request

from opencdp.access.keys import ApiKey, Source
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


def admin_key(request: Request) -> ApiKey:
    """FastAPI dependency for /api routes: `Authorization: Bearer <admin key>`."""
    cdp: OpenCDP = request.app.state.cdp
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="opencdp"'}
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiError(
            401, "unauthorized", "an admin key is required: Authorization: Bearer <key>", headers=challenge
        )
    key = cdp.keys.api_key_for(secret.strip())
    if key is None:
        raise ApiError(401, "unauthorized", "unknown or disabled API key", headers=challenge)
    if key.role != "admin":
        raise ApiError(403, "forbidden", f"this key's role {key.role!r} may not use the admin API")
    return key
