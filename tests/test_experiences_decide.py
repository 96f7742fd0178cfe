"""POST /v1/decide over HTTP on both engines: keys (public pk_ for decisions only, secret keys with
`read` for trait values too, never a secret key in a URL), CORS, 400 with problem paths, a known
profile matching a trait-based variant, an unknown visitor getting the fallback, and the
`Experience Viewed` events in the log after processing (none for an erased visitor)."""

from __future__ import annotations

import base64
import gzip
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.access.keys import create_api_key
from opencdp.api import decide as decide_api
from opencdp.identity.identifiers import Identifier
from opencdp.personalise.experiences import EXPERIENCE_VIEWED
from opencdp.privacy.suppression import suppress
from opencdp.store.schema import events, profile_events
from opencdp.system import OpenCDP
from opencdp.ui.views_experiences import decisions_logged

SECRET_TRAIT = "trait-value-3f9c"
HERO: dict[str, Any] = {
    "name": "hero",
    "placement": "home-hero",
    "holdout_percent": 0,
    "variants": [
        {
            "name": "gold",
            "audience": {"trait": "plan", "op": "eq", "value": "gold"},
            "content": {"html": "<h2>For our gold members</h2>"},
        },
        {"name": "everyone", "content": {"html": "<h2>Sale</h2>"}},
    ],
    "fallback": {"html": "<h2>Welcome</h2>"},
}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def _wait(check: Callable[[], Any], seconds: float = 20.0) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _viewed(cdp: OpenCDP) -> list[dict[str, Any]]:
    with cdp.engine.connect() as conn:
        return [
            r.payload
            for r in conn.execute(sa.select(events.c.payload).where(events.c.event == EXPERIENCE_VIEWED))
        ]


def _setup(client: TestClient, cdp: OpenCDP, write_key: str, admin_key: str) -> None:
    now = datetime.now(UTC) - timedelta(minutes=5)
    batch = [
        {
            "type": "identify",
            "userId": "u1",
            "anonymousId": "a1",
            "traits": {"plan": "gold", "email": "gold@example.com", "secret_note": SECRET_TRAIT},
            "timestamp": now.isoformat().replace("+00:00", "Z"),
        }
    ]
    sent = client.post("/v1/batch", json={"batch": batch}, auth=(write_key, ""))
    assert sent.status_code == 200, sent.text
    cdp.processor.run_until_caught_up()
    created = client.post("/api/experiences?enabled=true", json=HERO, headers=_bearer(admin_key))
    assert created.status_code == 201, created.text


def test_public_key_decides_without_traits_and_exposures_are_logged(
    client: TestClient, cdp: OpenCDP, write_key: str, admin_key: str
) -> None:
    _setup(client, cdp, write_key, admin_key)
    public = create_api_key(cdp.engine, "decide", "website")[1]
    body = {"userId": "u1", "placements": ["home-hero", "nowhere"], "context": {"page": {"path": "/"}}}
    answer = client.post("/v1/decide", json=body, headers=_bearer(public))
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.headers["cache-control"] == "no-store"
    decisions = answer.json()["decisions"]
    assert decisions["home-hero"] == {
        "experience": "hero",
        "variant": "gold",
        "content": {"html": "<h2>For our gold members</h2>"},
        "holdout": False,
        "reason": "matched",
    }
    assert decisions["nowhere"]["reason"] == "no_experience"
    assert set(answer.json()) == {"decisions"}
    for value in ("gold@example.com", SECRET_TRAIT, '"plan"'):
        assert value not in answer.text

    # Basic and ?key= work for a public key; an unknown visitor gets the fallback
    unknown = {"anonymousId": "stranger", "placements": ["home-hero"]}
    for kwargs in ({"headers": _basic(public)}, {"params": {"key": public}}):
        stranger = client.post("/v1/decide", json=unknown, **kwargs)
        assert stranger.status_code == 200, stranger.text
        assert stranger.json()["decisions"]["home-hero"]["reason"] == "unknown_visitor"
        assert stranger.json()["decisions"]["home-hero"]["content"] == {"html": "<h2>Welcome</h2>"}
    # a browser may send text/plain to avoid a preflight
    plain = client.post(
        f"/v1/decide?key={public}",
        content=b'{"anonymousId": "stranger", "placements": ["home-hero"]}',
        headers={"Content-Type": "text/plain"},
    )
    assert plain.status_code == 200, plain.text

    # the decisions are in the log (not awaited by the answer) and processed onto the profile. The
    # stranger's identical exposures in one visit are logged once per reason: once the background
    # processor has turned the first exposure into a profile, the stranger is no longer unknown
    # (no fallback), which the timing decides
    logged = _wait(lambda: len(_viewed(cdp)) >= 2 and _viewed(cdp))
    assert logged, _viewed(cdp)
    known = [p for p in logged if p.get("userId") == "u1"]
    assert len(known) == 1
    assert known[0]["properties"]["variant"] == "gold" and known[0]["properties"]["holdout"] is False
    assert known[0]["properties"]["experience"] == "hero" and known[0]["context"]["page"] == {"path": "/"}
    cdp.processor.run_until_caught_up()
    with cdp.engine.connect() as conn:
        on_profiles = conn.execute(
            sa.select(sa.func.count()).where(profile_events.c.name == EXPERIENCE_VIEWED)
        ).scalar_one()
        counts = decisions_logged(conn)
    viewed = _viewed(cdp)
    stranger = [p["properties"]["reason"] for p in viewed if p.get("anonymousId") == "stranger"]
    assert stranger[0] == "unknown_visitor" and len(stranger) == len(set(stranger)) <= 2, stranger
    assert on_profiles == len(viewed) == 1 + len(stranger)
    # once known, the stranger matches the catch-all variant instead of the fallback
    shown = Counter(p["properties"].get("variant") for p in viewed)
    assert shown["gold"] == 1 and shown[None] >= 1
    assert {c["variant"]: c["shown"] for c in next(iter(counts.values()))} == dict(shown)


def test_keys_and_refusals(client: TestClient, cdp: OpenCDP, write_key: str, admin_key: str) -> None:
    _setup(client, cdp, write_key, admin_key)
    public = create_api_key(cdp.engine, "decide")[1]
    reader = create_api_key(cdp.engine, "read")[1]
    metrics = create_api_key(cdp.engine, "metrics")[1]
    body = {"userId": "u1", "placements": ["home-hero"]}

    # a secret key with read may ask for trait values; a public key may not
    revealed = client.post(
        "/v1/decide", json={**body, "traits": ["plan", "secret_note"]}, headers=_bearer(reader)
    )
    assert revealed.status_code == 200, revealed.text
    assert revealed.json()["traits"] == {"plan": "gold", "secret_note": SECRET_TRAIT}
    refused = client.post("/v1/decide", json={**body, "traits": ["plan"]}, headers=_bearer(public))
    assert refused.status_code == 403 and refused.json()["errors"][0]["field"] == "traits"
    assert SECRET_TRAIT not in refused.text and "gold" not in refused.text

    assert client.post("/v1/decide", json=body).status_code == 401
    assert client.post("/v1/decide", json=body, headers=_bearer("pk_nope")).status_code == 401
    assert client.post("/v1/decide", json=body, headers=_bearer(write_key)).status_code == 401
    in_url = client.post("/v1/decide", json=body, params={"key": reader})
    assert in_url.status_code == 401 and "URL" in in_url.json()["message"]
    too_weak = client.post("/v1/decide", json=body, headers=_bearer(metrics))
    assert too_weak.status_code == 403 and too_weak.json()["required_scope"] == "read"
    assert too_weak.headers["access-control-allow-origin"] == "*"

    invalid = client.post("/v1/decide", json={"placements": ["has space"]}, headers=_bearer(public))
    assert invalid.status_code == 400
    assert {p["path"] for p in invalid.json()["problems"]} == {"placements"}
    assert invalid.headers["access-control-allow-origin"] == "*"
    not_json = client.post("/v1/decide", content=b"{", headers=_bearer(public))
    assert not_json.status_code == 400 and not_json.json()["error"] == "invalid_json"
    big = client.post("/v1/decide", content=b" " * 70_000, headers=_bearer(public))
    assert big.status_code == 413

    preflight = client.options(
        "/v1/decide",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert "Authorization" in preflight.headers["access-control-allow-headers"]

    # a change through the API decides from the next request on (the decider's cache is dropped)
    changed = client.post("/api/experiences/hero/disable", headers=_bearer(admin_key))
    assert changed.status_code == 200
    after = client.post("/v1/decide", json=body, headers=_bearer(public))
    assert after.json()["decisions"]["home-hero"]["reason"] == "no_experience"


def test_erased_visitors_are_not_logged(
    client: TestClient, cdp: OpenCDP, write_key: str, admin_key: str
) -> None:
    _setup(client, cdp, write_key, admin_key)
    public = create_api_key(cdp.engine, "decide")[1]
    with cdp.engine.begin() as conn:
        suppress(conn, [Identifier("anonymous_id", "gone")])
    cdp.suppressor.invalidate()
    erased = client.post(
        "/v1/decide", json={"anonymousId": "gone", "placements": ["home-hero"]}, headers=_bearer(public)
    )
    assert erased.status_code == 200
    other = client.post(
        "/v1/decide", json={"anonymousId": "here", "placements": ["home-hero"]}, headers=_bearer(public)
    )
    assert other.status_code == 200
    logged = _wait(lambda: _viewed(cdp))
    time.sleep(0.3)  # the erased visitor's row, had it been handed over, would be written with the other
    assert [p.get("anonymousId") for p in _viewed(cdp)] == ["here"] and logged


def test_the_fast_path_answers_plain_requests_and_leaves_the_rest_to_the_route(
    client: TestClient, cdp: OpenCDP, write_key: str, admin_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """api/decide.py `DecideFastPath`: the same answer as the route, the route's metric label, and
    every error (and a gzip body, and a request for traits) answered by the route itself."""
    _setup(client, cdp, write_key, admin_key)
    public = create_api_key(cdp.engine, "decide", "site")[1]
    reader = create_api_key(cdp.engine, "read")[1]
    routed: list[bool] = []  # per request: True when the fast path left it to the route
    real = decide_api.DecideFastPath._answer

    def spying(self: Any, *args: Any) -> Any:
        answer = real(self, *args)
        routed.append(answer is None)
        return answer

    monkeypatch.setattr(decide_api.DecideFastPath, "_answer", spying)

    body = {"userId": "u1", "placements": ["home-hero"], "context": {"page": {"path": "/"}}}
    # the first decision loads the experiences, in a worker thread: the route's
    assert client.post("/v1/decide", json=body, headers=_bearer(public)).status_code == 200
    assert routed == [True]
    routed.clear()
    fast = client.post("/v1/decide", json=body, headers={**_bearer(public), "Origin": "https://shop.example"})
    assert fast.status_code == 200 and routed == [False]
    assert fast.json()["decisions"]["home-hero"]["variant"] == "gold"
    assert fast.headers["cache-control"] == "no-store"
    assert fast.headers["access-control-allow-origin"] == "*"
    assert client.post("/v1/decide", json=body, params={"key": public}).status_code == 200
    assert routed == [False, False]
    metrics = client.get("/metrics", headers=_bearer(admin_key)).text
    assert 'route="/v1/decide"' in metrics

    # what the fast path leaves to the route: errors, compressed bodies, trait values
    assert client.post("/v1/decide", json={"placements": "x"}, headers=_bearer(public)).status_code == 400
    assert client.post("/v1/decide", json=body).status_code == 401
    zipped = client.post(
        "/v1/decide",
        content=gzip.compress(orjson.dumps(body)),
        headers={**_bearer(public), "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert zipped.status_code == 200 and zipped.json()["decisions"]["home-hero"]["variant"] == "gold"
    traits = client.post("/v1/decide", json={**body, "traits": ["plan"]}, headers=_bearer(reader))
    assert traits.status_code == 200 and traits.json()["traits"] == {"plan": "gold"}
    assert routed == [False, False, True, True, True, True]
