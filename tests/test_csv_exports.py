"""Every cell of every CSV export is safe to open in a spreadsheet (both engines).

Values are planted the way an attacker would: through the public collection API with a write key.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from fastapi.testclient import TestClient

from opencdp import csvsafe
from opencdp.access.keys import create_source
from opencdp.system import OpenCDP
from opencdp.ui import reports, users
from tests.identity_helpers import process
from tests.test_collect_api import basic
from tests.ui.conftest import EMAILS, PASSWORD, csrf_token, sign_in

PLANTED = ['=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(1)", "\t=1+1", "\r=1+1", "-2+3+cmd|' /C calc'!A0"]


def _cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


def _assert_safe(text: str) -> None:
    assert text.count("\n") > 1, text  # a header and some rows
    unsafe = [cell for cell in _cells(text) if cell.startswith(csvsafe.FORMULA_START)]
    assert not unsafe, unsafe


def _plant(client: TestClient, write_key: str) -> None:
    batch = [
        {
            "type": "identify",
            "userId": value,
            "anonymousId": value + "-anon",
            "traits": {"email": value + "@example.com", "phone": value, "name": value, "plan": "gold"},
            "context": {"consent": {"purposes": {"email_marketing": True}}},
        }
        for value in PLANTED
    ] + [
        {
            "type": "identify",
            "anonymousId": value,
            "traits": {"email": value, "plan": "gold"},
            "context": {"consent": {"purposes": {"email_marketing": True}}},
        }
        for value in PLANTED
    ]
    response = client.post("/v1/batch", json={"batch": batch}, headers=basic(write_key))
    assert response.status_code == 200, response.text


def test_segment_and_audit_exports_neutralise_identifiers(
    client: TestClient, cdp: OpenCDP, write_key: str, admin_key: str
) -> None:
    _plant(client, write_key)
    process(cdp.engine)
    auth = {"Authorization": f"Bearer {admin_key}"}
    criteria = {"trait": "plan", "op": "eq", "value": "gold"}
    created = client.post("/api/segments", json={"name": "-gold", "criteria": criteria}, headers=auth)
    assert created.status_code in (200, 201), created.text
    exported = client.get(
        "/api/segments/-gold/export",
        params={"traits": "name,email,-2", "purpose": "email_marketing"},
        headers=auth,
    )
    assert exported.status_code == 200, exported.text
    _assert_safe(exported.text)
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert '\'=HYPERLINK("http://x","y")' in {r["user_id"] for r in rows}
    assert "'-2" in {r["user_id"] for r in rows}  # text that looks like a number is still text
    assert "'-2" in exported.text.splitlines()[0]  # header cells too

    audit = client.get("/api/audit/export", headers=auth)
    assert audit.status_code == 200
    _assert_safe(audit.text)
    assert "'-gold" in _cells(audit.text)


@pytest.fixture
def signed_in(client: TestClient, cdp: OpenCDP) -> TestClient:
    users.create_user(cdp.engine, EMAILS["admin"], PASSWORD, "admin")
    assert sign_in(client, EMAILS["admin"]).status_code == 303
    return client


def test_dashboard_exports_neutralise_every_cell(signed_in: TestClient, cdp: OpenCDP) -> None:
    client = signed_in
    _plant(client, create_source(cdp.engine, "@source")[1])
    process(cdp.engine)
    gold = {"trait": "plan", "op": "eq", "value": "gold"}
    for name in ("-2", "=1+1"):
        saved = client.post(
            "/segments",
            data={"name": name, "criteria": json.dumps(gold), "csrf_token": csrf_token(client)},
            follow_redirects=False,
        )
        assert saved.status_code == 303, saved.text
    segment_path = saved.headers["location"].split("?")[0]
    export = client.get(
        f"{segment_path}/export.csv",
        params={"purpose": "email_marketing", "channel": "any", "traits": ["name", "phone"]},
    )
    assert export.status_code == 200, export.text
    _assert_safe(export.text)
    assert "'@SUM(1)" in _cells(export.text)
    for kind in sorted(reports.KINDS):
        report = client.get("/reports/export.csv", params={"kind": kind, "segments": ["-2", "=1+1"]})
        assert report.status_code == 200, report.text
        _assert_safe(report.text)
    assert "'@source" in _cells(client.get("/reports/export.csv", params={"kind": "events_by_source"}).text)


def test_cells_keep_numbers_and_mark_formulas() -> None:
    assert csvsafe.line([-2, 1.5, True, None, "-2", "a=b", {"k": "=x"}]) == (
        '-2,1.5,true,,\'-2,a=b,"{""k"":""=x""}"\r\n'
    )
