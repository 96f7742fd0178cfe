"""What websites load from opencdp: the analytics.js settings document, the one-letter call paths
analytics.js posts to (JSON as text/plain), CORS on /v1 only, and /opencdp.js."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from opencdp.access.keys import set_source_enabled
from opencdp.api.app import create_app
from opencdp.config import ConfigError, Settings
from opencdp.log.reader import EventQuery, read_events
from opencdp.system import OpenCDP

ORIGIN = "https://shop.example"


def test_settings_document_points_analytics_js_here(client: TestClient, write_key: str) -> None:
    response = client.get(f"/v1/projects/{write_key}/settings", headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "max-age" in response.headers["cache-control"]
    doc = response.json()
    assert list(doc["integrations"]) == ["Segment.io"]
    segment = doc["integrations"]["Segment.io"]
    assert segment["apiKey"] == write_key
    assert segment["apiHost"] == "testserver/v1"
    assert segment["protocol"] == "http"
    assert doc["metrics"] == {"sampleRate": 0}
    assert doc["plan"]["track"]["__default"]["enabled"] is True
    assert doc["remotePlugins"] == [] and doc["enabledMiddleware"] == {}


def test_settings_scheme_and_host_from_the_proxy(client: TestClient, write_key: str) -> None:
    response = client.get(
        f"/v1/projects/{write_key}/settings",
        headers={"X-Forwarded-Proto": "https", "Host": "cdp.example"},
    )
    segment = response.json()["integrations"]["Segment.io"]
    assert (segment["protocol"], segment["apiHost"]) == ("https", "cdp.example/v1")


def test_settings_404_for_unknown_or_disabled_key(client: TestClient, cdp: OpenCDP, write_key: str) -> None:
    response = client.get("/v1/projects/wk_nope/settings")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    set_source_enabled(cdp.engine, "web", False)
    assert client.get(f"/v1/projects/{write_key}/settings").status_code == 404


@pytest.mark.parametrize(
    ("path", "call_type", "body"),
    [
        ("t", "track", {"event": "Signed Up", "anonymousId": "a1"}),
        ("p", "page", {"name": "Home", "anonymousId": "a1"}),
        ("i", "identify", {"userId": "u1", "traits": {"plan": "pro"}}),
        ("g", "group", {"userId": "u1", "groupId": "acme"}),
        ("a", "alias", {"userId": "u1", "previousId": "a1"}),
        ("s", "screen", {"name": "Cart", "userId": "u1"}),
    ],
)
def test_short_paths_with_text_plain_bodies(
    client: TestClient, cdp: OpenCDP, write_key: str, path: str, call_type: str, body: dict[str, object]
) -> None:
    """What analytics-next sends: Basic auth with the write key, writeKey in the body too, the JSON
    as text/plain, _metadata and sentAt."""
    message = {
        **body,
        "writeKey": write_key,
        "sentAt": "2026-12-07T10:00:00.000Z",
        "_metadata": {"bundled": []},
    }
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    response = client.post(
        f"/v1/{path}",
        content=orjson.dumps(message),
        headers={"Content-Type": "text/plain", "Authorization": auth, "Origin": ORIGIN, "X-Retry-Count": "1"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    [row] = read_events(cdp.engine, EventQuery(limit=10))
    assert row["type"] == call_type


def test_short_batch_path(client: TestClient, cdp: OpenCDP, write_key: str) -> None:
    body = {"writeKey": write_key, "batch": [{"type": "track", "event": "E", "anonymousId": "a"}] * 2}
    response = client.post("/v1/b", content=orjson.dumps(body), headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    assert len(read_events(cdp.engine, EventQuery(limit=10))) == 2


@pytest.mark.parametrize("path", ["/v1/t", "/v1/decide", "/v1/projects/wk/settings", "/v1/batch"])
def test_preflight_on_v1(client: TestClient, path: str) -> None:
    response = client.options(
        path,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "x-retry-count"} <= allowed
    assert "POST" in response.headers["access-control-allow-methods"]


def test_errors_carry_cors_headers_too(client: TestClient) -> None:
    """A browser must see a 401/429 (and Retry-After) to act on it."""
    response = client.post("/v1/t", content=b'{"event":"E"}', headers={"Origin": ORIGIN})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == "*"
    assert "Retry-After" in response.headers["access-control-expose-headers"]


@pytest.mark.parametrize("path", ["/api/profiles", "/api/health", "/login", "/"])
def test_dashboard_and_admin_api_stay_same_origin(client: TestClient, path: str) -> None:
    preflight = client.options(path, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in preflight.headers
    response = client.get(path, headers={"Origin": ORIGIN}, follow_redirects=False)
    assert "access-control-allow-origin" not in response.headers


@pytest.fixture
def listed_client(cdp: OpenCDP) -> Iterator[TestClient]:
    cdp.settings = dataclasses.replace(cdp.settings, cors_origins=(ORIGIN, "http://localhost:3000"))
    with TestClient(create_app(cdp)) as test_client:
        yield test_client


def test_listed_origins_only(listed_client: TestClient) -> None:
    ok = listed_client.options("/v1/t", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert ok.headers["vary"] == "Origin"
    other = listed_client.options(
        "/v1/t", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in other.headers


def test_cors_origins_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENCDP_CORS_ORIGINS", raising=False)
    assert Settings.from_env().cors_origins == ("*",)
    monkeypatch.setenv("OPENCDP_CORS_ORIGINS", "https://a.example/, http://localhost:8080")
    assert Settings.from_env().cors_origins == ("https://a.example", "http://localhost:8080")
    monkeypatch.setenv("OPENCDP_CORS_ORIGINS", "a.example")
    with pytest.raises(ConfigError, match="OPENCDP_CORS_ORIGINS"):
        Settings.from_env()


def test_first_party_script(client: TestClient) -> None:
    response = client.get("/opencdp.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert "max-age" in response.headers["cache-control"]
    assert "data-opencdp-placement" in response.text
    assert len(response.content) < 20_000
    again = client.get("/opencdp.js", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304


def test_a_routes_own_cors_headers_give_way() -> None:
    """One Access-Control-Allow-Origin, the configured one, even when a route sets its own."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from opencdp.api.cors import Cors

    def own(_request: object) -> JSONResponse:
        return JSONResponse({}, headers={"Access-Control-Allow-Origin": "*", "Access-Control-Max-Age": "1"})

    app = Cors(Starlette(routes=[Route("/v1/x", own, methods=["POST"])]), origins=(ORIGIN,))
    with TestClient(app) as c:  # type: ignore[arg-type]
        response = c.post("/v1/x", headers={"Origin": ORIGIN})
        assert response.headers.get_list("access-control-allow-origin") == [ORIGIN]
        assert "access-control-max-age" not in response.headers
        other = c.post("/v1/x", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
