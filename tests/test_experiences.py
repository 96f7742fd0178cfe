"""Experiences as data on both engines: the store (versions, unique names, audit), the admin API
(scopes, 400 with exact problem paths, 404/409) and the CLI."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient

from opencdp.access.keys import create_api_key
from opencdp.cli import main
from opencdp.personalise import store
from opencdp.personalise.experiences import ExperienceError
from opencdp.personalise.store import ExperienceNotSaved
from opencdp.store.schema import audit_log
from opencdp.system import OpenCDP

HERO: dict[str, Any] = {
    "name": "winter hero",
    "placement": "home-hero",
    "priority": 5,
    "variants": [
        {
            "name": "shoes",
            "audience": {"trait": "favourite_category", "op": "eq", "value": "shoes"},
            "content": {"html": "<h2>Boots</h2>"},
        },
        {"name": "everyone", "content": {"html": "<h2>Sale</h2>"}},
    ],
    "holdout_percent": 20,
    "fallback": {"html": "<h2>Welcome</h2>"},
}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _actions(engine: sa.Engine) -> list[tuple[str, str, dict[str, Any]]]:
    with engine.connect() as conn:
        return [
            (r.action, r.actor, r.detail)
            for r in conn.execute(
                sa.select(audit_log)
                .where(audit_log.c.action.startswith("experience."))
                .order_by(audit_log.c.id)
            )
        ]


def test_store_lifecycle(system: OpenCDP) -> None:
    engine = system.engine
    with engine.begin() as conn:
        created = store.create(conn, HERO, actor="test")
    assert (created["name"], created["placement"], created["version"], created["enabled"]) == (
        "winter hero",
        "home-hero",
        1,
        False,
    )
    # defaults are spelt out in what is stored; unset optional parts are left out
    assert created["definition"]["strategy"] == "first_match" and created["definition"]["goal"]
    assert "score" not in created["definition"]["variants"][0]
    with engine.connect() as conn:
        assert store.list_enabled(conn) == []
        before = store.stamp(conn)
    with engine.begin() as conn:
        store.set_enabled(conn, "winter hero", True, actor="test")
    with engine.connect() as conn:
        live = store.list_enabled(conn)
        assert store.stamp(conn) != before
    assert [(e.id, e.version, e.name, e.placement) for e in live] == [
        (created["id"], 1, "winter hero", "home-hero")
    ]
    assert live[0].experience.holdout_percent == 20

    changed = copy.deepcopy(HERO)
    changed["holdout_percent"] = 5
    with engine.begin() as conn:
        out = store.update(conn, str(created["id"]), changed, actor="test")
    assert (out["version"], out["enabled"], out["holdout_percent"]) == (2, True, 5)

    # names are unique, on create and on a rename
    with engine.begin() as conn, pytest.raises(ExperienceNotSaved) as taken:
        store.create(conn, HERO, actor="test")
    assert (taken.value.field, taken.value.status) == ("name", 409)
    other = {**HERO, "name": "other", "placement": "checkout-help"}
    with engine.begin() as conn:
        store.create(conn, other, actor="test")
    with engine.begin() as conn, pytest.raises(ExperienceNotSaved) as rename:
        store.update(conn, "other", {**other, "name": "winter hero"}, actor="test")
    assert rename.value.status == 409
    with engine.connect() as conn:
        assert [e["name"] for e in store.list_all(conn)] == ["other", "winter hero"]  # by placement
        assert [e["name"] for e in store.list_all(conn, "home-hero")] == ["winter hero"]

    # invalid definitions name the exact path, nothing is stored
    bad = copy.deepcopy(HERO)
    bad["name"] = "bad"
    bad["variants"][0]["audience"] = {"and": [{"trait": "x", "op": "nope", "value": 1}]}
    with engine.begin() as conn, pytest.raises(ExperienceError) as invalid:
        store.create(conn, bad, actor="test")
    assert invalid.value.problems[0]["path"].startswith("variants.0.audience.and.0")
    with engine.begin() as conn:
        store.delete(conn, "winter hero", actor="test")
    with engine.connect() as conn, pytest.raises(ExperienceNotSaved) as gone:
        store.get(conn, "winter hero")
    assert gone.value.status == 404
    actions = [a for a, _, _ in _actions(engine)]
    assert actions == [
        "experience.create",
        "experience.enable",
        "experience.update",
        "experience.create",
        "experience.delete",
    ]
    # the audit log gets names, placements and versions, never content
    assert all("Boots" not in json.dumps(d) for _, _, d in _actions(engine))


def test_api(client: TestClient, cdp: OpenCDP, admin_key: str) -> None:
    admin = _bearer(admin_key)
    reader = _bearer(create_api_key(cdp.engine, "read")[1])
    created = client.post("/api/experiences", json=HERO, headers=admin)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["enabled"], body["version"], body["variants"]) == (False, 1, ["shoes", "everyone"])
    assert client.post("/api/experiences", json=HERO, headers=admin).status_code == 409
    assert client.post("/api/experiences", json=HERO, headers=reader).status_code == 403

    listing = client.get("/api/experiences", headers=reader)
    assert listing.status_code == 200 and [e["name"] for e in listing.json()] == ["winter hero"]
    assert client.get("/api/experiences?placement=elsewhere", headers=reader).json() == []
    by_id = client.get(f"/api/experiences/{body['id']}", headers=reader)
    by_name = client.get("/api/experiences/winter%20hero", headers=reader)
    assert by_id.json() == by_name.json()
    assert client.get("/api/experiences/nope", headers=reader).status_code == 404

    enabled = client.post(f"/api/experiences/{body['id']}/enable", headers=admin)
    assert enabled.status_code == 200 and enabled.json()["enabled"] is True
    assert client.post("/api/experiences/winter hero/disable", headers=reader).status_code == 403

    invalid = copy.deepcopy(HERO)
    invalid["variants"][1]["weight"] = -1
    invalid["placement"] = "has space"
    refused = client.put("/api/experiences/winter hero", json=invalid, headers=admin)
    assert refused.status_code == 400, refused.text
    paths = {p["path"] for p in refused.json()["problems"]}
    assert paths == {"placement", "variants.1.weight"}
    assert {e["field"] for e in refused.json()["errors"]} == paths

    bad_audience = copy.deepcopy(HERO)
    bad_audience["variants"][0]["audience"] = {"and": [{"context": "nope", "op": "eq", "value": 1}]}
    problem = client.post("/api/experiences", json={**bad_audience, "name": "x"}, headers=admin).json()
    assert problem["problems"][0]["path"].startswith("variants.0.audience.and.0")

    huge = b'{"name": "huge", "placement": "p", "variants": [{"name": "a", "content": {"n": %d}}]}' % 2**70
    refused = client.post(
        "/api/experiences", content=huge, headers={**admin, "Content-Type": "application/json"}
    )
    assert refused.status_code == 400 and refused.json()["problems"][0]["path"] == "variants.0.content.n"

    changed = client.put("/api/experiences/winter hero", json={**HERO, "holdout_percent": 0}, headers=admin)
    assert changed.status_code == 200 and changed.json()["version"] == 2 and changed.json()["enabled"]
    assert client.delete("/api/experiences/winter hero", headers=reader).status_code == 403
    assert client.delete("/api/experiences/winter hero", headers=admin).status_code == 204
    assert client.get("/api/experiences", headers=reader).json() == []
    assert [a for a, _, _ in _actions(cdp.engine)] == [
        "experience.create",
        "experience.enable",
        "experience.update",
        "experience.delete",
    ]
    assert all(actor.startswith("key:") for _, actor, _ in _actions(cdp.engine))
    paths_in_schema = client.get("/openapi.json").json()["paths"]
    assert paths_in_schema["/api/experiences/{name_or_id}"]["put"]["summary"]
    assert "/v1/decide" in paths_in_schema


def test_cli(system: OpenCDP, env_for: dict[str, str], tmp_path: Path) -> None:
    runner = CliRunner()

    def run(*args: str, ok: bool = True) -> Any:
        result = runner.invoke(main, list(args), env=env_for, catch_exceptions=False)
        assert (result.exit_code == 0) == ok, result.output
        return result

    definition = tmp_path / "hero.json"
    definition.write_text(json.dumps(HERO))
    assert "created" in run("experiences", "create", "--file", str(definition)).output
    assert "winter hero" in run("experiences", "list").output
    listed = json.loads(run("experiences", "list", "--json").output)
    assert listed[0]["enabled"] is False and listed[0]["placement"] == "home-hero"
    run("experiences", "enable", "winter hero")
    assert json.loads(run("experiences", "show", "winter hero", "--json").output)["enabled"] is True
    run("experiences", "disable", str(listed[0]["id"]))

    bad = copy.deepcopy(HERO)
    bad["variants"][0]["score"] = "nonsense"
    definition.write_text(json.dumps(bad))
    failed = run("experiences", "update", "winter hero", "--file", str(definition), ok=False)
    lines = [line for line in failed.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "variants.0.score" in lines[0] and "Traceback" not in failed.output
    duplicate = run("experiences", "create", "--file", str(tmp_path / "missing.json"), ok=False)
    assert "--file" in duplicate.output
    definition.write_text(json.dumps(HERO))
    again = run("experiences", "create", "--file", str(definition), ok=False)
    assert "name:" in again.output and "exists" in again.output
    definition.write_text(json.dumps({**HERO, "priority": 1}))
    assert "version 2" in run("experiences", "update", "winter hero", "--file", str(definition)).output
    assert "deleted" in run("experiences", "delete", "winter hero", "--yes").output
    missing = run("experiences", "show", "winter hero", ok=False)
    assert "experience: no experience named 'winter hero'" in missing.output
    assert all(actor == "cli" for _, actor, _ in _actions(system.engine))
