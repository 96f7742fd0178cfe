"""The public decide-only key (`pk_…`, role `decide`): it opens POST /v1/decide and nothing else.
Every other route of the app, in every way a key can be presented (Bearer, Basic, ?key=, the
Segment `writeKey` field), answers 401 or 403 (dashboard pages: the sign-in redirect)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient

from opencdp.access.keys import ROLES, SCOPES, create_api_key, grants
from opencdp.cli import main
from opencdp.system import OpenCDP

#: Pages anyone may open (they show nothing of the data) and the decide API itself.
PUBLIC = {
    ("GET", "/openapi.json"),
    ("HEAD", "/openapi.json"),
    ("GET", "/ui/static/{name}"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/preferences/style.css"),  # the preference centre's stylesheet
    ("GET", "/accounts/style.css"),  # the hosted login's stylesheet (brand colours)
    ("OPTIONS", "/accounts/token"),  # CORS preflights of browser apps: no body, no data
    ("OPTIONS", "/accounts/userinfo"),
    ("GET", "/api/health"),  # liveness for load balancers: status and lag, no personal data
    ("GET", "/opencdp.js"),  # the first-party script websites load
    ("HEAD", "/opencdp.js"),
    ("GET", "/v1/projects/{write_key}/settings"),  # analytics.js settings: 404 for all but a write key
}
#: The preference centre: customers' pages opened by their link's token (a key opens nothing there:
#: a wrong token is "not found", whatever else the request carries).
LINK_GATED_PREFIX = "/preferences/"
#: The customer login (OpenID provider, hosted pages): customers' sessions and tokens, never API
#: keys. Switched off here (no issuer), so with any key every one of them refuses: 404, or the
#: "not switched on" page (400) for the browser-facing authorize and logout.
CUSTOMER_FACE = ("/accounts/", "/.well-known/")
DECIDE_PATH = "/v1/decide"


def app_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path) of every HTTP route of the app, however FastAPI holds included routers."""
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:  # FastAPI ≥ 0.16x: included routers are resolved lazily
            for context in contexts():
                for method in getattr(context.original_route, "methods", None) or ():
                    yield method, context.path
        else:
            for method in getattr(route, "methods", None) or ():
                yield method, route.path  # type: ignore[attr-defined]


def _basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def test_decide_role_grants_no_scope() -> None:
    assert "decide" in ROLES and "decide" not in SCOPES
    assert not any(grants("decide", scope) for scope in SCOPES)
    # the other roles are as they were
    assert grants("admin", "metrics") and grants("read", "read") and not grants("read", "export")
    assert not grants("metrics", "read")


def test_public_key_opens_nothing_but_decide(client: TestClient, cdp: OpenCDP) -> None:
    key, secret = create_api_key(cdp.engine, "decide", "website")
    assert secret.startswith("pk_") and key.role == "decide"
    app: FastAPI = client.app  # type: ignore[assignment]
    routes = sorted(set(app_routes(app)))
    assert ("POST", DECIDE_PATH) in routes and len(routes) > 100
    checked = 0
    opened = []
    for method, path in routes:
        if path == DECIDE_PATH or (method, path) in PUBLIC:
            continue
        url = re.sub(r"\{[^}]+\}", "1", path)
        api = path.startswith(("/api", "/v1", "/metrics", "/ui/api"))
        body: dict[str, Any] = {"writeKey": secret, "userId": "u1", "event": "x", "batch": []}
        for headers, params in (
            ({"Authorization": f"Bearer {secret}"}, {}),
            (_basic(secret), {}),
            ({}, {"key": secret, "writeKey": secret}),
        ):
            kwargs: dict[str, Any] = {"headers": headers, "params": params, "follow_redirects": False}
            if method in ("POST", "PUT", "PATCH"):
                kwargs["json"] = body
            response = client.request(method, url, **kwargs)
            if path.startswith(LINK_GATED_PREFIX) and path != "/preferences/style.css":
                refused = response.status_code == 404 and "not valid" in response.text
            elif path.startswith(CUSTOMER_FACE):
                refused = response.status_code in (400, 404) and "@" not in response.text
            else:
                refused = response.status_code in (401, 403) or (
                    # dashboard pages: a key is no session, they send the browser to sign in
                    not api
                    and response.status_code == 303
                    and response.headers["location"].startswith("/login")
                )
            if not refused:
                opened.append((method, path, response.status_code, response.text[:200]))
            checked += 1
    assert opened == []
    assert checked > 300


@pytest.fixture
def runner_env(env_for: dict[str, str], system: OpenCDP) -> dict[str, str]:
    return env_for


def test_keys_cli_creates_a_public_key(runner_env: dict[str, str], system: OpenCDP) -> None:
    result = CliRunner().invoke(
        main, ["keys", "create", "--role", "decide", "--name", "site"], env=runner_env
    )
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[0]
    assert secret.startswith("pk_")
    assert system.keys.api_key_for(secret) is not None
    listing = CliRunner().invoke(main, ["keys", "list"], env=runner_env)
    assert "decide" in listing.output and "site" in listing.output and secret not in listing.output
