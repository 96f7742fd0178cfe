"""Reach before export: members, with the identifier the channel needs, consented, rows — counted
in one query (segments/reach.py), the same over the API, the CLI and as the export's header."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient

from opencdp.cli import main
from opencdp.segments import reach, store
from opencdp.store.schema import identities, profiles, segment_memberships
from opencdp.system import OpenCDP
from tests.identity_helpers import log_messages, process

#: (e-mail?, phone?, consent) per customer; all in DE, so the segment "de" holds all six.
CUSTOMERS: list[tuple[bool, bool, dict[str, bool]]] = [
    (True, True, {"email_marketing": True, "sms": True}),
    (True, False, {"email_marketing": True}),
    (True, False, {"email_marketing": False}),
    (False, True, {"email_marketing": True, "sms": False}),
    (False, False, {}),
    (True, True, {"sms": True}),
]


def _shop(cdp: OpenCDP) -> None:
    messages: list[dict[str, Any]] = []
    for n, (email, phone, consent) in enumerate(CUSTOMERS):
        traits: dict[str, Any] = {"country": "DE"}
        if email:
            traits["email"] = f"c{n}@example.com"
        if phone:
            traits["phone"] = f"+4915123456{n:02d}"
        message: dict[str, Any] = {
            "type": "identify",
            "userId": f"c{n}",
            "timestamp": "2026-05-01T10:00:00Z",
            "traits": traits,
        }
        if consent:
            message["context"] = {"consent": {"purposes": consent}}
        messages.append(message)
    log_messages(cdp.engine, messages)
    process(cdp.engine)
    store.save(cdp.engine, "de", {"trait": "country", "op": "eq", "value": "DE"})
    store.save(cdp.engine, "nobody", {"trait": "country", "op": "eq", "value": "XX"})


def _oracle(engine: sa.Engine, segment: str, purpose: str, identifier: str | None) -> dict[str, int]:
    """The same counts, member by member in Python."""
    with engine.connect() as conn:
        seg_id = store.get(engine, segment).id
        ids = {
            r[0]
            for r in conn.execute(
                sa.select(segment_memberships.c.profile_id).where(
                    segment_memberships.c.segment_id == seg_id, segment_memberships.c.exited_at.is_(None)
                )
            )
        }
        consent = dict(conn.execute(sa.select(profiles.c.id, profiles.c.consent)).all())
        types: dict[str, set[str]] = {}
        for pid, kind in conn.execute(sa.select(identities.c.profile_id, identities.c.type)):
            types.setdefault(pid, set()).add(kind)
    has = {p for p in ids if identifier is None or identifier in types.get(p, set())}
    agreed = {p for p in ids if (consent.get(p) or {}).get(purpose) is True}
    return {
        "members": len(ids),
        "with_identifier": len(has),
        "consented": len(agreed),
        "rows": len(has & agreed),
    }


@pytest.mark.parametrize(
    ("purpose", "channel", "expected"),
    [
        ("email_marketing", None, (6, 4, 3, 2)),  # channel guessed: e-mail
        ("email_marketing", "any", (6, 6, 3, 3)),
        ("sms", None, (6, 3, 2, 2)),  # guessed: sms, needs a phone number
        ("email_marketing", "sms", (6, 3, 3, 2)),
        ("advertising", None, (6, 6, 0, 0)),
    ],
)
def test_reach_counts_like_the_members_one_by_one(
    cdp: OpenCDP, purpose: str, channel: str | None, expected: tuple[int, int, int, int]
) -> None:
    _shop(cdp)
    found = reach.reach(cdp.engine, "de", purpose, channel)
    counts = {k: getattr(found, k) for k in ("members", "with_identifier", "consented", "rows")}
    assert counts == _oracle(cdp.engine, "de", purpose, found.identifier)
    assert tuple(counts.values()) == expected


def test_summary_and_why_an_export_is_empty() -> None:
    def of(members: int, with_id: int, consented: int, rows: int, identifier: str | None = "email") -> Any:
        channel = {"email": "email", "phone": "sms", None: "any"}[identifier]
        return reach.Reach("vip", "email_marketing", channel, identifier, members, with_id, consented, rows)

    found = of(254, 241, 198, 198)
    assert reach.summary(found, lambda n: f"{n:,}") == (
        "254 members · 241 with an e-mail address · 198 consented to email_marketing → 198 rows"
    )
    assert reach.empty_reason(found) is None
    assert reach.summary(of(3, 3, 1, 1, None)) == "3 members · 1 consented to email_marketing → 1 row"
    assert reach.empty_reason(of(0, 0, 0, 0)) == "Segment 'vip' has no members at the moment."
    assert reach.empty_reason(of(254, 0, 12, 0)) == "None of 254 members has an e-mail address."
    assert reach.empty_reason(of(254, 241, 0, 0)) == "0 of 254 members consented to email_marketing."
    assert reach.empty_reason(of(254, 241, 13, 0)) == (
        "13 of 254 members consented to email_marketing, but none of them has an e-mail address; "
        "the 241 members with an e-mail address did not consent."
    )
    assert [reach.channel_for(p) for p in ("email_marketing", "newsletter", "sms", "analytics")] == [
        "email",
        "email",
        "sms",
        "any",
    ]


def test_reach_and_export_over_the_api(client: TestClient, cdp: OpenCDP, admin_key: str) -> None:
    _shop(cdp)
    auth = {"Authorization": f"Bearer {admin_key}"}
    got = client.get("/api/segments/de/reach", params={"purpose": "email_marketing"}, headers=auth)
    assert got.status_code == 200
    assert got.json() == {
        "segment": "de",
        "purpose": "email_marketing",
        "channel": "email",
        "identifier": "email",
        "members": 6,
        "with_identifier": 4,
        "consented": 3,
        "rows": 2,
        "summary": "6 members · 4 with an e-mail address · 3 consented to email_marketing → 2 rows",
        "empty_reason": None,
    }
    none = client.get("/api/segments/de/reach", params={"purpose": "advertising"}, headers=auth).json()
    assert none["rows"] == 0 and none["empty_reason"] == "0 of 6 members consented to advertising."

    bad_channel = client.get(
        "/api/segments/de/reach", params={"purpose": "sms", "channel": "fax"}, headers=auth
    )
    assert bad_channel.status_code in (400, 422) and "channel" in bad_channel.text
    unknown = client.get("/api/segments/de/reach", params={"purpose": "telepathy"}, headers=auth)
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["field"] == "purpose"
    missing = client.get("/api/segments/de/reach", headers=auth)
    assert missing.status_code in (400, 422) and "purpose" in missing.text
    assert client.get("/api/segments/nope/reach", params={"purpose": "sms"}, headers=auth).status_code == 404
    assert client.get("/api/segments/de/reach", params={"purpose": "sms"}).status_code == 401

    exported = client.get(
        "/api/segments/de/export",
        params={"purpose": "email_marketing", "channel": "email", "traits": "email"},
        headers=auth,
    )
    assert exported.status_code == 200
    assert exported.headers["x-opencdp-reach"] == "members=6, with_identifier=4, consented=3, rows=2"
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert sorted(r["email"] for r in rows) == ["c0@example.com", "c1@example.com"]
    guessed = client.get("/api/segments/de/export", params={"purpose": "email_marketing"}, headers=auth)
    assert guessed.headers["x-opencdp-reach"] == exported.headers["x-opencdp-reach"]  # e-mail, guessed
    everyone = client.get(
        "/api/segments/de/export", params={"purpose": "email_marketing", "channel": "any"}, headers=auth
    )
    assert len(list(csv.DictReader(io.StringIO(everyone.text)))) == 3  # with c3, who has no e-mail

    empty = client.get("/api/segments/de/export", params={"purpose": "advertising"}, headers=auth)
    assert empty.status_code == 200 and empty.text.count("\n") == 1  # the header only
    assert empty.headers["x-opencdp-empty-reason"] == "0 of 6 members consented to advertising."
    refused = client.get(
        "/api/segments/de/export", params={"purpose": "advertising", "if_empty": "error"}, headers=auth
    )
    assert refused.status_code == 409
    assert refused.json()["error"] == "nothing_to_export"
    assert refused.json()["message"] == "0 of 6 members consented to advertising."
    nobody = client.get(
        "/api/segments/nobody/export", params={"purpose": "sms", "if_empty": "error"}, headers=auth
    )
    assert nobody.status_code == 409 and "has no members" in nobody.json()["message"]


def test_reach_from_the_command_line(cdp: OpenCDP, env_for: dict[str, str]) -> None:
    _shop(cdp)
    runner = CliRunner()
    text = runner.invoke(main, ["segments", "reach", "de", "--purpose", "email_marketing"], env=env_for)
    assert text.exit_code == 0, text.output
    assert (
        text.stdout.strip()
        == "6 members · 4 with an e-mail address · 3 consented to email_marketing → 2 rows"
    )
    as_json = runner.invoke(
        main, ["segments", "reach", "de", "--purpose", "sms", "--channel", "any", "--json"], env=env_for
    )
    assert as_json.exit_code == 0, as_json.output
    found = orjson.loads(as_json.stdout)
    assert (found["members"], found["with_identifier"], found["consented"], found["rows"]) == (6, 6, 2, 2)
    assert found["channel"] == "any" and found["identifier"] is None
    empty = runner.invoke(main, ["segments", "reach", "de", "--purpose", "advertising"], env=env_for)
    assert empty.exit_code == 0 and "An export would be empty: 0 of 6 members" in empty.stderr
    unknown = runner.invoke(main, ["segments", "reach", "de", "--purpose", "telepathy"], env=env_for)
    assert unknown.exit_code == 1 and "unknown purpose 'telepathy'" in unknown.stderr
    bad = runner.invoke(
        main, ["segments", "reach", "de", "--purpose", "sms", "--channel", "fax"], env=env_for
    )
    assert bad.exit_code == 2 and "--channel" in bad.stderr
    missing = runner.invoke(main, ["segments", "reach", "nope", "--purpose", "sms"], env=env_for)
    assert missing.exit_code == 1 and "no segment named" in missing.stderr
