"""Activation over the admin API: destinations, event forwarding, audience syncs and deliveries.

Reading needs the `read` scope, changing the `admin` scope (as for segments). Secrets go in and
never come out: responses say only `has_secret`, and the audit log gets ids, names and counts.
A secret given over the API is always stored encrypted: an environment reference (`env:NAME`)
would let the holder of a key send a variable of the server's environment to a receiver of its
choosing, so those are set with the CLI (`opencdp destinations add/update --secret env:NAME`).
"""

from __future__ import annotations

import asyncio
import math
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Path, Query, Request
from pydantic import AfterValidator, BaseModel, Field

from opencdp.activation import audiences, forwarding, outbox
from opencdp.activation import destinations as dest
from opencdp.activation.destinations import DEFAULT_MAX_RETRY_SECONDS, DestinationError, DestinationSpec
from opencdp.activation.secrets import ENV_PREFIX, SecretMissing
from opencdp.api.audit import audit
from opencdp.api.auth import AdminKey, ReadKey, storable
from opencdp.api.errors import ApiError
from opencdp.system import OpenCDP

router = APIRouter(prefix="/api", tags=["activation"])

#: the largest id of a destination, forwarding rule or audience sync (32-bit columns)
ID_MAX = 2**31 - 1
#: the largest delivery id (a 64-bit column)
DELIVERY_ID_MAX = 2**63 - 1
Id = Annotated[int, Field(ge=1, le=ID_MAX)]
DeliveryId = Annotated[int, Field(ge=1, le=DELIVERY_ID_MAX)]
PathId = Annotated[int, Path(ge=1, le=ID_MAX)]


def _finite(value: Any) -> Any:
    """No NaN or infinity anywhere (Python's JSON parser reads them; no database stores them)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite (no NaN or Infinity)")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


Document = Annotated[dict[str, Any], AfterValidator(storable), AfterValidator(_finite)]
Text = Annotated[str, AfterValidator(storable)]


# --- Shapes ----------------------------------------------------------------------------------------


class DestinationIn(BaseModel):
    name: Text = Field(..., min_length=1, max_length=dest.NAME_MAX)
    kind: Text = Field(..., min_length=1, max_length=50, description="webhook (more kinds to come)")
    config: Document = Field(..., description='The kind\'s settings, e.g. {"url": "https://…"}')
    secret: Annotated[str | None, AfterValidator(storable)] = Field(
        None,
        max_length=4096,
        description="Password, token or signing key; stored encrypted, never shown again. On PUT: "
        'left out (or null) keeps the current secret, "" removes it.',
        json_schema_extra={"writeOnly": True},
    )
    purpose: Annotated[str | None, AfterValidator(storable)] = Field(
        None, max_length=200, description="Consent purpose a profile must have granted to be sent here"
    )
    enabled: bool = Field(True, description="false holds its deliveries")
    rate_per_second: float | None = Field(
        None, gt=0, le=1_000_000, description="At most this many deliveries per second; null for no limit"
    )
    max_retry_seconds: int = Field(
        DEFAULT_MAX_RETRY_SECONDS, ge=60, le=30 * 86400, description="Retry this long, then dead-letter"
    )


class Health(BaseModel):
    circuit: Literal["open", "closed"]
    open_until: str | None
    consecutive_failures: int
    last_success_at: str | None
    last_error_at: str | None
    last_error: str | None


class DestinationOut(BaseModel):
    id: int
    name: str
    kind: str
    config: dict[str, Any]
    has_secret: bool
    secret_env: str | None = Field(None, description="The environment variable holding the secret, if so")
    purpose: str | None
    enabled: bool
    rate_per_second: float | None
    max_retry_seconds: int
    created_at: str
    updated_at: str
    health: Health
    deliveries: dict[str, int] = Field(..., description="Deliveries per status")


class Deleted(BaseModel):
    forwarding_rules: int
    audience_syncs: int
    deliveries: int


class TestOut(BaseModel):
    status: Literal["delivered", "retry", "failed"]
    error: str | None


class RuleIn(BaseModel):
    name: Text = Field(..., min_length=1, max_length=200)
    destination_id: Id
    filter: Document = Field(
        default_factory=dict,
        description='Every part optional: {"sources": [...], "types": [...], "events": [...], '
        '"where": [{"property": "total", "op": "gte", "value": 100}]}',
    )


class RuleOut(BaseModel):
    id: int
    name: str
    destination_id: int
    filter: dict[str, Any]
    enabled: bool
    created_at: str


class SyncIn(BaseModel):
    segment: Text = Field(..., min_length=1, max_length=200, description="A saved segment's name")
    destination_id: Id


class SyncCreated(BaseModel):
    id: int
    backfilled: int = Field(..., description="Current members queued for the destination")


class SyncOut(BaseModel):
    id: int
    segment: str
    destination_id: int
    enabled: bool
    members_sent: int
    pending: int
    delivered: int
    failed: int
    skipped: int
    last_success_at: str | None
    backfilled_at: str | None


class DeliveryOut(BaseModel):
    id: int
    destination_id: int
    key: str
    kind: str
    profile_id: str | None
    event_id: int | None
    subject: dict[str, Any]
    status: Literal["pending", "sending", "delivered", "dead", "skipped"]
    attempts: int
    next_attempt_at: str | None
    created_at: str
    finished_at: str | None
    last_error: str | None


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryOut]
    next_before_id: int | None = Field(None, description="Pass as before_id for the next (older) page")


class ReplayIn(BaseModel):
    ids: list[DeliveryId] | None = Field(
        None, min_length=1, max_length=10_000, description="These dead letters"
    )
    destination_id: Id | None = Field(None, description="Every dead letter of this destination")
    all: bool = Field(False, description="Every dead letter")


class Replayed(BaseModel):
    replayed: int


# --- Helpers -----------------------------------------------------------------------------------------


def _engine(request: Request) -> sa.Engine:
    cdp: OpenCDP = request.app.state.cdp
    return cdp.engine


def _error(exc: DestinationError) -> ApiError:
    code = {404: "not_found", 409: "conflict"}.get(exc.status, "invalid_request")
    return ApiError(exc.status, code, str(exc), [{"field": exc.field, "problem": exc.message}])


def _spec(body: DestinationIn, secret: str | None) -> DestinationSpec:
    if secret is not None and secret.startswith(ENV_PREFIX):
        raise DestinationError(
            "secret",
            "environment references (env:NAME) are set with the CLI only "
            "(opencdp destinations add/update --secret env:NAME)",
        )
    return DestinationSpec(
        name=body.name,
        kind=body.kind,
        config=body.config,
        secret=secret,
        purpose=body.purpose,
        enabled=body.enabled,
        rate_per_second=body.rate_per_second,
        max_retry_seconds=body.max_retry_seconds,
    )


def _view(conn: sa.Connection, destination_id: int) -> dict[str, Any]:
    return dest.view(dest.get_row(conn, destination_id), dest.status_counts(conn).get(destination_id, {}))


# --- Destinations ------------------------------------------------------------------------------------


@router.get("/destinations", response_model=list[DestinationOut], summary="Destinations (never secrets)")
def list_destinations(request: Request, _key: ReadKey) -> list[dict[str, Any]]:
    with _engine(request).connect() as conn:
        return dest.list_views(conn)


@router.post("/destinations", response_model=DestinationOut, status_code=201, summary="Create a destination")
def create_destination(request: Request, key: AdminKey, body: DestinationIn) -> dict[str, Any]:
    cdp: OpenCDP = request.app.state.cdp
    try:
        with cdp.engine.begin() as conn:
            new_id = dest.create(conn, cdp.settings, _spec(body, body.secret))
            out = _view(conn, new_id)
    except DestinationError as exc:
        raise _error(exc) from None
    detail = {"name": out["name"], "kind": out["kind"], "has_secret": out["has_secret"]}
    audit(request, key, "destination.create", "destination", str(new_id), detail)
    return out


@router.get("/destinations/{destination_id}", response_model=DestinationOut, summary="One destination")
def get_destination(request: Request, _key: ReadKey, destination_id: PathId) -> dict[str, Any]:
    try:
        with _engine(request).connect() as conn:
            return _view(conn, destination_id)
    except DestinationError as exc:
        raise _error(exc) from None


@router.put(
    "/destinations/{destination_id}",
    response_model=DestinationOut,
    summary="Replace a destination's definition (a left-out secret is kept; the kind cannot change)",
)
def update_destination(
    request: Request, key: AdminKey, destination_id: PathId, body: DestinationIn
) -> dict[str, Any]:
    cdp: OpenCDP = request.app.state.cdp
    try:
        with cdp.engine.begin() as conn:
            dest.update(conn, cdp.settings, destination_id, _spec(body, body.secret))
            out = _view(conn, destination_id)
    except DestinationError as exc:
        raise _error(exc) from None
    detail = {"name": out["name"], "secret_changed": body.secret is not None}
    audit(request, key, "destination.update", "destination", str(destination_id), detail)
    return out


@router.delete(
    "/destinations/{destination_id}",
    response_model=Deleted,
    summary="Delete a destination with its forwarding rules, audience syncs and deliveries",
)
def delete_destination(request: Request, key: AdminKey, destination_id: PathId) -> dict[str, int]:
    try:
        with _engine(request).begin() as conn:
            counts = dest.delete(conn, destination_id)
    except DestinationError as exc:
        raise _error(exc) from None
    audit(request, key, "destination.delete", "destination", str(destination_id), counts)
    return counts


@router.post(
    "/destinations/{destination_id}/test",
    response_model=TestOut,
    summary="Send one sample message now (not recorded as a delivery) and say what happened",
)
def test_destination(request: Request, key: AdminKey, destination_id: PathId) -> dict[str, Any]:
    from opencdp.cli.activation import sample_message

    cdp: OpenCDP = request.app.state.cdp
    try:
        with cdp.engine.connect() as conn:
            row = dest.get_row(conn, destination_id)
    except DestinationError as exc:
        raise _error(exc) from None
    try:
        driver = dest.make_driver(cdp.settings, row)
    except SecretMissing as exc:
        outcome: dict[str, Any] = {"status": "failed", "error": str(exc)}
    else:

        async def go() -> Any:
            try:
                return (await driver.send([sample_message(row.id, row.name)]))[0]
            finally:
                await driver.close()

        # a sync route runs in a worker thread, which has no event loop of its own
        sent = asyncio.run(go())
        outcome = {"status": sent.status, "error": sent.error}
    audit(request, key, "destination.test", "destination", str(destination_id), {"status": outcome["status"]})
    return outcome


# --- Forwarding --------------------------------------------------------------------------------------


@router.get("/forwarding", response_model=list[RuleOut], summary="Event forwarding rules")
def list_rules(request: Request, _key: ReadKey) -> list[dict[str, Any]]:
    with _engine(request).connect() as conn:
        return forwarding.list_rules(conn)


@router.post(
    "/forwarding",
    response_model=RuleOut,
    status_code=201,
    summary="Forward the events collected from now on that match the filter",
)
def create_rule(request: Request, key: AdminKey, body: RuleIn) -> dict[str, Any]:
    try:
        with _engine(request).begin() as conn:
            rule_id = forwarding.create_rule(conn, body.name, body.destination_id, body.filter)
            out = next(r for r in forwarding.list_rules(conn) if r["id"] == rule_id)
    except DestinationError as exc:
        raise _error(exc) from None
    detail = {"name": out["name"], "destination_id": body.destination_id}
    audit(request, key, "forwarding.create", "forwarding_rule", str(rule_id), detail)
    return out


@router.delete(
    "/forwarding/{rule_id}", status_code=204, summary="Stop forwarding (queued deliveries still go)"
)
def delete_rule(request: Request, key: AdminKey, rule_id: PathId) -> None:
    try:
        with _engine(request).begin() as conn:
            forwarding.delete_rule(conn, rule_id)
    except DestinationError as exc:
        raise _error(exc) from None
    audit(request, key, "forwarding.delete", "forwarding_rule", str(rule_id))


# --- Audience syncs ----------------------------------------------------------------------------------


@router.get("/audience-syncs", response_model=list[SyncOut], summary="Audience syncs with their status")
def list_syncs(request: Request, _key: ReadKey) -> list[dict[str, Any]]:
    with _engine(request).connect() as conn:
        return audiences.list_syncs(conn)


@router.post(
    "/audience-syncs",
    response_model=SyncCreated,
    status_code=201,
    summary="Sync a segment to a destination: its current members now (backfill), then every change",
)
def create_sync(request: Request, key: AdminKey, body: SyncIn) -> dict[str, Any]:
    try:
        with _engine(request).begin() as conn:
            sync_id, members = audiences.create_sync(conn, body.segment, body.destination_id)
    except DestinationError as exc:
        raise _error(exc) from None
    detail = {"segment": body.segment, "destination_id": body.destination_id, "backfill": members}
    audit(request, key, "audience.sync", "audience_sync", str(sync_id), detail)
    return {"id": sync_id, "backfilled": members}


@router.delete(
    "/audience-syncs/{sync_id}",
    status_code=204,
    summary="Stop syncing (the destination keeps its members; queued changes still go)",
)
def delete_sync(request: Request, key: AdminKey, sync_id: PathId) -> None:
    try:
        with _engine(request).begin() as conn:
            audiences.delete_sync(conn, sync_id)
    except DestinationError as exc:
        raise _error(exc) from None
    audit(request, key, "audience.unsync", "audience_sync", str(sync_id))


# --- Deliveries --------------------------------------------------------------------------------------


@router.get("/deliveries", response_model=DeliveryPage, summary="Deliveries, newest first")
def list_deliveries(
    request: Request,
    _key: ReadKey,
    status: Annotated[
        Literal["pending", "sending", "delivered", "dead", "skipped"] | None,
        Query(description="Only these (dead: the dead letters)"),
    ] = None,
    destination_id: Annotated[int | None, Query(ge=1, le=ID_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[
        int | None, Query(ge=1, le=DELIVERY_ID_MAX, description="Cursor: next_before_id of the previous page")
    ] = None,
) -> dict[str, Any]:
    with _engine(request).connect() as conn:
        rows = outbox.find(conn, status, destination_id, limit, before_id)
    return {"deliveries": rows, "next_before_id": rows[-1]["id"] if len(rows) == limit else None}


@router.post(
    "/deliveries/replay",
    response_model=Replayed,
    summary="Send dead letters again with their original idempotency keys (ids, a destination's, or all)",
)
def replay(request: Request, key: AdminKey, body: ReplayIn) -> dict[str, int]:
    if body.ids is None and body.destination_id is None and not body.all:
        raise ApiError(
            400,
            "invalid_request",
            "name the dead letters: ids, destination_id, or all: true",
            [{"field": "ids", "problem": "give ids, destination_id or all: true"}],
        )
    try:
        with _engine(request).begin() as conn:
            if body.destination_id is not None:
                dest.get_row(conn, body.destination_id)
            n = outbox.replay(conn, body.ids, body.destination_id)
    except DestinationError as exc:
        raise _error(exc) from None
    detail = {"deliveries": n, "ids": len(body.ids or []), "all": body.all}
    audit(request, key, "deliveries.replay", "destination", str(body.destination_id or ""), detail)
    cdp: OpenCDP = request.app.state.cdp
    if n and cdp.deliveries is not None:
        cdp.deliveries.notify()
    return {"replayed": n}
