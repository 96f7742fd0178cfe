"""Reports: each built-in view with its chart and CSV, saved reports, and the numbers behind them."""

from __future__ import annotations

import csv
import html
import io
import json
import re
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


def test_event_and_property_pickers_come_from_the_catalogue(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    as_role("marketer")
    page = client.get("/reports/view", params={"kind": "orders_by_segment"})
    assert page.status_code == 200
    picker = re.search(r'<select name="event" id="param-event">(.*?)</select>', page.text, re.S)
    assert picker
    offered = [html.unescape(v) for v in re.findall(r'<option value="([^"]*)"', picker.group(1))]
    with shop.engine.connect() as conn:
        names = sorted(
            r[0] for r in conn.execute(sa.select(profile_events.c.name).distinct()) if r[0] is not None
        )
    assert offered == names
    assert re.search(r'<option value="Order Completed" selected>', picker.group(1))
    properties = re.search(r'<datalist id="property-names">(.*?)</datalist>', page.text, re.S)
    assert properties and '<option value="revenue">' in properties.group(1)
    everything = client.get("/reports/view", params={"kind": "events_by_source"}).text
    assert '<option value="" selected>all events</option>' in everything

    typo = client.get("/reports/view", params={"kind": "orders_by_segment", "event": "Order Complted"})
    assert typo.status_code == 400
    assert (
        "Order event: There is no event named &#39;Order Complted&#39; in the data. "
        "Did you mean &#39;Order Completed&#39;?"
    ) in typo.text
    assert '<option value="Order Complted" selected>Order Complted (not in the data)</option>' in typo.text
    no_property = client.get("/reports/view", params={"kind": "orders_by_segment", "property": "revenu"})
    assert no_property.status_code == 400
    assert "Events named &#39;Order Completed&#39; have no property &#39;revenu&#39;" in no_property.text
    assert "Did you mean &#39;revenue&#39;?" in no_property.text
    csv_typo = client.get("/reports/export.csv", params={"kind": "conversion_by_segment", "to_event": "Ordr"})
    assert csv_typo.status_code == 400 and "To event: There is no event named" in csv_typo.text
    refused = client.post(
        "/reports",
        data={
            "name": "Typo",
            "kind": "events_by_source",
            "event": "Page Vewed",
            "csrf_token": csrf_token(client),
        },
    )
    assert refused.status_code == 400 and "no event named &#39;Page Vewed&#39;" in refused.text
    assert all(r["name"] != "Typo" for r in reports.list_saved(shop.engine))


def test_revenue_is_shown_with_its_currency(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    as_role("analyst")
    page = client.get(
        "/reports/view", params={"kind": "orders_by_segment"}, headers={"Accept-Language": "en"}
    )
    result = reports.run(shop.engine, "orders_by_segment", reports.parse_params("orders_by_segment", {}))
    everyone = result.rows[0]
    assert everyone[0] == "Everyone" and everyone[4] > 0
    assert f"€{everyone[4]:,.2f}" in page.text  # the table cell and the chart label
    assert page.text.count(f"€{everyone[4]:,.2f}") >= 2
    german = client.get(
        "/reports/view", params={"kind": "orders_by_segment"}, headers={"Accept-Language": "de-DE"}
    )
    amount = f"{everyone[4]:,.2f}".replace(",", "X").replace(".", ",").replace("X", ".")
    assert f"{amount}\xa0€" in german.text
