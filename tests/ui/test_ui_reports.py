"""Reports: each built-in view with its chart and CSV, saved reports, and the numbers behind them."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.segments import queries, store
from opencdp.store.dialect import json_number
from opencdp.store.schema import events, profile_events
from opencdp.system import OpenCDP
from opencdp.ui import reports
from opencdp.ui.sql import day_range
from tests.ui.conftest import csrf_token


def _segment(client: TestClient, name: str, criteria: object) -> None:
    response = client.post(
        "/segments",
        data={"name": name, "criteria": json.dumps(criteria), "csrf_token": csrf_token(client)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


@pytest.mark.parametrize("kind", sorted(reports.KINDS))
def test_each_view_renders_and_exports(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient], kind: str
) -> None:
    as_role("marketer")
    _segment(client, "Germany", {"trait": "country", "op": "eq", "value": "DE"})
    _segment(client, "Buyers", {"event": "Order Completed"})
    page = client.get("/reports/view", params={"kind": kind})
    assert page.status_code == 200
    assert "<svg" in page.text and reports.KINDS[kind].title in page.text
    export = client.get("/reports/export.csv", params={"kind": kind})
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    header, *rows = list(csv.reader(io.StringIO(export.text)))
    assert header[0] in ("day", "segment") and rows
    if kind in ("orders_by_segment", "conversion_by_segment"):
        assert [r[0] for r in rows] == ["Everyone", "Buyers", "Germany"]


def test_numbers_match_the_data(client: TestClient, shop: OpenCDP) -> None:
    now = datetime.now(UTC)
    start, days = day_range(30, now)
    with shop.engine.connect() as conn:
        total = conn.execute(
            sa.select(sa.func.count()).select_from(events).where(events.c.timestamp >= start)
        ).scalar_one()
        orders, revenue = conn.execute(
            sa.select(
                sa.func.count(), sa.func.sum(json_number(profile_events.c.properties, "revenue"))
            ).where(profile_events.c.name == "Order Completed", profile_events.c.ts >= day_range(90, now)[0])
        ).one()
    by_source = reports.run(
        shop.engine, "events_by_source", reports.parse_params("events_by_source", {}), now
    )
    assert len(by_source.rows) == 30 and sum(r[-1] for r in by_source.rows) == total
    assert [r[0] for r in by_source.rows] == days
    sales = reports.run(shop.engine, "orders_by_segment", reports.parse_params("orders_by_segment", {}), now)
    everyone = sales.rows[0]
    assert (
        everyone[0] == "Everyone"
        and everyone[3] == orders
        and everyone[4] == pytest.approx(revenue, abs=0.01)
    )


def test_segment_size_follows_entries_and_exits(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    as_role("admin")
    _segment(client, "Germany", {"trait": "country", "op": "eq", "value": "DE"})
    result = reports.run(shop.engine, "segment_size", reports.parse_params("segment_size", {"days": "7"}))
    assert result.columns == ["day", "Germany"]
    size = result.rows[-1][1]
    assert size > 0 and all(r[1] == 0 for r in result.rows[:-1])  # it was created today
    narrower = {"and": [{"trait": "country", "op": "eq", "value": "DE"}, {"event": "Order Completed"}]}
    store.save(shop.engine, "Germany", narrower, replace=True)  # some members exit
    after = reports.run(shop.engine, "segment_size", reports.parse_params("segment_size", {"days": "7"}))
    assert after.rows[-1][1] == queries.preview(shop.engine, narrower, 0)["count"] < size
    missing = reports.run(
        shop.engine, "segment_size", reports.parse_params("segment_size", {"segments": ["Gone"]})
    )
    assert missing.notes == ["There is no segment named 'Gone' any more."]


def test_saved_reports(client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]) -> None:
    as_role("marketer")
    _segment(client, "Germany", {"trait": "country", "op": "eq", "value": "DE"})
    saved = client.post(
        "/reports",
        data={
            "name": "DE conversion",
            "kind": "conversion_by_segment",
            "segments": ["Germany"],
            "days": "45",
            "from_event": "Product Viewed",
            "to_event": "Order Completed",
            "csrf_token": csrf_token(client),
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303
    url = saved.headers["location"].split("?")[0]
    report_id = int(url.rsplit("/", 1)[1])
    stored = reports.get_saved(shop.engine, report_id)
    assert (
        stored is not None and stored["params"]["days"] == 45 and stored["params"]["segments"] == ["Germany"]
    )
    page = client.get(url)
    assert page.status_code == 200 and "DE conversion" in page.text and 'value="45"' in page.text
    csv_text = client.get(f"{url}/export.csv").text
    assert csv_text.splitlines()[0] == "segment,reached,converted,conversion_percent"
    assert [line.split(",")[0] for line in csv_text.splitlines()[1:]] == ["Everyone", "Germany"]
    assert "DE conversion" in client.get("/reports").text

    clash = client.post(
        "/reports",
        data={"name": "DE conversion", "kind": "events_by_source", "csrf_token": csrf_token(client)},
    )
    assert clash.status_code == 400 and "already exists" in clash.text
    update = client.post(
        url,
        data={
            "name": "DE conversion 7d",
            "days": "7",
            "segments": ["Germany"],
            "csrf_token": csrf_token(client),
        },
        follow_redirects=False,
    )
    assert update.status_code == 303
    stored = reports.get_saved(shop.engine, report_id)
    assert stored is not None and stored["name"] == "DE conversion 7d" and stored["params"]["days"] == 7
    bad = client.get("/reports/view", params={"kind": "events_by_source", "days": "lots"})
    assert bad.status_code == 400 and "whole number" in bad.text
    assert client.get("/reports/view", params={"kind": "nope"}).status_code == 400
    gone = client.post(f"{url}/delete", data={"csrf_token": csrf_token(client)}, follow_redirects=False)
    assert gone.status_code == 303 and client.get(url).status_code == 404
