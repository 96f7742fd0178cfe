"""How values are shown: the viewer's locale and time zone, money, labels for built-in traits."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from babel import Locale
from starlette.requests import Request

from opencdp.traits.definitions import BUILT_IN, DERIVED
from opencdp.ui import display
from opencdp.ui.config import UISettings
from opencdp.ui.display import Viewer

MOMENT = datetime(2026, 12, 7, 16, 5, tzinfo=UTC)


def viewer(locale: str = "en", tz: str = "UTC", currency: str = "EUR") -> Viewer:
    return Viewer(Locale.parse(locale), ZoneInfo(tz), currency)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("de-DE,de;q=0.9,en;q=0.8", "de_DE"),
        ("en;q=0.3, fr-FR;q=0.9", "fr_FR"),
        ("xx-nonsense, en-GB", "en_GB"),
        ("", "en"),
        ("*", "en"),
        ("de;q=0", "en"),
    ],
)
def test_the_locale_is_the_browsers_first_known_language(header: str, expected: str) -> None:
    assert str(display._locale(header, "en")) == expected


def test_moments_in_the_viewers_zone_and_language() -> None:
    assert display.format_when(MOMENT, viewer("en_GB", "Europe/Berlin")) == "7 Dec 2026 17:05"
    assert display.format_when("2026-12-07T16:05:00+00:00", viewer("de_DE", "UTC")) == "7. Dez. 2026 16:05"
    assert display.format_when(None, viewer()) == display.NO_VALUE
    assert display.format_when("not a date", viewer()) == "not a date"
    assert display.format_day(MOMENT, viewer("en_GB", "Pacific/Kiritimati")) == "8 Dec 2026"


def test_money_has_its_currency_and_is_rounded() -> None:
    assert display.format_money(1234.5678, viewer("en")) == "€1,234.57"
    assert display.format_money(1234.5, viewer("de_DE")) == "1.234,50\xa0€"
    assert display.format_money(10, viewer("en"), "usd") == "$10.00"
    assert display.format_money(None, viewer()) == display.NO_VALUE


def test_computed_traits_read_as_words_and_values() -> None:
    for name in [d.name for d in BUILT_IN] + list(DERIVED):
        assert name in display.TRAIT_LABELS, f"no label for the built-in trait {name}"
    assert display.trait_label("loyalty_tier") == "Loyalty tier"
    v = viewer("en_GB")
    assert display.format_trait("total_revenue", 321.456, v) == "€321.46"
    assert display.format_trait("last_order_at", "2026-12-01T09:30:00+00:00", v) == "1 Dec 2026 09:30"
    chips = display.format_trait("categories_ordered", ["shoes", "<b>kids</b>"], v)
    assert chips == '<span class="chip">shoes</span><span class="chip">&lt;b&gt;kids&lt;/b&gt;</span>'
    assert display.format_trait("order_count", 12345, v) == "12,345"


def test_plain_traits_identifiers_and_event_properties_read_as_words() -> None:
    v = viewer("de_DE", "Europe/Berlin")
    assert display.format_trait("newsletter", True, v) == "yes"
    assert display.format_trait("newsletter", False, v) == "no"
    assert display.identifier_label("anonymous_id") == "Device / browser id"
    assert display.identifier_label("loyalty_card") == "Loyalty card"
    assert display.format_property("revenue", 1234.5, v, "USD") == "1.234,50\xa0$"
    assert display.format_property("revenue", 12, v) == "12,00\xa0€"  # the shop's currency
    assert display.format_property("shipped_at", "2026-12-01T09:30:00Z", v) == "1. Dez. 2026 10:30"
    assert display.format_property("tags", ["a", "<b>"], v) == (
        '<span class="chip">a</span><span class="chip">&lt;b&gt;</span>'
    )
    long = display.format_property("note", "<" * 100, v)
    assert long.startswith("&lt;") and long.endswith("\u2026") and long.count("&lt;") == 59
    assert display.format_property("cart", {"sku": 1}, v) == "{&#34;sku&#34;:1}"


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw, "query_string": b""})


def test_the_viewer_comes_from_the_browsers_language_and_zone_cookie() -> None:
    settings = UISettings.from_env()
    # app.js writes the zone URL-encoded, as cookie values must be
    seen = display.viewer_of(
        _request({"Accept-Language": "de-DE,de;q=0.9", "Cookie": "opencdp_tz=Europe%2FBerlin"}), settings
    )
    assert str(seen.locale) == "de_DE" and str(seen.tz) == "Europe/Berlin"
    assert display.format_when(MOMENT, seen) == "7. Dez. 2026 17:05"
    for cookie in ("opencdp_tz=Mars%2FOlympus", "opencdp_tz=..%2F..%2Fetc%2Fpasswd", ""):
        fallback = display.viewer_of(_request({"Cookie": cookie}), settings)
        assert str(fallback.tz) == settings.timezone and str(fallback.locale) == settings.locale


def test_charts_speak_the_viewers_language() -> None:
    german, english = display.chart_text(viewer("de_DE")), display.chart_text(viewer("en"))
    assert german.day("2026-11-05") == "5. Nov." and english.day("2026-11-05") == "Nov 5"
    assert german.axis(12345) == "12.345" and english.axis(12345) == "12K" and english.axis(2.5) == "2.5"
    assert german.number(12345) == "12.345" and german.money(1234.5) == "1.234,50\xa0€"
    assert german.percent(0.123) == "12,3\xa0%" or german.percent(0.123) == "12,3%"
