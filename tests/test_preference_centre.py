"""The hosted preference centre and surveys (zero-party data), on SQLite and PostgreSQL: links,
consent per purpose, interests and channel as events from the `zero-party` source, surveys whose
answers become traits, the customer's own download and erasure, the admin API and the CLI."""

from __future__ import annotations

import base64
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient

from opencdp.accounts.surveys import SurveyError, parse_answers, parse_survey
from opencdp.cli import main
from opencdp.profiles.reader import get_profile
from opencdp.store.schema import events, preference_links, sources
from opencdp.system import OpenCDP
from tests.identity_helpers import profile_of

SURVEY: dict[str, Any] = {
    "name": "style-quiz",
    "title": "Tell us your style",
    "description": "Three questions.",
    "questions": [
        {
            "key": "favourite_colour",
            "text": "Which colour?",
            "kind": "single",
            "options": ["black", "blue"],
            "required": True,
        },
        {"key": "sizes", "text": "Sizes", "kind": "multiple", "options": ["S", "M", "L"]},
        {"key": "budget", "text": "Budget", "kind": "scale", "min": 1, "max": 5},
        {"key": "wish", "text": "Wish", "kind": "text", "max_length": 20, "trait": "stock_wish"},
    ],
}


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def wait_until(check: Any, seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while not (value := check()):
        assert time.monotonic() < deadline, "not processed in time"
        time.sleep(0.02)
    return value


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def zero_party_events(cdp: OpenCDP) -> list[dict[str, Any]]:
    with cdp.engine.connect() as conn:
        rows = conn.execute(
            sa.select(events.c.payload)
            .join(sources, sources.c.id == events.c.source_id)
            .where(sources.c.name == "zero-party")
            .order_by(events.c.id)
        )
        return [r.payload for r in rows]


@pytest.fixture
def ann(client: TestClient, cdp: OpenCDP, write_key: str, admin_key: str) -> dict[str, Any]:
    """A customer who agreed to e-mail marketing on the site, and a link to her preference centre."""
    message = {
        "userId": "ann",
        "traits": {"email": "ann@example.com", "name": "Ann"},
        "context": {"consent": {"purposes": {"email_marketing": True}}},
    }
    assert client.post("/v1/identify", json=message, headers=basic(write_key)).status_code == 200
    pid = wait_until(lambda: _profile(cdp, "user_id", "ann"))
    made = client.post(
        "/api/preferences/links",
        json={"type": "email", "value": "ann@example.com"},
        headers={"Authorization": f"Bearer {admin_key}"},
    )
    assert made.status_code == 201, made.text
    assert made.json()["profile_id"] == pid
    return {"pid": pid, "path": urlsplit(made.json()["url"]).path, "url": made.json()["url"]}


def _profile(cdp: OpenCDP, kind: str, value: str) -> str | None:
    try:
        return profile_of(cdp.engine, kind, value)
    except sa.exc.NoResultFound:
        return None


def test_a_customer_changes_consent_interests_and_channel_from_a_link(
    client: TestClient, cdp: OpenCDP, ann: dict[str, Any]
) -> None:
    page = client.get(ann["path"])
    assert page.status_code == 200
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert re.search(r'value="email_marketing" checked', page.text)
    assert not re.search(r'value="sms" checked', page.text)
    csrf = csrf_of(page.text)

    # a form from elsewhere (no or a wrong token) changes nothing
    before = len(zero_party_events(cdp))
    for forged in ({}, {"csrf": "x" * 43}):
        refused = client.post(ann["path"], data={**forged, "consent": "sms"}, follow_redirects=False)
        assert refused.status_code == 403
    assert len(zero_party_events(cdp)) == before == 0

    form = {"csrf": csrf, "consent": ["sms"], "interests": ["offers", "news"], "preferred_channel": "sms"}
    saved = client.post(ann["path"], data=form, follow_redirects=False)
    assert saved.status_code == 303 and saved.headers["location"] == ann["path"] + "?saved=1"
    profile = wait_until(
        lambda: (p := get_profile(cdp.engine, ann["pid"]))["traits"].get("preferred_channel") and p
    )
    assert profile["traits"]["interests"]["value"] == ["news", "offers"]
    assert profile["traits"]["interests"]["source"] == "zero-party"
    assert profile["traits"]["preferred_channel"] == {
        **profile["traits"]["preferred_channel"],
        "value": "sms",
    }
    assert profile["traits"]["name"]["value"] == "Ann"  # what was not on the form stays
    with cdp.engine.connect() as conn:
        consent = conn.execute(
            sa.text("select consent from profiles where id = :p"), {"p": ann["pid"]}
        ).scalar()
    consent = orjson.loads(consent) if isinstance(consent, str) else consent
    # withdrawn, granted, and every purpose shown but left unticked: recorded as a no
    assert consent == {
        "email_marketing": False,
        "sms": True,
        "analytics": False,
        "personalisation": False,
        "advertising": False,
    }
    logged = zero_party_events(cdp)
    updates = [e for e in logged if e.get("event") == "Consent Updated"]
    assert len(updates) == 5 and all(e["userId"] == "ann" for e in logged)
    sms = next(e for e in updates if e["properties"]["purpose"] == "sms")
    assert sms["context"]["consent"]["purposes"] == {"sms": {"granted": True, "version": None}}
    assert sms["properties"]["changed_by"] == "customer:preference-centre"

    shown = client.get(ann["path"] + "?saved=1")
    assert 'id="saved"' in shown.text and re.search(r'value="sms" checked', shown.text)
    # the same answers again: nothing new to log
    again = client.post(ann["path"], data=form, follow_redirects=False)
    assert again.status_code == 303 and len(zero_party_events(cdp)) == len(logged)

    for bad, field in (
        ({"preferred_channel": "pigeon"}, "preferred_channel"),
        ({"consent": "no_such_purpose"}, "consent"),
        ({"interests": "astrology"}, "interests"),
    ):
        refused = client.post(ann["path"], data={"csrf": csrf, **bad})
        assert refused.status_code == 400 and field in refused.text
    assert len(zero_party_events(cdp)) == len(logged)


def test_unknown_and_expired_links_open_nothing(
    client: TestClient, cdp: OpenCDP, ann: dict[str, Any]
) -> None:
    for path in ("/preferences/" + "x" * 43, "/preferences/" + "x" * 300, "/preferences/x/data"):
        response = client.get(path)
        assert response.status_code == 404 and "not valid" in response.text
    with cdp.engine.begin() as conn:
        conn.execute(preference_links.update().values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    expired = client.get(ann["path"])
    assert expired.status_code == 404 and "not valid" in expired.text
    with cdp.engine.connect() as conn:  # only the token's hash is kept
        stored = conn.execute(sa.select(preference_links.c.id)).scalar_one()
    assert stored not in ann["url"] and len(stored) == 64


def test_admin_api_refuses_what_it_cannot_link(client: TestClient, admin_key: str, cdp: OpenCDP) -> None:
    auth = {"Authorization": f"Bearer {admin_key}"}
    unknown = client.post(
        "/api/preferences/links", json={"type": "email", "value": "nobody@example.com"}, headers=auth
    )
    assert unknown.status_code == 404
    too_long = client.post(
        "/api/preferences/links",
        json={"type": "email", "value": "a@example.com", "hours": 10_000},
        headers=auth,
    )
    assert too_long.status_code == 400 and "hours" in too_long.text
    assert client.post("/api/preferences/links", json={"type": "email", "value": "a@b.c"}).status_code == 401


def test_surveys_are_data_and_answers_become_zero_party_traits(
    client: TestClient, cdp: OpenCDP, admin_key: str, ann: dict[str, Any]
) -> None:
    auth = {"Authorization": f"Bearer {admin_key}"}
    broken = {
        **SURVEY,
        "questions": [
            {"key": "Colour", "text": "x", "kind": "single", "options": ["a"]},
            {"key": "email", "text": "x", "kind": "stars"},
            {"key": "b", "text": "x", "kind": "scale", "min": 5, "max": 1},
        ],
    }
    refused = client.post("/api/surveys", json=broken, headers=auth)
    assert refused.status_code == 400
    paths = {p["path"] for p in refused.json()["problems"]}
    assert paths == {"questions.0.key", "questions.0.options", "questions.1.kind", "questions.2.max"}

    created = client.post("/api/surveys", json=SURVEY, headers=auth)
    assert created.status_code == 201 and created.json()["enabled"] is True
    assert client.post("/api/surveys", json=SURVEY, headers=auth).status_code == 200  # replaced
    assert [s["name"] for s in client.get("/api/surveys", headers=auth).json()] == ["style-quiz"]

    centre = client.get(ann["path"])
    assert f"{ann['path']}/surveys/style-quiz" in centre.text
    page = client.get(f"{ann['path']}/surveys/style-quiz")
    assert page.status_code == 200 and "Which colour?" in page.text
    csrf = csrf_of(page.text)
    url = f"{ann['path']}/surveys/style-quiz"

    missing = client.post(url, data={"csrf": csrf, "budget": "9", "wish": "w" * 21})
    assert missing.status_code == 400
    assert 'id="problem-favourite_colour"' in missing.text and 'id="problem-budget"' in missing.text
    assert 'id="problem-wish"' in missing.text and 'value="9"' not in missing.text
    assert zero_party_events(cdp) == []

    answered = client.post(
        url,
        data={"csrf": csrf, "favourite_colour": "blue", "sizes": ["L", "S"], "budget": "4", "wish": "boots"},
    )
    assert answered.status_code == 200 and "Thank you" in answered.text
    traits = wait_until(lambda: (t := get_profile(cdp.engine, ann["pid"])["traits"]).get("budget") and t)
    assert {k: traits[k]["value"] for k in ("favourite_colour", "sizes", "budget", "stock_wish")} == {
        "favourite_colour": "blue",
        "sizes": ["S", "L"],
        "budget": 4,
        "stock_wish": "boots",
    }
    assert {traits[k]["source"] for k in ("favourite_colour", "sizes", "budget", "stock_wish")} == {
        "zero-party"
    }
    done = [e for e in zero_party_events(cdp) if e.get("event") == "Survey Answered"]
    assert done[0]["properties"] == {
        "survey": "style-quiz",
        "favourite_colour": "blue",
        "sizes": ["S", "L"],
        "budget": 4,
        "wish": "boots",
    }

    assert client.post("/api/surveys/style-quiz/disable", headers=auth).json()["enabled"] is False
    assert client.get(url).status_code == 404
    assert "surveys/style-quiz" not in client.get(ann["path"]).text
    assert client.delete("/api/surveys/style-quiz", headers=auth).status_code == 204
    assert client.get("/api/surveys/style-quiz", headers=auth).status_code == 404


def test_survey_definitions_and_answers_are_checked() -> None:
    survey = parse_survey(SURVEY)
    assert parse_answers(survey, {"favourite_colour": ["black"], "sizes": [" "]}) == {
        "favourite_colour": "black"
    }
    for form, key in (
        ({"favourite_colour": ["green"]}, "favourite_colour"),
        ({"favourite_colour": ["black", "blue"]}, "favourite_colour"),
        ({"favourite_colour": ["black"], "sizes": ["XL"]}, "sizes"),
        ({"favourite_colour": ["black"], "budget": ["four"]}, "budget"),
    ):
        with pytest.raises(SurveyError) as caught:
            parse_answers(survey, form)
        assert [p for p, _ in caught.value.problems] == [key]
    twice = {
        **SURVEY,
        "questions": [SURVEY["questions"][0], {**SURVEY["questions"][1], "trait": "favourite_colour"}],
    }
    with pytest.raises(SurveyError, match="trait 'favourite_colour' is used by more than one question"):
        parse_survey(twice)
    with pytest.raises(SurveyError, match=r"questions\.0\.trait: 'preferred_channel' is reserved"):
        parse_survey({**SURVEY, "questions": [{**SURVEY["questions"][0], "trait": "preferred_channel"}]})


def test_a_customer_downloads_and_erases_their_data(
    client: TestClient, cdp: OpenCDP, ann: dict[str, Any], write_key: str
) -> None:
    data = client.get(ann["path"] + "/data")
    assert data.status_code == 200 and "attachment" in data.headers["content-disposition"]
    exported = data.json()
    assert exported["profile"]["id"] == ann["pid"]
    assert {"type": "email", "value": "ann@example.com"} in exported["profile"]["identifiers"]

    csrf = csrf_of(client.get(ann["path"] + "/erase").text)
    unconfirmed = client.post(ann["path"] + "/erase", data={"csrf": csrf, "confirm": "yes"})
    assert unconfirmed.status_code == 400 and "ERASE" in unconfirmed.text
    erased = client.post(ann["path"] + "/erase", data={"csrf": csrf, "confirm": "erase"})
    assert erased.status_code == 200 and "erased" in erased.text
    assert _profile(cdp, "user_id", "ann") is None
    assert client.get(ann["path"]).status_code == 404
    with cdp.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(preference_links)).scalar_one() == 0
    # suppressed: she is not collected again
    again = {"userId": "ann", "traits": {"email": "ann@example.com"}}
    assert client.post("/v1/identify", json=again, headers=basic(write_key)).status_code == 200
    time.sleep(0.3)
    assert _profile(cdp, "user_id", "ann") is None


def test_cli_saves_surveys_and_makes_links(
    env_for: dict[str, str], client: TestClient, tmp_path: Path, ann: Any
) -> None:
    definition = tmp_path / "survey.json"
    definition.write_bytes(orjson.dumps(SURVEY))
    run = CliRunner()
    saved = run.invoke(main, ["surveys", "save", "--file", str(definition)], env=env_for)
    assert saved.exit_code == 0 and "created survey style-quiz" in saved.output, saved.output
    listed = run.invoke(main, ["surveys", "list"], env=env_for)
    assert "style-quiz" in listed.output and "enabled" in listed.output and "4 question(s)" in listed.output
    assert run.invoke(main, ["surveys", "disable", "style-quiz"], env=env_for).exit_code == 0
    assert (
        run.invoke(main, ["surveys", "show", "style-quiz"], env=env_for).output.count('"enabled": false') == 1
    )
    definition.write_bytes(orjson.dumps({**SURVEY, "questions": []}))
    broken = run.invoke(main, ["surveys", "save", "--file", str(definition)], env=env_for)
    assert broken.exit_code == 1 and "questions: must be a list of 1 to 50 questions" in broken.output

    no_base = run.invoke(main, ["preferences", "link", "email:ann@example.com"], env=env_for)
    assert no_base.exit_code == 2 and "--base-url" in no_base.output
    made = run.invoke(
        main,
        ["preferences", "link", "email:ann@example.com", "--base-url", "https://cdp.shop.example/"],
        env=env_for,
    )
    assert made.exit_code == 0, made.output
    url = made.stdout.strip()
    assert url.startswith("https://cdp.shop.example/preferences/")
    assert client.get(urlsplit(url).path).status_code == 200
    unknown = run.invoke(
        main, ["preferences", "link", "email:zed@example.com", "--base-url", "http://x"], env=env_for
    )
    assert unknown.exit_code == 1 and "no profile" in unknown.output
