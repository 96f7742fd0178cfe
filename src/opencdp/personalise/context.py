"""The live context of a decision: what the page sends, normalised, plus what is looked up for it
(local time, public holidays, weather). Keys are those of `audience.ContextKey`.

The page sends Segment-style context (`page`, `campaign`, `userAgent`, `locale`, `timezone`,
`location`, `device`) and a `cart`. Missing pieces are derived where that is reliable: UTM values
from the page's query string, the country from the locale ("de-DE" → DE), the device type from the
user agent, the cart's value from its items. Nothing here leaves the server.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from opencdp.personalise.weather import Weather

_TABLET = re.compile(r"iPad|Tablet|PlayBook|Silk|(Android(?!.*Mobile))", re.I)
_MOBILE = re.compile(r"Mobi|iPhone|iPod|Android.*Mobile|Windows Phone|BlackBerry", re.I)
_UTM = ("source", "medium", "campaign", "term", "content")
#: Segment's `context.campaign` names the campaign `name`; UTM calls it `campaign`.
_CAMPAIGN_KEYS = {
    "source": "source",
    "medium": "medium",
    "campaign": "name",
    "term": "term",
    "content": "content",
}


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any, limit: int = 2000) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def device_type(user_agent: str | None) -> str | None:
    """mobile, tablet or desktop from a user agent string (None without one)."""
    if not user_agent:
        return None
    if _TABLET.search(user_agent):
        return "tablet"
    if _MOBILE.search(user_agent):
        return "mobile"
    return "desktop"


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@lru_cache(maxsize=256)
def _calendar(country: str, subdivision: str | None) -> holidays.HolidayBase | None:
    try:
        return holidays.country_holidays(country, subdiv=subdivision)
    except (NotImplementedError, KeyError, ValueError):  # unknown country or subdivision
        if subdivision is None:
            return None
        return _calendar(country, None)


def holiday_name(country: str | None, region: str | None, day: str) -> str | None:
    """The public holiday on `day` (YYYY-MM-DD) in the country (and its subdivision), or None."""
    if not country:
        return None
    subdivision = region.split("-", 1)[1] if region and "-" in region else None
    calendar = _calendar(country, subdivision)
    if calendar is None:
        return None
    name = calendar.get(day)
    return str(name) if name else None


def live_context(
    raw: dict[str, Any],
    now: datetime,
    known_visitor: bool,
    weather: Callable[[list[str], str], Weather | None] | None = None,
) -> dict[str, Any]:
    """The flat context an audience's `context` conditions read. `weather` is asked only when given
    (the decider passes it when an experience needs weather)."""
    page = _object(raw.get("page"))
    campaign = _object(raw.get("campaign"))
    device = _object(raw.get("device"))
    location = _object(raw.get("location"))
    cart = _object(raw.get("cart"))
    out: dict[str, Any] = {
        "page.url": _text(page.get("url")),
        "page.path": _text(page.get("path")),
        "page.referrer": _text(page.get("referrer")),
        "page.title": _text(page.get("title")),
        "page.search": _text(page.get("search")),
        "known_visitor": known_visitor,
    }
    if out["page.path"] is None and out["page.url"]:
        with contextlib.suppress(ValueError):
            out["page.path"] = urlsplit(out["page.url"]).path or "/"
    query = _query(out["page.search"], out["page.url"])
    for utm in _UTM:
        value = _text(campaign.get(_CAMPAIGN_KEYS[utm]), 500) or _text(query.get(f"utm_{utm}"), 500)
        out[f"utm.{utm}"] = value
    out["device.type"] = _text(device.get("type"), 20) or device_type(_text(raw.get("userAgent")))
    locale = _text(raw.get("locale"), 35)
    out["locale"] = locale
    parts = re.split(r"[-_]", locale) if locale else []
    out["language"] = parts[0].lower() if parts else None
    country = _text(location.get("country"), 2) if len(str(location.get("country") or "")) == 2 else None
    if country is None and len(parts) > 1 and len(parts[-1]) == 2 and parts[-1].isalpha():
        country = parts[-1]
    out["country"] = country.upper() if country else None
    region = _text(location.get("region"), 10)
    if region and out["country"] and not region.upper().startswith(out["country"] + "-"):
        region = f"{out['country']}-{region}"
    out["region"] = region.upper() if region else None
    zone_name = _text(raw.get("timezone"), 64)
    zone = _zone(zone_name) if zone_name else None
    out["timezone"] = zone_name if zone else None
    local = now.astimezone(zone) if zone else now
    out["local_hour"] = local.hour
    out["weekday"] = local.isoweekday()
    out["local_date"] = local.date().isoformat()
    _cart(cart, out)
    name = holiday_name(out["country"], out["region"], out["local_date"])
    out["holiday"] = name is not None
    out["holiday_name"] = name
    out["weather.condition"] = out["weather.temperature_c"] = None
    if weather is not None:
        found = weather([r for r in (out["region"], out["country"]) if r], out["local_date"])
        if found is not None:
            out["weather.condition"] = found.condition
            out["weather.temperature_c"] = found.temperature_c
    return out


def _query(search: str | None, url: str | None) -> dict[str, str]:
    text = search or (urlsplit(url).query if url else "")
    parsed = parse_qs(text.lstrip("?"), max_num_fields=50) if text else {}
    return {k: v[0] for k, v in parsed.items() if v}


def _cart(cart: dict[str, Any], out: dict[str, Any]) -> None:
    raw_items = cart.get("items")
    items: list[Any] = raw_items if isinstance(raw_items, list) else []
    quantity = 0
    total = 0.0
    for item in items[:200]:
        if not isinstance(item, dict):
            continue
        q = _number(item.get("quantity"))
        q = 1.0 if q is None else q
        quantity += int(q)
        total += (_number(item.get("price")) or 0.0) * q
    value = _number(cart.get("value"))
    out["cart.value"] = value if value is not None else (round(total, 2) if items else None)
    out["cart.items"] = quantity if items else (0 if cart else None)
    out["cart.currency"] = _text(cart.get("currency"), 3)
