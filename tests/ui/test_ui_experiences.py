"""Experiences in the dashboard, in-process on SQLite and PostgreSQL: create with problems named
by path beside the definition, edit (a new version), enable, disable, delete; decisions of the last
7 days per variant on the list; analysts only look; every change in the audit log as the user."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.personalise import store
from opencdp.personalise.experiences import EXPERIENCE_VIEWED, parse_experience
from opencdp.store.schema import audit_log, profile_events
from opencdp.system import OpenCDP
from opencdp.ui import users
from opencdp.ui.views_experiences import EXAMPLE, decisions_logged
from tests.ui.conftest import csrf_token

HERO: dict[str, Any] = {
    "name": "Hero",
    "placement": "home-hero",
    "variants": [
        {
            "name": "shoes",
            "audience": {"trait": "favourite", "op": "eq", "value": "shoes"},
            "content": {"html": "<b>shoes</b>"},
        },
        {"name": "all", "content": {"html": "<b>all</b>"}},
    ],
    "holdout_percent": 15,
}


def _form(client: TestClient, definition: Any) -> dict[str, str]:
    text = definition if isinstance(definition, str) else json.dumps(definition)
    return {"definition": text, "csrf_token": csrf_token(client, "/experiences")}


def _viewed(cdp: OpenCDP, experience_id: int, rows: list[tuple[str | None, bool, int]]) -> None:
    """`Experience Viewed` profile events: (variant, holdout, days ago)."""
    now = datetime.now(UTC)
    with cdp.engine.begin() as conn:
        conn.execute(
            profile_events.insert(),
            [
                {
                    "event_id": 10_000 + i,
                    "profile_id": f"p{i}",
                    "type": "track",
                    "name": EXPERIENCE_VIEWED,
                    "ts": now - timedelta(days=days_ago, minutes=1),
                    "source_id": 1,
                    "properties": {
                        "experience": "Hero",
                        "experience_id": experience_id,
                        "variant": variant,
                        "holdout": holdout,
                    },
                }
                for i, (variant, holdout, days_ago) in enumerate(rows)
            ],
        )


def test_example_is_valid() -> None:
    parse_experience(EXAMPLE)


def test_create_edit_enable_counts_and_delete(
    client: TestClient,
    cdp: OpenCDP,
    as_role: Callable[[str], TestClient],
    ui_users: dict[str, users.User],
) -> None:
    as_role("marketer")
    listing = client.get("/experiences")
    assert listing.status_code == 200 and "No experiences yet." in listing.text
    assert 'href="/experiences" class="active"' in listing.text
    new = client.get("/experiences/new").text
    assert "&#34;winter boots hero&#34;" in new and 'id="audience-reference"' in new

    # problems are named by their path beside the definition; what was typed stays
    bad = json.loads(json.dumps(HERO))
    bad["variants"][1]["weight"] = -2
    bad["variants"][0]["audience"] = {"and": [{"context": "nope", "op": "eq", "value": 1}]}
    refused = client.post("/experiences", data=_form(client, bad))
    assert refused.status_code == 400
    paths = re.findall(r'<li data-path="([^"]*)">', refused.text)
    assert paths and all(p.startswith("variants.0.audience.and.0") for p in paths)
    assert 'aria-describedby="error-definition"' in refused.text and "&#34;nope&#34;" in refused.text
    bad["variants"][0].pop("audience")
    refused = client.post("/experiences", data=_form(client, bad))
    assert re.findall(r'<li data-path="([^"]*)">', refused.text) == ["variants.1.weight"]
    unreadable = client.post("/experiences", data=_form(client, "{not json"))
    assert unreadable.status_code == 400 and "not valid JSON" in unreadable.text

    saved = client.post("/experiences", data=_form(client, HERO), follow_redirects=False)
    assert saved.status_code == 303, saved.text
    with cdp.engine.connect() as conn:
        created = store.get(conn, "Hero")
    assert not created["enabled"] and created["created_by"] == f"user:{ui_users['marketer'].id}"
    page = client.get(saved.headers["location"]).text
    assert "Experience saved, disabled" in page
    row = re.search(rf'<tr id="experience-{created["id"]}".*?</tr>', page, re.S)
    assert row and "home-hero" in row.group(0) and "15.0 %" in row.group(0) and "disabled" in row.group(0)
    assert "first match" in row.group(0) and '<span class="muted">none</span>' in row.group(0)
    duplicate = client.post("/experiences", data=_form(client, HERO))
    assert duplicate.status_code == 409 and 'data-path="name"' in duplicate.text

    eid = created["id"]
    on = client.post(
        f"/experiences/{eid}/enable", data={"csrf_token": csrf_token(client)}, follow_redirects=False
    )
    assert on.status_code == 303
    page = client.get(on.headers["location"]).text
    assert "Experience enabled" in page and "disable-experience" in page

    edit = client.get(f"/experiences/{eid}/edit").text
    assert "Save new version" in edit and "saving makes version 2" in edit
    changed = client.post(
        f"/experiences/{eid}", data=_form(client, {**HERO, "holdout_percent": 5}), follow_redirects=False
    )
    assert changed.status_code == 303
    with cdp.engine.connect() as conn:
        after = store.get(conn, eid)
    assert (after["version"], after["enabled"], after["holdout_percent"]) == (2, True, 5)

    # decisions of the last 7 days per variant, held out apart; older ones and others not counted
    _viewed(
        cdp,
        eid,
        [("shoes", False, 0), ("shoes", False, 1), ("shoes", True, 2), ("all", False, 6), ("all", False, 9)],
    )
    with cdp.engine.begin() as conn:  # another event with the same properties is not a decision
        conn.execute(
            profile_events.insert(),
            [
                {
                    "event_id": 20_000,
                    "profile_id": "q",
                    "type": "track",
                    "name": "Product Viewed",
                    "ts": datetime.now(UTC),
                    "source_id": 1,
                    "properties": {"experience_id": eid, "variant": "all"},
                }
            ],
        )
    with cdp.engine.connect() as conn:
        counts = decisions_logged(conn)
    assert counts == {
        eid: [
            {"variant": "all", "shown": 1, "held_out": 0},
            {"variant": "shoes", "shown": 2, "held_out": 1},
        ]
    }
    page = client.get("/experiences").text
    row = re.search(rf'<tr id="experience-{eid}".*?</tr>', page, re.S)
    assert row
    decided = re.findall(
        r'<span data-variant="([^"]*)">.*?<span class="shown">(\d+)</span>'
        r'(?:.*?<span class="held-out">(\d+))?',
        row.group(0),
    )
    assert decided == [("shoes", "2", "1"), ("all", "1", "")]

    # analysts look but change nothing
    as_role("analyst")
    page = client.get("/experiences").text
    assert "Hero" in page and "New experience" not in page and "delete-experience" not in page
    assert "readonly" in client.get(f"/experiences/{eid}/edit").text
    token = csrf_token(client, "/experiences")
    assert client.post(f"/experiences/{eid}/disable", data={"csrf_token": token}).status_code == 403
    assert client.post(f"/experiences/{eid}/delete", data={"csrf_token": token}).status_code == 403
    assert client.post("/experiences", data={"definition": "{}", "csrf_token": token}).status_code == 403

    as_role("admin")
    assert client.post(f"/experiences/{eid}/disable", data={"csrf_token": "forged"}).status_code == 403
    off = client.post(
        f"/experiences/{eid}/disable", data={"csrf_token": csrf_token(client)}, follow_redirects=False
    )
    assert off.status_code == 303
    assert 'data-confirm="Delete the experience Hero?' in client.get("/experiences").text
    gone = client.post(
        f"/experiences/{eid}/delete", data={"csrf_token": csrf_token(client)}, follow_redirects=False
    )
    assert gone.status_code == 303 and "Experience deleted" in client.get(gone.headers["location"]).text
    assert client.get(f"/experiences/{eid}/edit").status_code == 404
    assert client.get("/experiences/99999999999/edit").status_code == 404

    with cdp.engine.connect() as conn:
        entries = [
            (r.actor, r.action)
            for r in conn.execute(sa.select(audit_log).order_by(audit_log.c.id))
            if r.action.startswith("experience.")
        ]
    marketer, admin = f"user:{ui_users['marketer'].id}", f"user:{ui_users['admin'].id}"
    assert entries == [
        (marketer, "experience.create"),
        (marketer, "experience.enable"),
        (marketer, "experience.update"),
        (admin, "experience.disable"),
        (admin, "experience.delete"),
    ]
