"""The Segment HTTP Tracking API: /v1/identify, track, page, screen, group, alias, batch, import.

analytics.js (`@segment/analytics-next`) posts to the one-letter paths /v1/t, /v1/p, /v1/i, /v1/g,
/v1/a, /v1/s (and /v1/b when it batches), with the JSON body sent as `text/plain` so that no CORS
preflight is needed for the content type; these are aliases of the routes above. The body is read
as JSON whatever its Content-Type says."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from opencdp import metrics
from opencdp.api.auth import check_rate, source_for, write_key_from_header
from opencdp.api.errors import ApiError
from opencdp.api.http_body import parse_json_object, read_body
from opencdp.api.responses import FastJSONResponse
from opencdp.api.schemas import Error, batch_request, call_request, error_responses
from opencdp.collect.messages import CALL_TYPES, Envelope, InvalidMessage, normalise, normalise_batch
from opencdp.collect.writer import WriterClosed
from opencdp.system import OpenCDP

router = APIRouter(prefix="/v1", tags=["collect"])

_SUCCESS = FastJSONResponse({"success": True})


def _responses() -> dict[int | str, dict[str, Any]]:
    limited = "Too many requests for this write key (OPENCDP_RATE_LIMIT); nothing stored, retry"
    return {**error_responses(), 429: {"description": limited, "model": Error}}


#: The `reason` label of opencdp_events_rejected_total for each error code of this API.
_REJECT_REASONS = {
    "unauthorized": "unauthorized",
    "rate_limited": "rate_limited",
    "payload_too_large": "too_large",
    "unavailable": "unavailable",
}


class _Tally:
    """What a request is known to carry so far, for the accepted/rejected counters."""

    source: str | None = None
    events = 1  # until the body is read: a refused request counts as one


async def _ingest(request: Request, call_type: str | None) -> FastJSONResponse:
    tally = _Tally()
    try:
        return await _store(request, call_type, tally)
    except ApiError as exc:
        reason = _REJECT_REASONS.get(exc.error, "too_large" if exc.status == 413 else "invalid")
        metrics.record_rejected(tally.source, reason, tally.events)
        raise


async def _store(request: Request, call_type: str | None, tally: _Tally) -> FastJSONResponse:
    cdp: OpenCDP = request.app.state.cdp
    received_at = datetime.now(UTC)
    header_key = write_key_from_header(request)
    if header_key:  # authenticate (and rate-limit) before reading a byte of the body
        source = source_for(cdp, header_key)
        tally.source = source.name
        check_rate(request, source)
    body = parse_json_object(await read_body(request, cdp.settings.max_batch_bytes))
    if call_type is None and isinstance(body.get("batch"), list):
        tally.events = len(body["batch"])
    if not header_key:
        key = body.get("writeKey")
        source = source_for(cdp, key if isinstance(key, str) else None)
        tally.source = source.name
        check_rate(request, source)

    suppressed = cdp.suppressor.current()
    if suppressed:  # erased people: their new events are dropped, the client sees success
        if call_type is None and isinstance(body.get("batch"), list):
            kept = [m for m in body["batch"] if not (isinstance(m, dict) and suppressed.is_suppressed(m))]
            metrics.record_rejected(source.name, "suppressed", len(body["batch"]) - len(kept))
            body["batch"] = kept
            tally.events = len(kept)
            if not kept:
                return _SUCCESS
        elif call_type is not None and suppressed.is_suppressed({**body, "type": call_type}):
            metrics.record_rejected(source.name, "suppressed")
            return _SUCCESS

    if call_type is None:
        rows, problems = normalise_batch(body, source.id, cdp.limits, received_at)
        if problems:
            first = problems[0]
            where = f"message {first.index}: " if first.index is not None else ""
            raise ApiError(
                400,
                "invalid_batch",
                f"{where}{first.field} {first.problem}"
                + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else "")
                + "; nothing in this batch was stored",
                [p.as_json() for p in problems],
            )
    else:
        try:
            rows = [normalise(body, Envelope(received_at), source.id, cdp.limits, call_type)]
        except InvalidMessage as exc:
            raise ApiError(
                413 if exc.too_large else 400,
                "invalid_message",
                f"{exc.field} {exc.problem}",
                [{"field": exc.field, "problem": exc.problem}],
            ) from None
    try:
        await asyncio.wrap_future(cdp.writer.submit(rows, suppressed.version))
    except WriterClosed:
        raise ApiError(
            503, "unavailable", "the server is shutting down; retry", headers={"Retry-After": "1"}
        ) from None
    except Exception:
        raise ApiError(
            503,
            "unavailable",
            "the events could not be stored; nothing was written, retry",
            headers={"Retry-After": "1"},
        ) from None
    metrics.record_accepted(source.name, len(rows))
    return _SUCCESS


def _call_route(call_type: str) -> None:
    async def endpoint(request: Request) -> FastJSONResponse:
        return await _ingest(request, call_type)

    endpoint.__name__ = call_type
    router.add_api_route(
        f"/{call_type}",
        endpoint,
        methods=["POST"],
        summary=f"Record one {call_type} call",
        openapi_extra=call_request(call_type),
        responses=_responses(),
    )


for _type in CALL_TYPES:
    _call_route(_type)


def _short_route(call_type: str) -> None:
    """analytics.js posts each call to `/v1/` + the first letter of its type."""

    async def endpoint(request: Request) -> FastJSONResponse:
        return await _ingest(request, call_type)

    endpoint.__name__ = f"{call_type}_short"
    router.add_api_route(
        f"/{call_type[0]}",
        endpoint,
        methods=["POST"],
        summary=f"Alias of /v1/{call_type} (the path analytics.js posts to)",
        openapi_extra=call_request(call_type),
        responses=_responses(),
    )


for _type in CALL_TYPES:
    _short_route(_type)


@router.post(
    "/batch",
    summary="Record up to 500 KB of calls at once",
    openapi_extra=batch_request(),
    responses=_responses(),
)
async def batch(request: Request) -> FastJSONResponse:
    """All-or-nothing: either every message is stored, or none is and the 400 lists each bad one."""
    return await _ingest(request, None)


@router.post("/import", summary="Alias of /v1/batch", openapi_extra=batch_request(), responses=_responses())
async def import_(request: Request) -> FastJSONResponse:
    return await _ingest(request, None)


@router.post(
    "/b",
    summary="Alias of /v1/batch (analytics.js with the batching delivery strategy)",
    openapi_extra=batch_request(),
    responses=_responses(),
)
async def batch_short(request: Request) -> FastJSONResponse:
    return await _ingest(request, None)
