"""The overview's revenue, orders and conversion with the previous period beside them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from babel import Locale
from fastapi.testclient import TestClient

from opencdp.store.schema import profile_events
from opencdp.system import OpenCDP
from opencdp.ui import display
from opencdp.ui.sql import day_range
from opencdp.ui.views_overview import ORDER_EVENT, overview_data


def _oracle(engine: sa.Engine, days: int, now: datetime) -> dict[str, dict[str, float]]:
    """The same numbers from every event row, in Python."""
    start, _ = day_range(days, now)
    before = start - timedelta(days=days)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                profile_events.c.profile_id,
                profile_events.c.name,
                profile_events.c.ts,
                profile_events.c.properties,
            ).where(profile_events.c.ts >= before)
        ).all()
    out = {}
    for period, inside in (("current", lambda ts: ts >= start), ("previous", lambda ts: ts < start)):
        mine = [r for r in rows if inside(r.ts)]
        orders = [r for r in mine if r.name == ORDER_EVENT]
        buyers = {r.profile_id for r in orders}
        active = {r.profile_id for r in mine}
        revenue = sum(
            float(r.properties["revenue"])
            for r in orders
            if isinstance(r.properties.get("revenue"), int | float)
        )
        out[period] = {
            "revenue": round(revenue, 2),
            "orders": len(orders),
            "buyers": len(buyers),
            "active": len(active),
            "conversion": len(buyers) / len(active) if active else 0.0,
        }
    return out


@pytest.mark.parametrize("days", [7, 30])
def test_commerce_numbers_match_the_events(shop: OpenCDP, days: int) -> None:
    now = datetime.now(UTC)
    found = overview_data(shop.engine, days, now)["commerce"]
    expected = _oracle(shop.engine, days, now)
    for period in ("current", "previous"):
        assert found[period]["revenue"] == pytest.approx(expected[period]["revenue"], abs=0.01)
        for key in ("orders", "buyers", "active"):
            assert found[period][key] == expected[period][key], (period, key)
        assert found[period]["conversion"] == pytest.approx(expected[period]["conversion"])
    if days == 30:
        assert found["current"]["orders"] > 0 and found["previous"]["orders"] > 0


def test_overview_shows_revenue_orders_conversion_against_the_previous_period(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    as_role("analyst")
    page = client.get("/?days=30", headers={"Accept-Language": "en"})
    assert page.status_code == 200
    now, before = (overview_data(shop.engine, 30)["commerce"][p] for p in ("current", "previous"))
    en = display.Viewer(Locale.parse("en"), ZoneInfo("UTC"), "EUR")
    assert display.format_money(now["revenue"], en) in page.text
    assert f"vs {display.format_money(before['revenue'], en)} the 30 days before" in page.text
    assert display.format_change(now["revenue"], before["revenue"], en) in page.text
    assert f"vs {before['orders']:,} the 30 days before" in page.text
    assert display.format_points(now["conversion"], before["conversion"], en) in page.text
    assert f"of {now['active']:,} active profiles" in page.text
    # the chart's days and numbers in the viewer's language too
    first = datetime.fromisoformat(day_range(30, datetime.now(UTC))[1][0])  # the axis's first label
    german = client.get("/?days=30", headers={"Accept-Language": "de-DE"}).text
    assert f">{first.day}. " in german and f">{first:%b} {first.day}<" in page.text


def test_change_and_points_formats() -> None:
    en = display.Viewer(Locale.parse("en"), ZoneInfo("UTC"), "EUR")
    de = display.Viewer(Locale.parse("de_DE"), ZoneInfo("UTC"), "EUR")
    assert display.format_change(112.4, 100, en) == "+12.4%"
    assert display.format_change(90, 100, en) == "-10.0%"
    assert display.format_change(112.4, 100, de) == "+12,4\xa0%"
    assert display.format_change(5, 0, en) == "new"
    assert display.format_change(0, 0, en) == display.NO_VALUE
    assert display.format_change(None, 3, en) == display.NO_VALUE
    assert display.format_points(0.25, 0.21, en) == "+4.0\xa0pp"
    assert display.format_points(0.2, 0.25, en) == "-5.0\xa0pp"
    assert [display.trend(2, 1), display.trend(1, 2), display.trend(1, 1)] == ["up", "down", "flat"]
