"""Segments and computed traits over the admin API and the CLI."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

from fastapi.testclient import TestClient

from opencdp.system import OpenCDP
from tests.identity_helpers import log_messages, process

SHOE_BUYERS = {
    "and": [
        {
            "event": "Order Completed",
            "where": [{"property": "category", "op": "eq", "value": "shoes"}],
            "count": {"op": "gte", "value": 2},
        },
        {"trait": "country", "op": "eq", "value": "DE"},
    ]
}


def _shop(cdp: OpenCDP) -> None:
    messages = []
    for n, (country, orders) in enumerate([("DE", 2), ("DE", 1), ("FR", 3), ("DE", 4)]):
        messages.append(
            {
                "type": "identify",
                "context": {"consent": {"purposes": {"email_marketing": n in (0, 3)}}},
                "userId": f"c{n}",
                "timestamp": "2026-05-01T10:00:00Z",
                "traits": {
                    "email": f"c{n}@example.com",
                    "country": country,
                    "first_name": '=HYPERLINK("evil")' if n == 3 else f"Name{n}",
                },
            }
        )
        messages += [
            {
                "type": "track",
                "userId": f"c{n}",
                "event": "Order Completed",
                "timestamp": f"2026-05-0{2 + i}T10:00:00Z",
                "properties": {"category": "shoes", "revenue": 10 * (i + 1)},
            }
            for i in range(orders)
        ]
    log_messages(cdp.engine, messages)
    process(cdp.engine)


def test_segment_lifecycle_over_the_api(client: TestClient, cdp: OpenCDP, admin_key: str) -> None:
    _shop(cdp)
    auth = {"Authorization": f"Bearer {admin_key}"}
    assert client.post("/api/segments/validate", json={"criteria": SHOE_BUYERS}, headers=auth).json() == {
        "valid": True
    }
    bad = client.post(
        "/api/segments/validate",
        json={"criteria": {"and": [{"trait": "x", "op": "gt", "value": "a"}]}},
        headers=auth,
    )
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "criteria.and.0.value"

    preview = client.post(
        "/api/segments/preview", json={"criteria": SHOE_BUYERS, "sample_size": 5}, headers=auth
    )
    assert preview.status_code == 200
    assert preview.json()["count"] == 2
    assert {p["traits"]["email"] for p in preview.json()["sample"]} == {"c0@example.com", "c3@example.com"}
    assert client.get("/api/segments", headers=auth).json() == []  # preview saves nothing

    created = client.post(
        "/api/segments", json={"name": "DE shoe fans", "criteria": SHOE_BUYERS}, headers=auth
    )
    assert created.status_code == 201 and created.json()["members"] == 2
    again = client.post("/api/segments", json={"name": "DE shoe fans", "criteria": SHOE_BUYERS}, headers=auth)
    assert again.status_code == 409
    nested = {"and": [{"segment": "DE shoe fans"}, {"computed": "order_count", "op": "gte", "value": 3}]}
    assert (
        client.post("/api/segments", json={"name": "big fans", "criteria": nested}, headers=auth).json()[
            "members"
        ]
        == 1
    )
    cycle = client.put(
        "/api/segments/DE shoe fans",
        json={"name": "DE shoe fans", "criteria": {"segment": "big fans"}},
        headers=auth,
    )
    assert cycle.status_code == 400 and "refers to itself" in cycle.json()["message"]

    page = client.get(
        "/api/segments/DE shoe fans/members", params={"limit": 1, "purpose": "email_marketing"}, headers=auth
    ).json()
    assert page.get("total") == 2, page
    assert len(page["members"]) == 1 and page["next_after"]
    rest = client.get(
        "/api/segments/DE shoe fans/members",
        params={"after": page["next_after"], "purpose": "email_marketing"},
        headers=auth,
    ).json()
    assert len(rest["members"]) == 1 and rest["next_after"] is None

    exported = client.get(
        "/api/segments/DE shoe fans/export",
        params={"traits": "email,first_name", "computed": "order_count", "purpose": "email_marketing"},
        headers=auth,
    )
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {r["email"] for r in rows} == {"c0@example.com", "c3@example.com"}
    assert {r["computed.order_count"] for r in rows} == {"2", "4"}
    assert '\'=HYPERLINK("evil")' in {r["first_name"] for r in rows}  # no formula injection

    in_use = client.delete("/api/segments/DE shoe fans", headers=auth)
    assert in_use.status_code == 400 and "refers to" in in_use.json()["message"]
    no_purpose = client.get("/api/segments/DE shoe fans/export", headers=auth)
    assert no_purpose.status_code == 400 and no_purpose.json()["errors"][0]["field"] == "purpose"
    unknown = client.get("/api/segments/DE shoe fans/export", params={"purpose": "telepathy"}, headers=auth)
    assert unknown.status_code == 400 and "defined purposes" in unknown.json()["message"]
    sms = client.get("/api/segments/DE shoe fans/members", params={"purpose": "sms"}, headers=auth).json()
    assert sms["total"] == 0  # opt-in: nobody said yes to SMS
    assert client.delete("/api/segments/big fans", headers=auth).status_code == 204
    assert client.delete("/api/segments/DE shoe fans", headers=auth).status_code == 204
    assert client.get("/api/segments/DE shoe fans", headers=auth).status_code == 404
    assert client.get("/api/segments", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_computed_trait_definitions_over_the_api(client: TestClient, admin_key: str) -> None:
    auth = {"Authorization": f"Bearer {admin_key}"}
    listed = client.get("/api/traits/computed", headers=auth).json()
    assert (
        "total_revenue" in {d["name"] for d in listed["definitions"]} and "rfm_segment" in listed["derived"]
    )
    custom = {
        "name": "kids_orders",
        "kind": "count",
        "filter": {"event": "Order Completed", "where": [{"property": "category", "value": "kids"}]},
    }
    assert client.post("/api/traits/computed", json=custom, headers=auth).status_code == 201
    clash = client.post("/api/traits/computed", json={**custom, "name": "order_count"}, headers=auth)
    assert clash.status_code == 400
    invalid = client.post("/api/traits/computed", json={"name": "x", "kind": "sum"}, headers=auth)
    assert invalid.status_code == 400
    assert client.delete("/api/traits/computed/kids_orders", headers=auth).status_code == 204
    assert client.delete("/api/traits/computed/kids_orders", headers=auth).status_code == 404


def test_segments_from_the_command_line(cdp: OpenCDP, env_for: dict[str, str], tmp_path: object) -> None:
    _shop(cdp)
    cdp.stop()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "opencdp", *args], env=env_for, capture_output=True, text=True, timeout=120
        )

    import orjson

    criteria = orjson.dumps(SHOE_BUYERS).decode()
    preview = run("segments", "preview", criteria, "--sample", "1")
    assert preview.returncode == 0 and "2 profiles match" in preview.stderr
    bad = run("segments", "validate", '{"and": [{"event": "E", "count": {"value": -1}}]}')
    assert bad.returncode == 1 and "and.0.count.value" in bad.stderr
    assert "saved with 2 members" in run("segments", "create", "fans", criteria).stdout
    assert run("segments", "list").stdout.startswith("fans\t2")
    out = f"{tmp_path}/fans.csv"
    exported = run(
        "segments", "export", "fans", "--traits", "email", "--out", out, "--purpose", "email_marketing"
    )
    assert exported.returncode == 0 and "wrote 2 members" in exported.stderr
    with open(out, encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == 2
    refreshed = run("segments", "refresh")
    assert refreshed.returncode == 0 and "refreshed computed traits of" in refreshed.stdout
    assert run("segments", "delete", "fans").returncode == 0
    assert "no segment named" in run("segments", "show", "fans").stderr
