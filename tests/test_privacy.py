"""Consent, data subject requests, suppression and retention, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.privacy.retention import apply_retention, set_retention
from opencdp.segments import store
from opencdp.store.schema import audit_log, events, metadata, profiles
from opencdp.system import OpenCDP
from tests.identity_helpers import log_messages, process, profile_of


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def wait_until(check: Any, seconds: float = 5.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "not processed in time"
        time.sleep(0.02)


def export_emails(client: TestClient, auth: dict[str, str], segment: str, purpose: str) -> set[str]:
    response = client.get(
        f"/api/segments/{segment}/export", params={"traits": "email", "purpose": purpose}, headers=auth
    )
    assert response.status_code == 200, response.text
    lines = response.text.strip().splitlines()[1:]
    return {line.split(",")[3] for line in lines}


def test_withdrawn_consent_applies_to_the_next_export_in_real_time(
    client: TestClient, cdp: OpenCDP, write_key: str, admin_key: str
) -> None:
    auth = {"Authorization": f"Bearer {admin_key}"}
    store.save(cdp.engine, "everyone", {"trait": "email", "op": "exists"})
    batch = {
        "batch": [
            {
                "type": "identify",
                "userId": "yes",
                "traits": {"email": "yes@example.com"},
                "context": {
                    "consent": {"categoryPreferences": {"Email Marketing": True}, "version": "2026-01"}
                },
            },
            {"type": "identify", "userId": "silent", "traits": {"email": "silent@example.com"}},
            {
                "type": "identify",
                "userId": "no",
                "traits": {"email": "no@example.com"},
                "context": {
                    "consent": {"purposes": {"email_marketing": {"granted": False, "version": "2026-01"}}}
                },
            },
        ]
    }
    assert client.post("/v1/batch", json=batch, headers=basic(write_key)).status_code == 200
    wait_until(lambda: export_emails(client, auth, "everyone", "email_marketing") == {"yes@example.com"})
    assert export_emails(client, auth, "everyone", "sms") == set()  # opt-in: nobody agreed to SMS

    withdraw = {
        "type": "track",
        "userId": "yes",
        "event": "Preferences Saved",
        "context": {"consent": {"purposes": {"email_marketing": False}}},
    }
    assert client.post("/v1/track", json=withdraw, headers=basic(write_key)).status_code == 200
    wait_until(lambda: export_emails(client, auth, "everyone", "email_marketing") == set())

    # the admin API records consent as an event too, with its history
    pid = profile_of(cdp.engine, "user_id", "silent")
    given = client.post(
        f"/api/profiles/{pid}/consent",
        json={"purpose": "email_marketing", "granted": True, "version": "2026-02"},
        headers=auth,
    )
    assert given.status_code == 202
    wait_until(lambda: export_emails(client, auth, "everyone", "email_marketing") == {"silent@example.com"})
    history = client.post(
        "/api/privacy/export", json={"type": "user_id", "value": "yes"}, headers=auth
    ).json()
    assert [(c["purpose"], c["granted"]) for c in history["consent_history"]] == [
        ("email_marketing", True),
        ("email_marketing", False),
    ]
    assert history["consent"]["email_marketing"]["granted"] is False
    bad = client.post(
        f"/api/profiles/{pid}/consent", json={"purpose": "mind_reading", "granted": True}, headers=auth
    )
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "purpose"


def _person_and_neighbour(cdp: OpenCDP) -> None:
    log_messages(
        cdp.engine,
        [
            {
                "type": "page",
                "anonymousId": "device-zq81",
                "name": "Home",
                "timestamp": "2026-05-01T09:00:00Z",
            },
            {
                "type": "identify",
                "anonymousId": "device-zq81",
                "userId": "user-zq81",
                "timestamp": "2026-05-01T10:00:00Z",
                "traits": {
                    "email": "Zebulon.Quark@example.org",
                    "first_name": "Zebulon",
                    "city": "Quarkenbrück",
                    "phone": "+49 151 99887766",
                },
                "context": {"consent": {"purposes": {"email_marketing": True}}},
            },
            {
                "type": "track",
                "userId": "user-zq81",
                "event": "Order Completed",
                "timestamp": "2026-05-02T10:00:00Z",
                "properties": {"revenue": 99, "note": "deliver to Zebulon.Quark@example.org"},
            },
            # the family computer: the neighbour logs in on the same device (a refused merge)
            {
                "type": "identify",
                "anonymousId": "device-zq81",
                "userId": "neighbour",
                "timestamp": "2026-05-03T10:00:00Z",
                "traits": {"email": "neighbour@example.net", "first_name": "Nina"},
            },
            {
                "type": "track",
                "userId": "neighbour",
                "event": "Order Completed",
                "timestamp": "2026-05-04T10:00:00Z",
                "properties": {"revenue": 5},
            },
        ],
    )
    process(cdp.engine)


def _rejection_and_candidate(cdp: OpenCDP) -> None:
    """An operator's rejected pair and a matching job's candidate that name the person."""
    from datetime import UTC, datetime

    from opencdp.store.schema import identity_rejections, match_candidates

    now = datetime.now(UTC)
    pair = {
        "left_type": "user_id",
        "left_value": "neighbour",
        "right_type": "user_id",
        "right_value": "user-zq81",
    }
    with cdp.engine.begin() as conn:
        conn.execute(identity_rejections.insert().values(**pair, reason="two people", created_at=now))
        conn.execute(
            match_candidates.insert().values(
                model="people",
                left_type="email",
                left_value="neighbour@example.net",
                right_type="email",
                right_value="zebulon.quark@example.org",
                probability=0.9,
                match_weight=3.0,
                comparisons=[],
                explanation="name similar",
                status="pending",
                scored_at=now,
            )
        )


def _whole_database(cdp: OpenCDP) -> str:
    with cdp.engine.connect() as conn:
        return "\n".join(
            str(row) for table in metadata.sorted_tables for row in conn.execute(sa.select(table))
        ).lower()


def test_access_request_holds_everything(client: TestClient, cdp: OpenCDP, admin_key: str) -> None:
    _person_and_neighbour(cdp)
    store.save(cdp.engine, "buyers", {"event": "Order Completed"})
    data = client.post(
        "/api/privacy/export",
        json={"type": "email", "value": "zebulon.quark@example.org"},
        headers={"Authorization": f"Bearer {admin_key}"},
    )
    assert data.status_code == 200 and "attachment" in data.headers["content-disposition"]
    body = data.json()
    assert {i["value"] for i in body["profile"]["identifiers"]} >= {
        "user-zq81",
        "device-zq81",
        "zebulon.quark@example.org",
        "+4915199887766",
    }
    assert body["profile"]["traits"]["city"]["value"] == "Quarkenbrück"
    assert {e["type"] for e in body["events"]} == {"page", "identify", "track"}
    assert [m["segment"] for m in body["segment_memberships"]] == ["buyers"]
    assert body["merge_history"]["conflicts"]  # the refused merge with the neighbour
    assert body["consent"]["email_marketing"]["granted"] is True


def test_erasure_leaves_no_trace_and_suppresses_new_events(
    client: TestClient, cdp: OpenCDP, write_key: str, admin_key: str
) -> None:
    _person_and_neighbour(cdp)
    store.save(cdp.engine, "buyers", {"event": "Order Completed"})
    _rejection_and_candidate(cdp)
    before = _whole_database(cdp)
    secrets_of_person = [
        "zebulon.quark@example.org",
        "user-zq81",
        "device-zq81",
        "quarkenbrück",
        "zebulon",
        "4915199887766",
    ]
    assert all(s in before for s in secrets_of_person)
    erased = client.post(
        "/api/privacy/erase",
        json={"type": "user_id", "value": "user-zq81"},
        headers={"Authorization": f"Bearer {admin_key}"},
    )
    assert erased.status_code == 200, erased.text
    assert erased.json()["events_deleted"] == 3 and erased.json()["events_scrubbed"] == 1
    after = _whole_database(cdp)
    for value in secrets_of_person:
        assert value not in after, value
    # the neighbour is untouched, minus the shared device
    neighbour = profile_of(cdp.engine, "user_id", "neighbour")
    with cdp.engine.connect() as conn:
        traits = conn.execute(sa.select(profiles.c.traits).where(profiles.c.id == neighbour)).scalar_one()
        audit = conn.execute(sa.select(audit_log).where(audit_log.c.action == "privacy.erase")).one()
    assert traits["email"] == "neighbour@example.net"
    assert "zebulon" not in str(audit).lower()
    # new events for the erased person are dropped at the collector (the client still sees success)
    again = {"type": "identify", "userId": "user-zq81", "traits": {"email": "zebulon.quark@example.org"}}
    assert client.post("/v1/identify", json=again, headers=basic(write_key)).status_code == 200
    by_email = {
        "batch": [
            {
                "type": "track",
                "anonymousId": "fresh",
                "event": "E",
                "context": {"traits": {"email": "ZEBULON.QUARK@example.org"}},
            },
            {"type": "track", "userId": "someone-else", "event": "E"},
        ]
    }
    assert client.post("/v1/batch", json=by_email, headers=basic(write_key)).status_code == 200
    with cdp.engine.connect() as conn:
        stored = [r[0] for r in conn.execute(sa.select(events.c.user_id))]
    assert "user-zq81" not in stored and "someone-else" in stored
    assert "zebulon" not in _whole_database(cdp)
    missing = client.post(
        "/api/privacy/erase",
        json={"type": "user_id", "value": "user-zq81"},
        headers={"Authorization": f"Bearer {admin_key}"},
    )
    assert missing.status_code == 404


def test_retention_deletes_old_raw_events_but_keeps_profiles(cdp: OpenCDP) -> None:
    now = datetime.now(UTC)
    log_messages(
        cdp.engine,
        [
            {
                "type": "identify",
                "userId": "old",
                "traits": {"plan": "gold"},
                "timestamp": (now - timedelta(days=100)).isoformat(),
            },
            {
                "type": "track",
                "userId": "old",
                "event": "Recent",
                "timestamp": (now - timedelta(days=2)).isoformat(),
            },
        ],
    )
    process(cdp.engine)
    set_retention(cdp.engine, "test", 30)
    assert apply_retention(cdp.engine) == {"test": 1}
    with cdp.engine.connect() as conn:
        assert [r[0] for r in conn.execute(sa.select(events.c.event))] == ["Recent"]
        traits = conn.execute(
            sa.select(profiles.c.traits).where(profiles.c.id == profile_of(cdp.engine, "user_id", "old"))
        ).scalar_one()
    assert traits == {"plan": "gold"}


def test_privacy_commands(cdp: OpenCDP, env_for: dict[str, str], tmp_path: Any) -> None:
    _person_and_neighbour(cdp)
    cdp.stop()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "opencdp", *args], env=env_for, capture_output=True, text=True, timeout=120
        )

    out = tmp_path / "person.json"
    exported = run("privacy", "export", "zebulon.quark@example.org", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert orjson.loads(out.read_bytes())["profile"]["traits"]["first_name"]["value"] == "Zebulon"
    assert run("privacy", "export", "nonsense").returncode == 2
    assert "email_marketing" in run("privacy", "purposes").stdout
    erased = run("privacy", "erase", "user_id:user-zq81", "--yes")
    assert erased.returncode == 0 and "3 events deleted" in erased.stdout
    assert "no profile" in run("privacy", "export", "user_id:user-zq81").stderr
    assert run("privacy", "retention", "test", "30").returncode == 0
    assert "expired events deleted" in run("privacy", "apply-retention").stdout


def test_consent_from_an_import(cdp: OpenCDP, tmp_path: Any) -> None:
    from opencdp.imports.mapping import ImportMapping
    from opencdp.imports.runner import run_import

    path = tmp_path / "crm.csv"
    path.write_text("crm_id,email,optin\n1,a@example.com,yes\n2,b@example.com,no\n", encoding="utf-8")
    mapping = ImportMapping.model_validate(
        {
            "kind": "contacts",
            "key": ["crm_id"],
            "consent_version": "crm-1",
            "columns": {
                "crm_id": {"identifier": "crm_id"},
                "email": {"identifier": "email", "trait": True},
                "optin": {"type": "boolean", "consent": "email_marketing"},
            },
        }
    )
    run_import(cdp.engine, path, "crm", mapping, tmp_path / "rejects.csv", progress=False)
    with cdp.engine.connect() as conn:
        consent = {
            r.traits["email"]: r.consent
            for r in conn.execute(sa.select(profiles.c.traits, profiles.c.consent))
        }
    assert consent == {
        "a@example.com": {"email_marketing": True},
        "b@example.com": {"email_marketing": False},
    }
