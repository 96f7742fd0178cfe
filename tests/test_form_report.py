"""The form report from `profile_events`, with exact numbers, on SQLite and PostgreSQL; and its API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.personalise.form_report import form_report, list_forms
from opencdp.store.schema import profile_events, segment_memberships, segments
from opencdp.system import OpenCDP

NOW = datetime.now(UTC).replace(microsecond=0)  # the API and pages report up to the real now
T0 = NOW - timedelta(days=2)

# (profile, seconds after T0, event, properties)
EVENTS: list[tuple[str, float, str, dict[str, Any]]] = [
    # A: both fields, one error on password, fixes it, submits
    ("pA", 0, "Form Field Focused", {"form_id": "signup", "field": "email"}),
    ("pA", 10, "Form Field Changed", {"form_id": "signup", "field": "email"}),
    ("pA", 12, "Form Field Focused", {"form_id": "signup", "field": "password"}),
    ("pA", 20, "Form Field Errored", {"form_id": "signup", "field": "password", "message": "Too short"}),
    ("pA", 25, "Form Field Focused", {"form_id": "signup", "field": "password"}),
    ("pA", 40, "Form Field Changed", {"form_id": "signup", "field": "password"}),
    ("pA", 45, "Form Submitted", {"form_id": "signup"}),
    ("pA", 50, "Form Field Focused", {"form_id": "newsletter", "field": "email"}),
    ("pA", 55, "Form Submitted", {"form_id": "newsletter"}),
    # B: fails password twice, leaves there
    ("pB", 0, "Form Field Focused", {"form_id": "signup", "field": "email"}),
    ("pB", 5, "Form Field Changed", {"form_id": "signup", "field": "email"}),
    ("pB", 8, "Form Field Focused", {"form_id": "signup", "field": "password"}),
    ("pB", 15, "Form Field Errored", {"form_id": "signup", "field": "password", "message": "Too short"}),
    ("pB", 30, "Form Field Errored", {"form_id": "signup", "field": "password", "message": "Needs a digit"}),
    ("pB", 60, "Form Abandoned", {"form_id": "signup", "field": "password"}),
    # C: looks at e-mail, leaves
    ("pC", 0, "Form Field Focused", {"form_id": "signup", "field": "email"}),
    ("pC", 100, "Form Abandoned", {"form_id": "signup", "field": "email"}),
    # D: outside the 30-day window
    ("pD", -40 * 86400, "Form Field Focused", {"form_id": "signup", "field": "email"}),
    # not a form event, and a form event without a form
    ("pA", 1, "Order Completed", {"form_id": "signup"}),
    ("pA", 2, "Form Field Focused", {"field": "email"}),
]


def _fill(engine: sa.Engine) -> None:
    rows = [
        {
            "event_id": i + 1,
            "profile_id": profile,
            "type": "track",
            "name": name,
            "ts": T0 + timedelta(seconds=seconds),
            "source_id": 1,
            "properties": props,
        }
        for i, (profile, seconds, name, props) in enumerate(EVENTS)
    ]
    with engine.begin() as conn:
        conn.execute(profile_events.insert(), rows)
        conn.execute(
            segments.insert(),
            [
                {
                    "id": 1,
                    "name": "pros",
                    "description": "",
                    "criteria": {},
                    "created_at": NOW,
                    "updated_at": NOW,
                },
            ],
        )
        conn.execute(
            segment_memberships.insert(),
            [
                {"segment_id": 1, "profile_id": "pA", "entered_at": T0, "exited_at": T0},  # left
                {"segment_id": 1, "profile_id": "pB", "entered_at": T0, "exited_at": None},
                {"segment_id": 1, "profile_id": "pC", "entered_at": T0, "exited_at": None},
            ],
        )


def _fields(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["field"]: f for f in report["fields"]}


def test_form_report_numbers(system: OpenCDP) -> None:
    _fill(system.engine)
    report = form_report(system.engine, "signup", days=30, now=NOW).as_json()
    assert (report["visitors"], report["submitted"], report["submits"], report["abandoned"]) == (3, 1, 1, 2)
    assert report["conversion"] == round(1 / 3, 4)
    assert [f["field"] for f in report["fields"]] == ["email", "password"]
    email, password = _fields(report)["email"], _fields(report)["password"]
    assert {k: email[k] for k in ("reached", "completed", "errored", "errors", "abandoned")} == {
        "reached": 3,
        "completed": 2,
        "errored": 0,
        "errors": 0,
        "abandoned": 1,
    }
    assert email["median_seconds"] == 10.0  # 10, 5, 100
    assert email["error_rate"] == 0.0
    assert {k: password[k] for k in ("reached", "completed", "errored", "errors", "abandoned")} == {
        "reached": 2,
        "completed": 1,
        "errored": 2,
        "errors": 3,
        "abandoned": 1,
    }
    assert password["error_rate"] == 1.0
    assert password["median_seconds"] == 8.0  # 8, 15, 7
    assert password["messages"] == [
        {"message": "Too short", "count": 2},
        {"message": "Needs a digit", "count": 1},
    ]
    assert report["errors"] == [
        {"field": "password", "message": "Too short", "count": 2},
        {"field": "password", "message": "Needs a digit", "count": 1},
    ]


def test_form_report_for_a_segment_and_a_shorter_window(system: OpenCDP) -> None:
    _fill(system.engine)
    report = form_report(system.engine, "signup", days=30, segment="pros", now=NOW).as_json()
    assert (report["visitors"], report["submitted"], report["abandoned"]) == (2, 0, 2)
    email, password = _fields(report)["email"], _fields(report)["password"]
    assert (email["reached"], email["completed"], email["median_seconds"]) == (2, 1, 52.5)
    assert (password["reached"], password["completed"], password["errored"], password["errors"]) == (
        1,
        0,
        1,
        2,
    )
    assert form_report(system.engine, "signup", days=1, now=NOW).visitors == 0
    assert form_report(system.engine, "signup", days=90, now=NOW).visitors == 4


def test_list_forms(system: OpenCDP) -> None:
    _fill(system.engine)
    forms = list_forms(system.engine, days=30, now=NOW)
    assert [(f["form_id"], f["visitors"], f["submitted"], f["abandoned"], f["errors"]) for f in forms] == [
        ("signup", 3, 1, 2, 3),
        ("newsletter", 1, 1, 0, 0),
    ]


def test_forms_api(client: TestClient, cdp: OpenCDP, admin_key: str) -> None:
    _fill(cdp.engine)
    auth = {"Authorization": f"Bearer {admin_key}"}
    assert client.get("/api/forms").status_code == 401
    listed = client.get("/api/forms?days=90", headers=auth)
    assert listed.status_code == 200
    assert {f["form_id"] for f in listed.json()} == {"signup", "newsletter"}
    one = client.get("/api/forms/signup", params={"days": 90, "segment": "pros"}, headers=auth)
    assert one.status_code == 200, one.text
    assert one.json()["visitors"] == 2 and one.json()["segment"] == "pros"
    assert client.get("/api/forms/signup?segment=nope", headers=auth).status_code == 404
    assert client.get("/api/forms/signup?days=0", headers=auth).status_code in (400, 422)
    assert client.get("/api/forms/unknown", headers=auth).json()["visitors"] == 0
