"""What a website loads from opencdp: the analytics.js settings document and the first-party script.

**analytics.js** (`@segment/analytics-next`) starts by fetching `{cdnURL}/v1/projects/{writeKey}/settings`
and sends its calls to the `Segment.io` integration's `apiHost`. Pointing `cdnURL` at opencdp is
therefore all a site changes: the document served here names this server (host and scheme as the
request reached it; `X-Forwarded-Proto` behind a TLS proxy) as the API host, lists no other
destination (so nothing else is loaded from a CDN) and sets the metrics sample rate to 0 (so
analytics.js reports no usage metrics to Segment).

**opencdp.js** is opencdp's own small script (hand-written, in `opencdp/web/opencdp.js`): decisions
for marked elements and form analytics, see docs/personalisation.md.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request, Response

from opencdp.api.errors import ApiError
from opencdp.api.responses import FastJSONResponse
from opencdp.system import OpenCDP

router = APIRouter(tags=["browser"])

#: How long a browser or CDN may reuse the settings document (a disabled key stops within this).
SETTINGS_MAX_AGE = 60
SCRIPT_MAX_AGE = 3600


def _scheme(request: Request) -> str:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    if forwarded in ("http", "https"):
        return forwarded
    return "https" if request.url.scheme == "https" else "http"


def _host(request: Request) -> str:
    host = request.headers.get("host")
    if host:
        return host
    port = request.url.port
    return f"{request.url.hostname}:{port}" if port else str(request.url.hostname)


def settings_document(write_key: str, api_host: str, protocol: str) -> dict[str, Any]:
    """The CDN settings analytics-next expects, with only the `Segment.io` integration."""
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
                "versionSettings": {"version": "4.4.7", "componentTypes": ["browser"]},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }


@router.get(
    "/v1/projects/{write_key}/settings",
    summary="The analytics.js settings document: send the calls to this server",
    responses={404: {"description": "Unknown or disabled write key"}},
)
def project_settings(request: Request, write_key: str) -> FastJSONResponse:
    """Public (the write key is in every page anyway): what `AnalyticsBrowser.load({writeKey, cdnURL})`
    fetches first when `cdnURL` is this server."""
    cdp: OpenCDP = request.app.state.cdp
    if len(write_key) > 200 or cdp.keys.source_for(write_key) is None:
        raise ApiError(404, "not_found", "unknown or disabled write key")
    document = settings_document(write_key, f"{_host(request)}/v1", _scheme(request))
    return FastJSONResponse(document, headers={"Cache-Control": f"public, max-age={SETTINGS_MAX_AGE}"})


@cache
def _script() -> tuple[bytes, str]:
    body = resources.files("opencdp.web").joinpath("opencdp.js").read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


@router.get("/opencdp.js", include_in_schema=False)  # a static file, like the dashboard's
def script(request: Request) -> Response:
    """The first-party script: decisions for marked elements, form analytics (cached for an hour)."""
    body, etag = _script()
    headers = {
        "Cache-Control": f"public, max-age={SCRIPT_MAX_AGE}",
        "ETag": etag,
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)
