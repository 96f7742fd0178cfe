"""GET /metrics for Prometheus, and the middleware that times every request.

/metrics needs an API key with the `metrics` scope (Prometheus: `authorization: {credentials_file:
…}`), because the collection API on the same port usually faces the internet and volumes per
source are business information. `OPENCDP_METRICS_PUBLIC=1` drops the key for a scraper on a
private network. Nothing in it is personal data: counts, source names, route templates.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opencdp import metrics
from opencdp.api.auth import BearerCredentials, metrics_key
from opencdp.system import OpenCDP

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (needs a `metrics` key unless OPENCDP_METRICS_PUBLIC=1)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def get_metrics(request: Request, credentials: BearerCredentials) -> Response:
    cdp: OpenCDP = request.app.state.cdp
    if not cdp.settings.metrics_public:
        metrics_key(request, credentials)
    body, content_type = metrics.exposition(cdp.engine, cdp.writer)
    return Response(body, media_type=content_type)


class RequestTimer:
    """Records each HTTP request's latency by route template, method and status class.

    The template (`/api/profiles/{profile_id}`), never the raw path, keeps the label set bounded;
    requests that match no route share one label."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            metrics.record_request(_route(scope), scope["method"], status, time.perf_counter() - started)


def _route(scope: Scope) -> str:
    route: Any = scope.get("route")  # set by FastAPI's router on the (shared) scope once matched
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else metrics.UNMATCHED_ROUTE
