"""The segment builder's server side: catalog, live preview, save, duplicate, delete, CSV export."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.privacy.consent import define_purpose
from opencdp.segments import queries, reach, store
from opencdp.store.schema import identities, profiles, segment_memberships, segments
from opencdp.system import OpenCDP
from tests.ui.conftest import csrf_token
from tests.ui.demo_data import XSS_EVENT

NESTED = {
    "and": [
        {"trait": "country", "op": "eq", "value": "DE"},
        {
            "or": [
                {"event": "Order Completed", "within_days": 60},
                {"computed": "email_opens_30_days", "op": "gte", "value": 1},
            ]
        },
    ]
}


def _save(client: TestClient, name: str, criteria: Any) -> int:
    response = client.post(
        "/segments",
        data={
            "name": name,
            "description": "for the test",
            "criteria": json.dumps(criteria),
            "csrf_token": csrf_token(client),
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    found = re.match(r"/segments/(\d+)\?done=saved", response.headers["location"])
    assert found
    return int(found.group(1))


def test_builder_offers_the_names_in_the_database(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    as_role("marketer")
    _save(client, "Germany", {"trait": "country", "op": "eq", "value": "DE"})
    page = client.get("/segments/new")
    found = re.search(r'<script type="application/json" id="builder-data">(.*?)</script>', page.text, re.S)
    assert found
    data = json.loads(found.group(1))
    catalog = data["catalog"]
    traits = {t["name"]: t for t in catalog["traits"]}
    assert {"country", "email", "first_name", "newsletter"} <= set(traits)
    assert traits["newsletter"]["kind"] == "boolean" and "DE" in traits["country"]["examples"]
    assert {"order_count", "total_revenue", "rfm_segment"} <= {c["name"] for c in catalog["computed"]}
    events = {e["name"]: e["type"] for e in catalog["events"]}
    assert events["Order Completed"] == "track" and events["Shoes"] in ("page", "screen")
    assert set(events) == {
        "Order Completed",
        "Product Viewed",
        "Signed Up",
        "Checkout Started",
        "Email Delivered",
        "Email Opened",
        "Email Link Clicked",
        "Segment Consent Preference Updated",
        "Form Field Focused",
        "Form Field Changed",
        "Form Field Errored",
        "Form Submitted",
        "Form Abandoned",
        "Product Reviewed",
        "Experience Viewed",  # the demo's planted experiment
        "Shoes",
        "Jackets",
        "Accessories",
        "Outdoor",
        "Kids",
        XSS_EVENT,
    }
    assert {"revenue", "category"} <= {p["name"] for p in catalog["properties"]["Order Completed"]}
    assert catalog["segments"] == ["Germany"]
    assert data["criteria"] == {"and": []}


def test_live_preview_counts_like_the_engine(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    as_role("analyst")
    token = csrf_token(client)
    result = client.post(
        "/ui/api/segments/preview", json={"criteria": NESTED}, headers={"X-CSRF-Token": token}
    )
    assert result.status_code == 200
    body = result.json()
    expected = queries.preview(shop.engine, NESTED, 0)["count"]
    assert body["count"] == expected > 0 and body["problems"] == []
    assert 0 < len(body["sample"]) <= 8 and {"id", "label", "email", "country"} <= set(body["sample"][0])
    bad = client.post(
        "/ui/api/segments/preview",
        json={"criteria": {"and": [{"trait": "age", "op": "gt", "value": "old"}]}},
        headers={"X-CSRF-Token": token},
    ).json()
    assert bad["count"] is None
    assert bad["problems"] == ["Value: 'gt' compares numbers; give a number as value"]
    assert bad["issues"] == [{"path": "and.0.value", "field": "Value", "message": bad["problems"][0]}]
    times = client.post(
        "/ui/api/segments/preview",
        json={
            "criteria": {"or": [{"not": {"event": "Order Completed", "count": {"op": "gte", "value": -1}}}]}
        },
        headers={"X-CSRF-Token": token},
    ).json()
    assert times["issues"] == [
        {
            "path": "or.0.not.count.value",
            "field": "Number of times",
            "message": "Number of times must be 0 or more",
        }
    ]
    empty = client.post(
        "/ui/api/segments/preview",
        json={"criteria": {"and": [{"event": "Order Completed", "between": ["2026-12-15", "2026-12-01"]}]}},
        headers={"X-CSRF-Token": token},
    ).json()
    assert empty["count"] is None and empty["issues"][0]["path"] == "and.0.between"
    assert empty["problems"][0].startswith("Dates: the range is empty: 2026-12-15 is after 2026-12-01")
    missing = client.post(
        "/ui/api/segments/preview", json={"criteria": {"segment": "nope"}}, headers={"X-CSRF-Token": token}
    ).json()
    assert missing["problems"] == ["There is no segment named 'nope'"]
    assert (
        client.post("/ui/api/segments/preview", json={}, headers={"X-CSRF-Token": token}).status_code == 400
    )


def test_save_duplicate_delete(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    as_role("marketer")
    segment_id = _save(client, "German customers", NESTED)
    page = client.get(f"/segments/{segment_id}?done=saved")
    assert "Segment saved." in page.text and "German customers" in page.text
    with shop.engine.connect() as conn:
        members = conn.execute(
            sa.select(sa.func.count())
            .select_from(segment_memberships)
            .where(segment_memberships.c.segment_id == segment_id, segment_memberships.c.exited_at.is_(None))
        ).scalar_one()
    assert members == queries.preview(shop.engine, NESTED, 0)["count"]
    assert f"{members:,} members saved" in page.text

    again = client.post(
        "/segments",
        data={"name": "German customers", "criteria": json.dumps(NESTED), "csrf_token": csrf_token(client)},
    )
    assert again.status_code == 400 and "already exists" in again.text
    invalid = client.post(
        "/segments",
        data={
            "name": "Broken",
            "criteria": '{"and": [{"event": "X", "count": {"op": "gte", "value": -1}}]}',
            "csrf_token": csrf_token(client),
        },
    )
    assert invalid.status_code == 400 and "Number of times must be 0 or more" in invalid.text
    assert "and.0.count.value" not in invalid.text
    assert "Broken" in invalid.text  # the form keeps what was typed

    changed = {"trait": "country", "op": "in", "value": ["DE", "AT"]}
    update = client.post(
        f"/segments/{segment_id}",
        data={"description": "DACH", "criteria": json.dumps(changed), "csrf_token": csrf_token(client)},
        follow_redirects=False,
    )
    assert update.status_code == 303
    with shop.engine.connect() as conn:
        row = conn.execute(sa.select(segments).where(segments.c.id == segment_id)).one()
    assert row.criteria == changed and row.description == "DACH" and row.name == "German customers"

    copy = client.post(
        f"/segments/{segment_id}/duplicate", data={"csrf_token": csrf_token(client)}, follow_redirects=False
    )
    assert copy.status_code == 303
    copy_id = int(copy.headers["location"].split("/")[2].split("?")[0])
    assert "German customers (copy)" in client.get(f"/segments/{copy_id}").text
    second = client.post(
        f"/segments/{segment_id}/duplicate", data={"csrf_token": csrf_token(client)}, follow_redirects=False
    )
    assert "German customers (copy 2)" in client.get(second.headers["location"]).text

    referrer = _save(client, "Refers", {"segment": "German customers"})
    refused = client.post(f"/segments/{segment_id}/delete", data={"csrf_token": csrf_token(client)})
    assert refused.status_code == 409 and "refers to" in refused.text
    for sid in (referrer, segment_id):
        gone = client.post(
            f"/segments/{sid}/delete", data={"csrf_token": csrf_token(client)}, follow_redirects=False
        )
        assert gone.status_code == 303 and gone.headers["location"] == "/segments?done=deleted"
    assert client.get(f"/segments/{segment_id}").status_code == 404
    listing = client.get("/segments").text
    assert "German customers (copy)" in listing and f'href="/segments/{segment_id}"' not in listing


def test_export_only_consenting_members(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    as_role("marketer")
    segment_id = _save(client, "Known", {"trait": "email", "op": "exists"})
    without = client.get(f"/segments/{segment_id}/export.csv")
    assert without.status_code == 400 and "purpose" in without.text
    unknown = client.get(f"/segments/{segment_id}/export.csv", params={"purpose": "telepathy"})
    assert unknown.status_code == 400 and "unknown purpose" in unknown.text
    response = client.get(
        f"/segments/{segment_id}/export.csv",
        params=[
            ("purpose", "email_marketing"),
            ("traits", "email"),
            ("traits", "country"),
            ("computed", "order_count"),
        ],
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="Known.csv"'
    header, *lines = list(csv.reader(io.StringIO(response.text)))
    assert header == [
        "profile_id",
        "entered_at",
        "user_id",
        "email",
        "phone",
        "email",
        "country",
        "computed.order_count",
    ]
    rows = [dict(zip(header, line, strict=True)) for line in lines]
    with shop.engine.connect() as conn:
        consented = {
            r.id
            for r in conn.execute(
                sa.select(profiles.c.id, profiles.c.consent).where(profiles.c.merged_into.is_(None))
            )
            if (r.consent or {}).get("email_marketing") is True
        }
        members = {
            r[0]
            for r in conn.execute(
                sa.select(segment_memberships.c.profile_id).where(
                    segment_memberships.c.segment_id == segment_id, segment_memberships.c.exited_at.is_(None)
                )
            )
        }
        # an e-mail export needs an address to write to (a placeholder e-mail trait is no identifier)
        with_email = set(
            conn.execute(sa.select(identities.c.profile_id).where(identities.c.type == "email")).scalars()
        )
    assert {r["profile_id"] for r in rows} == members & consented & with_email
    assert 0 < len(rows) < len(members)  # some demo customers refused e-mail marketing


def test_failed_segments_are_shown_and_oversized_criteria_refused(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    from datetime import UTC, datetime

    from opencdp.process.schedule import refresh_all

    as_role("marketer")
    now = datetime.now(UTC)
    big = {"or": [{"trait": "n", "op": "eq", "value": i} for i in range(1000)]}
    with shop.engine.begin() as conn:  # stored around validation, as an older version could have
        conn.execute(
            segments.insert().values(name="big", description="", criteria=big, created_at=now, updated_at=now)
        )
        segment_id = conn.execute(sa.select(segments.c.id).where(segments.c.name == "big")).scalar_one()
    refresh_all(shop.engine)
    listing = client.get("/segments").text
    assert re.search(
        r'>big</a>\s*<span class="badge bad" title="[^"]*at most 200[^"]*">failed</span>', listing
    )
    page = client.get(f"/segments/{segment_id}").text
    assert "This segment failed to evaluate" in page and "at most 200" in page

    token = csrf_token(client)
    preview = client.post("/ui/api/segments/preview", json={"criteria": big}, headers={"X-CSRF-Token": token})
    assert preview.status_code == 200 and preview.json()["count"] is None
    assert "at most 200" in preview.json()["problems"][0]
    saved = client.post(
        "/segments",
        data={"name": "huge", "description": "", "criteria": json.dumps(big), "csrf_token": token},
        follow_redirects=False,
    )
    assert saved.status_code == 400 and "Not saved:" in saved.text and "at most 200" in saved.text


def test_export_says_its_reach_before_download_and_why_it_is_empty(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    as_role("analyst")  # read-only users export too
    store.save(shop.engine, "Known", {"trait": "email", "op": "exists"})  # analysts cannot save
    with shop.engine.connect() as conn:
        segment_id = conn.execute(sa.select(segments.c.id).where(segments.c.name == "Known")).scalar_one()
    found = reach.reach(shop.engine, "Known", "email_marketing", "email")
    assert 0 < found.rows < found.members

    page = client.get(f"/segments/{segment_id}", params={"purpose": "email_marketing"})
    assert page.status_code == 200
    expected = (
        f"{found.members} members · {found.with_identifier} with an e-mail address · "
        f"{found.consented} consented to email_marketing → {found.rows} rows"
    )
    assert expected in page.text
    assert "Choose a purpose to see" in client.get(f"/segments/{segment_id}").text

    define_purpose(shop.engine, "postal_mail", "Catalogues by post")  # nobody was asked yet
    live = client.get(f"/ui/api/segments/{segment_id}/reach", params={"purpose": "postal_mail"})
    assert live.status_code == 200
    assert live.json()["rows"] == 0 and live.json()["empty_reason"].endswith("consented to postal_mail.")
    unknown = client.get(f"/ui/api/segments/{segment_id}/reach", params={"purpose": "telepathy"})
    assert unknown.status_code == 400 and "unknown purpose" in unknown.json()["problem"]
    bad_channel = client.get(
        f"/ui/api/segments/{segment_id}/reach", params={"purpose": "sms", "channel": "fax"}
    )
    assert bad_channel.status_code == 400 and "unknown channel 'fax'" in bad_channel.json()["problem"]

    exported = client.get(
        f"/segments/{segment_id}/export.csv", params={"purpose": "email_marketing", "channel": "email"}
    )
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert exported.headers["x-opencdp-reach"] == found.header()
    assert len(list(csv.DictReader(io.StringIO(exported.text)))) == found.rows

    fax = client.get(f"/segments/{segment_id}/export.csv", params={"purpose": "sms", "channel": "fax"})
    assert fax.status_code == 400 and "unknown channel &#39;fax&#39;" in fax.text
    assert "Choose what the export is for." in fax.text
    empty = client.get(f"/segments/{segment_id}/export.csv", params={"purpose": "postal_mail"})
    assert empty.status_code == 409 and empty.headers["content-type"].startswith("text/html")
    assert "Nothing to export:" in empty.text
    assert "consented to postal_mail." in empty.text and 'value="postal_mail" title' in empty.text


def test_problems_are_put_in_words_with_the_field_they_concern() -> None:
    from opencdp.segments.language import CriteriaError, parse_criteria
    from opencdp.ui.criteria_words import problems_in_words, split_path

    assert split_path("and.0.not.or.1.count.value") == ("and.0.not.or.1", "count.value")
    assert split_path("where.0.value") == ("", "where.0.value")
    cases = {
        "and.0.within_days": (
            {"and": [{"event": "E", "within_days": 0}]},
            "Number of days must be 1 or more",
        ),
        "and.0.count.value": (
            {"and": [{"event": "E", "count": {"op": "gte", "value": "two"}}]},
            "Number of times must be a whole number",
        ),
        "and.0.where.0.value": (
            {"and": [{"event": "E", "where": [{"property": "p", "op": "in", "value": []}]}]},
            "Property filter value: 'in' needs a non-empty list of strings or numbers",
        ),
        "and.0.in_month": ({"and": [{"event": "E", "in_month": ""}]}, "Month: choose a month (YYYY-MM)"),
        "and.0.between.1": (
            {"and": [{"event": "E", "between": ["2026-12-01", "2026-13-01"]}]},
            "Last day: 2026-13-01 is not a day of the calendar",
        ),
        "and.0.last_occurred.value": (
            {"and": [{"event": "E", "last_occurred": {"op": "on", "value": "tomorrow"}}]},
            "When: 'tomorrow' is not a calendar date: write YYYY-MM-DD, e.g. 2026-12-01",
        ),
        "or.0.tz": (
            {"or": [{"trait": "t", "op": "on", "value": "2026-01-01", "tz": "Nowhere"}]},
            "Time zone: ",
        ),
    }
    for path, (document, words) in cases.items():
        try:
            parse_criteria(document)
        except CriteriaError as exc:
            issues = problems_in_words(exc)
        else:
            raise AssertionError(f"{document} was accepted")
        assert [i["path"] for i in issues] == [path]
        assert issues[0]["message"].startswith(words), issues[0]["message"]
