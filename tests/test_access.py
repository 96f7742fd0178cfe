"""Scoped API keys, rate limits per write key and the audit log, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient

from opencdp.access import audit as audit_log
from opencdp.access.keys import SCOPES, create_api_key, create_source, grants, set_api_key_enabled
from opencdp.access.ratelimit import RateLimit, TokenBuckets
from opencdp.api.app import create_app
from opencdp.cli import main
from opencdp.cli.audit import audit_command
from opencdp.config import ConfigError
from opencdp.log.reader import count_events
from opencdp.segments import store as segment_store
from opencdp.store.schema import profiles
from opencdp.system import OpenCDP
from tests.identity_helpers import log_messages, process

EMAIL = "ann.private@example.com"
PHONE = "+4915112345678"
PERSONAL = (EMAIL, PHONE, PHONE[1:], "Annabel", "ann-1", "nobody@example.com", "bob.import@example.com")
BUYERS = {"event": "Order Completed", "count": {"op": "gte", "value": 1}}
BY_EMAIL = {"trait": "email", "op": "eq", "value": EMAIL}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def basic(write_key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


@pytest.fixture
def keys(cdp: OpenCDP) -> dict[str, str]:
    """One key per role: {"admin": secret, "export": secret, "read": secret, "metrics": secret}."""
    return {role: create_api_key(cdp.engine, role, f"{role} test")[1] for role in SCOPES}


@pytest.fixture
def ann(cdp: OpenCDP) -> str:
    """A customer who consented to e-mail marketing and ordered once, in segment "buyers"; her id."""
    consent = {"consent": {"purposes": {"email_marketing": True}}}
    traits = {"email": EMAIL, "phone": PHONE, "first_name": "Annabel"}
    log_messages(
        cdp.engine,
        [
            {"type": "identify", "userId": "ann-1", "context": consent, "traits": traits},
            {"type": "track", "userId": "ann-1", "event": "Order Completed", "properties": {"revenue": 9}},
        ],
    )
    process(cdp.engine)
    segment_store.save(cdp.engine, "buyers", BUYERS, "")
    live = sa.select(profiles.c.id).where(profiles.c.merged_into.is_(None))
    with cdp.engine.connect() as conn:
        return str(conn.execute(live).scalar_one())


def audit_rows(cdp: OpenCDP) -> list[dict[str, Any]]:
    return audit_log.entries(cdp.engine, 0, 10_000)


def assert_no_personal_data(rows: list[dict[str, Any]]) -> None:
    dump = orjson.dumps(rows, default=str).decode().lower()
    for value in PERSONAL:
        assert value.lower() not in dump, f"{value!r} is in the audit log"


# --- scopes -------------------------------------------------------------------------------------

IMPORT = {
    "source": "crm",
    "mapping": {"kind": "contacts", "key": "crm_id", "columns": {"crm_id": {"identifier": "crm_id"}}},
    "rows": [{"crm_id": "C1"}],
}
#: (method, path template, scope needed, request arguments). Writes come last: they change the data.
ROUTES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("GET", "/api/events", "read", {}),
    ("GET", "/api/profiles/lookup", "read", {"params": {"type": "email", "value": EMAIL}}),
    ("GET", "/api/profiles/{profile_id}", "read", {}),
    ("GET", "/api/profiles/{profile_id}/events", "read", {}),
    ("GET", "/api/profiles/{profile_id}/merges", "read", {}),
    ("GET", "/api/profiles/{profile_id}/journeys", "read", {}),
    ("GET", "/api/profiles/{profile_id}/sessions", "read", {}),
    ("GET", "/api/weather", "read", {}),
    ("GET", "/api/segments", "read", {}),
    ("GET", "/api/segments/{name}", "read", {}),
    ("GET", "/api/segments/{name}/reach", "read", {"params": {"purpose": "email_marketing"}}),
    ("POST", "/api/segments/validate", "read", {"json": {"criteria": BUYERS}}),
    ("POST", "/api/segments/preview", "read", {"json": {"criteria": BUYERS}}),
    ("GET", "/api/traits/computed", "read", {}),
    ("GET", "/api/segments/{name}/members", "export", {"params": {"purpose": "email_marketing"}}),
    ("GET", "/api/segments/{name}/export", "export", {"params": {"purpose": "email_marketing"}}),
    ("GET", "/api/sources", "admin", {}),
    ("GET", "/api/audit", "admin", {}),
    ("GET", "/api/audit/export", "admin", {}),
    ("POST", "/api/segments", "admin", {"json": {"name": "new", "criteria": BUYERS}}),
    ("PUT", "/api/segments/{name}", "admin", {"json": {"name": "buyers", "criteria": BUYERS}}),
    ("POST", "/api/traits/computed", "admin", {"json": {"name": "orders", "kind": "count"}}),
    ("DELETE", "/api/traits/computed/{trait}", "admin", {}),
    ("POST", "/api/imports", "admin", {"json": IMPORT}),
    (
        "POST",
        "/api/weather",
        "admin",
        {"json": {"rows": [{"region": "DE", "day": "2026-12-07", "condition": "rain"}]}},
    ),
    ("DELETE", "/api/segments/{name}", "admin", {}),
]


def test_roles_nest() -> None:
    assert [s for s in SCOPES if grants("admin", s)] == ["admin", "export", "read", "metrics"]
    assert [s for s in SCOPES if grants("export", s)] == ["export", "read", "metrics"]
    assert [s for s in SCOPES if grants("read", s)] == ["read", "metrics"]
    assert [s for s in SCOPES if grants("metrics", s)] == ["metrics"]
    assert not grants("write", "read") and not grants("admin", "superuser")


def test_every_route_needs_its_scope(
    client: TestClient, cdp: OpenCDP, keys: dict[str, str], ann: str
) -> None:
    wrong = []
    for method, template, scope, kwargs in ROUTES:
        path = template.format(profile_id=ann, name="buyers", trait="orders")
        for role in ("metrics", "read", "export", "admin"):
            response = client.request(method, path, headers=bearer(keys[role]), **kwargs)
            if grants(role, scope):
                ok = response.status_code < 400
            else:
                body = response.json()
                ok = response.status_code == 403 and body["required_scope"] == scope
            if not ok:
                wrong.append((method, template, role, response.status_code, response.text[:200]))
    assert wrong == []


def test_the_table_covers_every_route_of_these_routers(client: TestClient) -> None:
    """A new route on these routers must be added to ROUTES with its scope."""
    schema = client.get("/openapi.json").json()
    ours = {"admin", "profiles", "segments", "imports", "audit", "weather"}
    documented = {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if path != "/api/health" and ours & set(operation.get("tags", []))
    }
    tabled = {(m, t.replace("{trait}", "{name}")) for m, t, _, _ in ROUTES}
    assert documented == tabled


def test_every_api_route_refuses_requests_without_a_key(client: TestClient, write_key: str) -> None:
    """Also routes added by other modules: /api is never open, except the health check."""
    schema = client.get("/openapi.json").json()
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/") or path == "/api/health":
            continue
        concrete = path.replace("{", "").replace("}", "")
        for method in operations:
            for headers in ({}, bearer(write_key), basic(write_key)):
                response = client.request(method.upper(), concrete, headers=headers)
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.headers["www-authenticate"].startswith("Bearer")


def test_401_and_403_bodies(client: TestClient, cdp: OpenCDP, keys: dict[str, str]) -> None:
    missing = client.get("/api/segments")
    assert missing.status_code == 401
    assert missing.json() == {
        "success": False,
        "error": "unauthorized",
        "message": "an API key with the 'read' scope is required: Authorization: Bearer <key>",
    }
    assert client.get("/api/segments", headers=bearer("ak_nope")).json()["message"] == (
        "unknown or disabled API key"
    )
    forbidden = client.get("/api/audit", headers=bearer(keys["export"]))
    assert forbidden.status_code == 403
    assert forbidden.json() == {
        "success": False,
        "error": "forbidden",
        "message": "this endpoint needs the 'admin' scope; this key's role 'export' lacks it",
        "required_scope": "admin",
    }
    with cdp.engine.connect() as conn:
        read_id = conn.exec_driver_sql("SELECT id FROM api_keys WHERE role = 'read'").scalar_one()
    set_api_key_enabled(cdp.engine, read_id, False)
    assert client.get("/api/segments", headers=bearer(keys["read"])).status_code == 401


UNSTORABLE = [
    ("GET", "/api/profiles/lookup", {"params": {"type": "email", "value": "a\x00b"}}, "value"),
    ("GET", "/api/segments/a%00b", {}, "name"),
    ("GET", "/api/events", {"params": {"user_id": "u\x00"}}, "user_id"),
    ("GET", "/api/audit", {"params": {"actor": "key:\x00"}}, "actor"),
    ("POST", "/api/segments/preview", {"content": b'{"criteria": {"value": "\\ud800"}}'}, "criteria"),
    ("POST", "/api/segments", {"json": {"name": "n", "description": "\x00", "criteria": {}}}, "description"),
    ("POST", "/api/traits/computed", {"json": {"name": "t", "kind": "count", "description": "\x00"}}, "body"),
    ("POST", "/api/imports", {"json": {**IMPORT, "source": "crm\x00"}}, "source"),
]


def test_text_the_database_cannot_store_is_a_400(client: TestClient, keys: dict[str, str]) -> None:
    """NUL (PostgreSQL refuses it) and unpaired surrogates (no driver encodes them) never reach SQL."""
    headers = {**bearer(keys["admin"]), "Content-Type": "application/json"}
    for method, path, kwargs, field in UNSTORABLE:
        response = client.request(method, path, headers=headers, **kwargs)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["errors"][0]["field"] == field


# --- rate limits --------------------------------------------------------------------------------


@pytest.fixture
def limited(cdp: OpenCDP, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The app with 3 requests per write key, refilling so slowly that the test sees no refill."""
    monkeypatch.setenv("OPENCDP_RATE_LIMIT", "0.01:3")
    with TestClient(create_app(cdp)) as test_client:
        yield test_client


def test_rate_limit_per_write_key(limited: TestClient, cdp: OpenCDP) -> None:
    web, app = create_source(cdp.engine, "web")[1], create_source(cdp.engine, "app")[1]
    call = {"userId": "u", "event": "E"}
    for _ in range(3):
        assert limited.post("/v1/track", json=call, headers=basic(web)).status_code == 200
    refused = limited.post("/v1/batch", json={"batch": [{"type": "track", **call}]}, headers=basic(web))
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 100
    body = refused.json()
    assert body["success"] is False and body["error"] == "rate_limited"
    assert "retry after" in body["message"]
    in_body = limited.post("/v1/track", json={**call, "writeKey": web})
    assert in_body.status_code == 429
    assert limited.post("/v1/track", json=call, headers=basic(app)).status_code == 200  # its own bucket
    assert count_events(cdp.engine) == 4


def test_token_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(RateLimit(rate=2, burst=2), clock=lambda: now[0])
    assert buckets.take(1) == 0 and buckets.take(1) == 0
    assert buckets.take(1) == pytest.approx(0.5)
    assert buckets.take(2) == 0
    now[0] = 0.5
    assert buckets.take(1) == 0 and buckets.take(1) > 0
    now[0] = 100
    assert [buckets.take(1) for _ in range(3)][2] > 0  # refills up to the burst, not beyond


def test_rate_limit_setting() -> None:
    assert RateLimit.parse("200") == RateLimit(200, 400)
    assert RateLimit.parse("5:10") == RateLimit(5, 10)
    assert RateLimit.parse("off") is None and RateLimit.parse("0") is None
    for bad in ("fast", "5:0", "-1", "inf", "5:x"):
        with pytest.raises(ConfigError, match="OPENCDP_RATE_LIMIT"):
            RateLimit.parse(bad)


# --- the audit log ------------------------------------------------------------------------------


def test_reads_are_audited_without_personal_data(
    client: TestClient, cdp: OpenCDP, keys: dict[str, str], ann: str
) -> None:
    read, export = bearer(keys["read"]), bearer(keys["export"])
    for kind, value in (("email", EMAIL), ("phone", PHONE)):
        found = client.get("/api/profiles/lookup", params={"type": kind, "value": value}, headers=read)
        assert found.json()["id"] == ann
    nobody = {"type": "email", "value": "nobody@example.com"}
    assert client.get("/api/profiles/lookup", params=nobody, headers=read).status_code == 404
    misused = {"type": EMAIL, "value": "x"}
    assert client.get("/api/profiles/lookup", params=misused, headers=read).status_code == 404
    for suffix in ("", "/events", "/merges", "/sessions"):
        assert client.get(f"/api/profiles/{ann}{suffix}", headers=read).is_success
    assert client.get("/api/events", params={"user_id": "ann-1"}, headers=read).is_success
    preview = client.post("/api/segments/preview", json={"criteria": BY_EMAIL}, headers=read)
    assert preview.json()["count"] == 1
    purpose = {"purpose": "email_marketing"}
    assert client.get("/api/segments/buyers/members", params=purpose, headers=export).json()["total"] == 1
    exported = client.get(
        "/api/segments/buyers/export", params={**purpose, "traits": "email"}, headers=export
    )
    assert EMAIL in exported.text  # the export itself carries the data; the audit log must not

    rows = [r for r in audit_rows(cdp) if r["actor"] != "system"]
    actors = {r["action"]: r["actor"] for r in rows}
    assert actors["profile.get"] != actors["segment.export"]  # the read key, then the export key
    assert all(r["actor"].startswith("key:") for r in rows)
    assert [(r["action"], r["target_id"], r["detail"]) for r in rows] == [
        ("profile.lookup", ann, {"by": "email", "found": True}),
        ("profile.lookup", ann, {"by": "phone", "found": True}),
        ("profile.lookup", None, {"by": "email", "found": False}),
        ("profile.lookup", None, {"by": "other", "found": False}),
        ("profile.get", ann, {}),
        ("profile.events", ann, {"count": 2}),
        ("profile.merges", ann, {}),
        ("profile.sessions", ann, {"count": 0}),
        ("events.read", None, {"filters": ["user_id"], "count": 2}),
        ("segment.preview", None, {"count": 1, "sample": 1}),
        ("segment.members", "buyers", {"purpose": "email_marketing", "count": 1}),
        (
            "segment.export",
            "buyers",
            {"purpose": "email_marketing", "traits": ["email"], "computed": [], "predicted": []},
        ),
    ]
    assert_no_personal_data(audit_rows(cdp))


def test_changes_over_the_api_are_audited(client: TestClient, cdp: OpenCDP, keys: dict[str, str]) -> None:
    admin = bearer(keys["admin"])
    by_email = {"name": "vip", "criteria": BY_EMAIL, "description": f"for {EMAIL}"}
    assert client.post("/api/segments", json=by_email, headers=admin).status_code == 201
    assert client.put("/api/segments/vip", json=by_email, headers=admin).status_code == 200
    assert client.delete("/api/segments/vip", headers=admin).status_code == 204
    trait = {"name": "orders", "kind": "count", "filter": {"event": "Order Completed"}}
    assert client.post("/api/traits/computed", json=trait, headers=admin).status_code == 201
    assert client.delete("/api/traits/computed/orders", headers=admin).status_code == 204
    columns = {"crm_id": {"identifier": "crm_id"}, "email": {"identifier": "email"}}
    rows = [{"crm_id": "C2", "email": "bob.import@example.com"}]
    mapping = {"kind": "contacts", "key": "crm_id", "columns": columns}
    body = {"source": "crm", "mapping": mapping, "rows": rows}
    imported = client.post("/api/imports", json=body, headers=admin)
    assert imported.status_code == 200, imported.text

    entries = [r for r in audit_rows(cdp) if r["action"] != "key.create"]
    admin_actor = entries[0]["actor"]
    assert [(r["actor"] == admin_actor, r["action"], r["target_id"]) for r in entries] == [
        (True, "segment.create", "vip"),
        (True, "segment.update", "vip"),
        (True, "segment.delete", "vip"),
        (True, "trait.define", "orders"),
        (True, "trait.delete", "orders"),
        (False, "source.create", "crm"),  # by the import, on behalf of the key recorded next
        (True, "import.run", "crm"),
    ]
    assert entries[-1]["detail"]["source_created"] is True and entries[-1]["detail"]["events_written"] == 1
    assert_no_personal_data(audit_rows(cdp))


def test_audit_api_pages_filters_and_exports(client: TestClient, cdp: OpenCDP, keys: dict[str, str]) -> None:
    for n in range(5):
        audit_log.record(cdp.engine, f"user:{n % 2}", f"test.step{n}", "thing", str(n), {"n": n})
    admin = bearer(keys["admin"])
    seen, after = [], 0
    while after is not None:
        page = client.get("/api/audit", params={"after_id": after, "limit": 3}, headers=admin).json()
        seen += [e["action"] for e in page["entries"]]
        after = page["next_after_id"]
    assert seen == ["key.create"] * len(SCOPES) + [f"test.step{n}" for n in range(5)]
    by_actor = client.get("/api/audit", params={"actor": "user:1"}, headers=admin).json()["entries"]
    assert [e["target_id"] for e in by_actor] == ["1", "3"]
    by_prefix = client.get("/api/audit", params={"action": "test.*"}, headers=admin).json()["entries"]
    assert len(by_prefix) == 5 and by_prefix[0]["detail"] == {"n": 0}
    exact = client.get("/api/audit", params={"action": "test.step4"}, headers=admin).json()["entries"]
    assert [e["target_id"] for e in exact] == ["4"]
    assert client.get("/api/audit", params={"limit": 0}, headers=admin).status_code == 400

    exported = client.get("/api/audit/export", params={"action": "test.*"}, headers=admin)
    assert exported.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["action"] for r in table] == [f"test.step{n}" for n in range(5)]
    assert orjson.loads(table[0]["detail"]) == {"n": 0} and table[0]["actor"] == "user:0"
    assert audit_rows(cdp)[-1]["action"] == "audit.export"


def test_cli_changes_are_audited_and_shown(cdp: OpenCDP, env_for: dict[str, str], tmp_path: Path) -> None:
    runner = CliRunner()

    def cli(*args: str, command: Any = main) -> str:
        result = runner.invoke(command, list(args), env=env_for, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    write_key = cli("sources", "create", "shop").strip()
    cli("sources", "disable", "shop")
    secret = cli("keys", "create", "--role", "read", "--name", "bi").strip()
    key_id = str(audit_rows(cdp)[-1]["target_id"])
    cli("keys", "disable", key_id)
    cli("segments", "create", "vip", orjson.dumps(BY_EMAIL).decode())
    cli("segments", "delete", "vip")
    cli("traits", "define", '{"name": "orders", "kind": "count"}')
    cli("traits", "delete", "orders")

    rows = audit_rows(cdp)
    assert [(r["actor"], r["action"], r["target_id"]) for r in rows] == [
        ("cli", "source.create", "shop"),
        ("cli", "source.disable", "shop"),
        ("cli", "key.create", key_id),
        ("cli", "key.disable", key_id),
        ("cli", "segment.create", "vip"),
        ("cli", "segment.delete", "vip"),
        ("cli", "trait.define", "orders"),
        ("cli", "trait.delete", "orders"),
    ]
    assert rows[2]["detail"] == {"role": "read"}
    dump = orjson.dumps(rows, default=str).decode()
    assert write_key not in dump and secret not in dump and EMAIL not in dump

    lines = cli("--limit", "3", command=audit_command).splitlines()
    assert [line.split("\t")[3] for line in lines] == ["segment.delete", "trait.define", "trait.delete"]
    assert lines[-1].split("\t")[2:] == ["cli", "trait.delete", "computed_trait:orders", "{}"]
    assert len(cli("--action", "key.*", command=audit_command).splitlines()) == 2
    out = tmp_path / "audit.csv"
    cli("--csv", str(out), "--actor", "cli", command=audit_command)
    with out.open(encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert [r["action"] for r in table[:2]] == ["source.create", "source.disable"]
    assert len(table) == 9 and table[-1]["action"] == "audit.export"  # the export is recorded first
    assert cli("--csv", "-", "--limit", "1", command=audit_command).startswith("id,at,actor,action")
