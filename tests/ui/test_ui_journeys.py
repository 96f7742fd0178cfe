"""Journeys in the dashboard, in-process on SQLite and PostgreSQL: create with a definition error
named by its path, create, edit (a new version), activate with the real processor and runner,
the stats per step, a profile's journeys in its 360° view, pause, delete; read-only roles and
forged forms change nothing, nor does activating one whose destination has gone; every change is
in the audit log, without the definition."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.activation.destinations import DestinationSpec, create
from opencdp.journeys import store as journey_store
from opencdp.journeys.definition import parse_definition
from opencdp.store.schema import audit_log, journey_instances, journeys
from opencdp.system import OpenCDP
from opencdp.ui import users
from opencdp.ui.views_journeys import EXAMPLE, describe_entry, describe_step
from tests.ui.conftest import EMAILS, csrf_token

DEFINITION = {
    "entry": {"event": "Signed Up"},
    "goal": {"event": "Order Completed"},
    "steps": [
        {"id": "a day", "wait": {"days": 1}},
        {"id": "hello", "send": {"destination": "hook", "channel": "email", "content": {"subject": "Hi"}}},
        {"id": "tag", "tag": {"add": "welcomed"}},
    ],
}


def _hook(cdp: OpenCDP, name: str = "hook") -> int:
    with cdp.engine.begin() as conn:
        spec = DestinationSpec(
            name=name, kind="webhook", config={"url": "http://127.0.0.1:9/x"}, enabled=False
        )
        return create(conn, cdp.settings, spec)


def _form(client: TestClient, **fields: str) -> dict[str, str]:
    base = {"name": "Welcome", "description": "new sign-ups", "definition": json.dumps(DEFINITION)}
    return {**base, **fields, "csrf_token": csrf_token(client, "/journeys")}


def _audit(cdp: OpenCDP) -> list[tuple[str, str, str | None, Any]]:
    with cdp.engine.connect() as conn:
        return [
            (r.actor, r.action, r.target_id, r.detail)
            for r in conn.execute(sa.select(audit_log).order_by(audit_log.c.id))
            if r.action.startswith("journey.")
        ]


def _wait(check: Callable[[], Any], seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_example_is_valid_and_every_step_is_described() -> None:
    parse_definition(EXAMPLE)
    assert [describe_step(s) for s in EXAMPLE["steps"]] == [
        "wait 2 h",
        'send to "email" (email)',
        "wait 2 d",
        "set ads_abandoned_checkout = true",
    ]
    wait_for = {"event": "Email Opened", "within": {"days": 2}, "then": "offer", "timeout": "nudge"}
    assert describe_step({"id": "w", "wait_for": wait_for}) == (
        'wait up to 2 d for "Email Opened" → offer, else → nudge'
    )
    branch = {"if": {"trait": "vip", "op": "exists"}, "then": "a", "else": "b"}
    assert describe_step({"id": "b", "branch": branch}).startswith('branch: if {"trait":"vip"')
    untag = {"id": "t", "tag": {"remove": "vip"}, "next": "exit"}
    assert describe_step(untag) == 'tag: remove "vip", then → exit'
    assert describe_step({"id": "x", "exit": True}) == "exit"
    assert describe_step({"id": "m", "wait": {"hours": 1, "minutes": 30}}) == "wait 1 h 30 min"
    assert describe_entry({"segment": "VIP"}) == 'entered segment "VIP"'
    schedule = {"schedule": {"every": "week", "day": "monday", "at": "09:00"}, "audience": "shoes"}
    assert describe_entry(schedule) == 'every week on monday at 09:00 UTC: members of "shoes"'


def test_create_edit_activate_stats_profile_pause_and_delete(
    client: TestClient,
    cdp: OpenCDP,
    as_role: Callable[[str], TestClient],
    ui_users: dict[str, users.User],
    write_key: str,
) -> None:
    as_role("marketer")
    listing = client.get("/journeys")
    assert listing.status_code == 200 and "No journeys yet." in listing.text
    assert 'href="/journeys" class="active"' in listing.text
    new = client.get("/journeys/new").text
    assert "&#34;Checkout Started&#34;" in new and 'id="journey-example"' in new  # pre-filled, and beside
    assert 'id="step-reference"' in new and "wait_for" in new and 'id="entry-reference"' in new

    # a definition problem is named by its path, beside the definition; what was typed stays
    typed = json.dumps(DEFINITION)
    bad = client.post("/journeys", data=_form(client, name="Typed name", definition=typed))
    assert bad.status_code == 400
    assert re.search(
        r'id="error-definition"><code>definition\.steps\.1\.send\.destination</code>: no destination named',
        bad.text,
    )
    assert 'aria-invalid="true" aria-describedby="error-definition"' in bad.text
    assert 'value="Typed name"' in bad.text and "&#34;a day&#34;" in bad.text
    unreadable = client.post("/journeys", data=_form(client, definition="{not json"))
    assert unreadable.status_code == 400 and "not valid JSON" in unreadable.text
    nameless = client.post("/journeys", data=_form(client, name=" "))
    assert nameless.status_code == 400 and 'id="error-name"' in nameless.text

    _hook(cdp)
    saved = client.post("/journeys", data=_form(client), follow_redirects=False)
    assert saved.status_code == 303, saved.text
    found = re.fullmatch(r"/journeys/(\d+)\?done=created", saved.headers["location"])
    assert found
    jid = int(found.group(1))
    page = client.get(saved.headers["location"]).text
    assert "Journey saved as a draft" in page and 'id="journey-status">draft<' in page
    assert (
        'id="activate-journey"' in page
        and "event &#34;Signed Up&#34;" in page
        and "“Order Completed”" in page
    )
    assert re.findall(r'<tr data-step="([^"]+)">', page) == ["a day", "hello", "tag"]
    assert "<td>wait 1 d</td>" in page and "<td>send to &#34;hook&#34; (email)</td>" in page
    duplicate = client.post("/journeys", data=_form(client))
    assert duplicate.status_code == 409 and 'id="error-name"' in duplicate.text

    edit = client.get(f"/journeys/{jid}/edit").text
    assert 'id="journey-name" value="Welcome" disabled' in edit and "Save new version" in edit
    wrong = {**DEFINITION, "steps": [{"id": "a day", "wait": {"days": 0}}]}
    refused = client.post(f"/journeys/{jid}", data=_form(client, definition=json.dumps(wrong)))
    assert refused.status_code == 400 and "<code>definition.steps.0.wait</code>" in refused.text
    assert "Edit journey" in refused.text and "&#34;days&#34;: 0" in refused.text
    updated = client.post(
        f"/journeys/{jid}", data=_form(client, name="ignored", description="v2"), follow_redirects=False
    )
    assert updated.status_code == 303 and updated.headers["location"] == f"/journeys/{jid}?done=saved"

    on = client.post(
        f"/journeys/{jid}/activate", data={"csrf_token": csrf_token(client)}, follow_redirects=False
    )
    assert on.status_code == 303
    page = client.get(on.headers["location"]).text
    assert "Journey active" in page and 'id="journey-status">active<' in page and 'id="pause-journey"' in page

    auth = {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
    sent = client.post("/v1/track", json={"userId": "u1", "event": "Signed Up"}, headers=auth)
    assert sent.status_code == 200, sent.text

    def waiting() -> bool:
        with cdp.engine.connect() as conn:
            steps = journey_store.stats(conn, jid)["steps"]
        return bool(steps.get("a day", {}).get("waiting"))

    assert _wait(waiting)
    page = client.get(f"/journeys/{jid}").text
    assert 'id="stat-entered">1<' in page and 'id="stat-active">1<' in page
    assert 'id="stat-rate">0.0 %<' in page
    row = re.search(r'<tr data-step="a day">.*?</tr>', page, re.S)
    assert row and '<td class="num now-here">1</td>' in row.group(0) and "waiting 1" in row.group(0)
    versions = re.findall(r'<tr data-version="(\d+)">\s*<td class="num">\d+.*?<td>([^<]+)</td>', page, re.S)
    assert versions == [("2", EMAILS["marketer"]), ("1", EMAILS["marketer"])]
    assert page.count("<details><summary>Show</summary><pre>") == 2
    listing = client.get("/journeys").text
    row = re.search(rf'<a href="/journeys/{jid}">Welcome</a>.*?</tr>', listing, re.S)
    assert row and ">active</span>" in row.group(0)
    assert re.findall(r'<td class="num">([^<]+)</td>', row.group(0))[:4] == ["2", "1", "1", "0"]

    with cdp.engine.connect() as conn:
        profile_id = conn.execute(
            sa.select(journey_instances.c.profile_id).where(journey_instances.c.journey_id == jid)
        ).scalar_one()
    profile = client.get(f"/profiles/{profile_id}").text
    section = re.search(r'<section class="panel" id="journeys">.*?</section>', profile, re.S)
    assert section, profile
    assert f'<a href="/journeys/{jid}">Welcome</a>' in section.group(0)
    assert "At <strong>a day</strong>" in section.group(0) and "a day: waiting" in section.group(0)

    off = client.post(
        f"/journeys/{jid}/pause", data={"csrf_token": csrf_token(client)}, follow_redirects=False
    )
    assert off.status_code == 303
    assert 'id="journey-status">paused<' in client.get(off.headers["location"]).text
    assert ">paused</span>" in client.get("/journeys").text

    deleted = client.post(
        f"/journeys/{jid}/delete", data={"csrf_token": csrf_token(client)}, follow_redirects=False
    )
    assert deleted.headers["location"] == "/journeys?done=deleted"
    assert client.get(f"/journeys/{jid}").status_code == 404
    entries = _audit(cdp)
    assert [(action, target) for _, action, target, _ in entries] == [
        ("journey.create", str(jid)),
        ("journey.update", str(jid)),
        ("journey.activate", str(jid)),
        ("journey.pause", str(jid)),
        ("journey.delete", str(jid)),
    ]
    assert {actor for actor, *_ in entries} == {f"user:{ui_users['marketer'].id}"}
    assert "Signed Up" not in json.dumps([detail for *_, detail in entries])  # no definition content


def test_read_only_roles_forged_forms_and_a_refused_activation(
    client: TestClient, cdp: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    _hook(cdp)
    with cdp.engine.begin() as conn:
        jid = journey_store.save(conn, "Welcome", DEFINITION)["id"]
    form = {"name": "x", "description": "", "definition": json.dumps(DEFINITION)}
    posts = [
        ("/journeys", form),
        (f"/journeys/{jid}", form),
        (f"/journeys/{jid}/activate", {}),
        (f"/journeys/{jid}/pause", {}),
        (f"/journeys/{jid}/delete", {}),
    ]
    as_role("analyst")
    for page in ("/journeys", f"/journeys/{jid}", f"/journeys/{jid}/edit"):
        shown = client.get(page)
        assert shown.status_code == 200, page
        for control in ("New journey", "Activate</button>", "Delete</button>", "Save new version"):
            assert control not in shown.text, (page, control)
    token = csrf_token(client)
    for path, data in posts:
        response = client.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 403 and "can look" in response.text, path

    as_role("admin")
    token = csrf_token(client)
    for path, data in posts:
        assert client.post(path, data=data).status_code == 403, path
        assert client.post(path, data={**data, "csrf_token": "wrong"}).status_code == 403, path
        cross = client.post(
            path, data={**data, "csrf_token": token}, headers={"Origin": "https://evil.example"}
        )
        assert cross.status_code == 403 and "This form has expired" in cross.text, path
    with cdp.engine.connect() as conn:
        row = conn.execute(sa.select(journeys)).one()
    assert (row.name, row.status, row.version) == ("Welcome", "draft", 1) and _audit(cdp) == []

    # what the definition names has gone since it was saved: activation says so and changes nothing
    with cdp.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM destinations"))
    refused = client.post(f"/journeys/{jid}/activate", data={"csrf_token": token})
    assert refused.status_code == 400
    assert "definition.steps.1.send.destination: no destination named" in refused.text
    with cdp.engine.connect() as conn:
        assert conn.execute(sa.select(journeys.c.status)).scalar_one() == "draft"
    assert _audit(cdp) == []
