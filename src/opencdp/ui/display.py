"""How the dashboard shows values to a person: in their language's conventions and their time zone.

The viewer's locale comes from the browser's `Accept-Language`, their time zone from the cookie
`opencdp_tz` that app.js sets from the browser (`Intl…timeZone`); `OPENCDP_UI_LOCALE` and
`OPENCDP_UI_TIMEZONE` are the defaults before that (first page, scripts, tests). Money without a
currency of its own is in the shop's `OPENCDP_CURRENCY`. Formatting is Babel's (CLDR data), so
"1.234,50 €" in German and "€1,234.50" in English need no code of ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
import orjson
from babel import Locale, UnknownLocaleError
from babel.dates import format_skeleton, format_time
from babel.numbers import (
    UnknownCurrencyError,
    format_compact_decimal,
    format_currency,
    format_decimal,
    format_percent,
)
from fastapi import Request
from markupsafe import Markup, escape

from opencdp.traits.definitions import BUILT_IN
from opencdp.ui.charts import ChartText
from opencdp.ui.config import UISettings

NO_VALUE = "\u2013"  # an en dash: shown where there is no value
TZ_COOKIE = "opencdp_tz"
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$")
_ISO_MOMENT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")

#: What people call the built-in computed traits (the names stay the API's).
TRAIT_LABELS: dict[str, str] = {
    "order_count": "Orders",
    "orders_last_365_days": "Orders in the last year",
    "total_revenue": "Value (all orders)",
    "average_order_value": "Average order value",
    "largest_order": "Largest order",
    "first_order_at": "First order",
    "last_order_at": "Last order",
    "favourite_category": "Favourite category",
    "categories_ordered": "Categories ordered",
    "web_activity_30_days": "Web activity (30 days)",
    "email_opens_30_days": "E-mails opened (30 days)",
    "email_clicks_30_days": "E-mail clicks (30 days)",
    "sms_replies_30_days": "SMS replies (30 days)",
    "calls_30_days": "Calls (30 days)",
    "rfm_recency_days": "Days since last order",
    "rfm_r": "RFM recency score",
    "rfm_f": "RFM frequency score",
    "rfm_m": "RFM monetary score",
    "rfm_score": "RFM score",
    "rfm_segment": "RFM segment",
    "engagement_score": "Engagement score",
    "sessions_30_days": "Sessions (30 days)",
    "avg_session_seconds_30_days": "Average session, seconds (30 days)",
    "last_session_started_at": "Last session",
}
#: What people call the identifier types (custom types read as words, like trait names).
IDENTIFIER_LABELS: dict[str, str] = {
    "user_id": "User id",
    "anonymous_id": "Device / browser id",
    "email": "E-mail",
    "phone": "Phone",
}
#: Built-in traits that are amounts of money (in the shop's currency).
MONEY_TRAITS = frozenset(
    {
        "total_revenue",
        "average_order_value",
        "largest_order",
        # predicted (predict/)
        "expected_revenue",
        "expected_order_value",
        "share_revenue",
    }
)
#: Built-in traits that are moments.
MOMENT_TRAITS = frozenset(
    [*(d.name for d in BUILT_IN if d.kind in ("first", "last")), "last_session_started_at"]
)


@dataclass(frozen=True)
class Viewer:
    locale: Locale
    tz: tzinfo
    currency: str


def _locale(header: str, default: str) -> Locale:
    """The first language of `Accept-Language` (by q) that Babel knows, else the default."""
    weighted = []
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if _LANGUAGE_TAG.match(tag) and q > 0:
            weighted.append((-q, position, tag))
    for _, _, tag in sorted(weighted):
        try:
            return Locale.parse(tag, sep="-")
        except (UnknownLocaleError, ValueError):
            continue
    return Locale.parse(default)


def _zone(name: str | None) -> tzinfo | None:
    if not name or len(name) > 64:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def viewer_of(request: Request, settings: UISettings) -> Viewer:
    """Worked out once per request."""
    found = getattr(request.state, "viewer", None)
    if isinstance(found, Viewer):
        return found
    viewer = Viewer(
        locale=_locale(request.headers.get("accept-language", ""), settings.locale),
        tz=_zone(unquote(request.cookies.get(TZ_COOKIE, ""))) or _zone(settings.timezone) or UTC,
        currency=settings.currency,
    )
    request.state.viewer = viewer
    return viewer


# --- Plain functions (testable without a request) ---------------------------------------------


def as_moment(value: Any) -> datetime | None:
    """A datetime from a datetime, an ISO string or an epoch number; naive means UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and _ISO_MOMENT.match(value):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def format_when(value: Any, viewer: Viewer) -> str:
    """Date and time in the viewer's zone: "7 Dec 2026, 16:05" (en_GB), "Dec 7, 2026 4:05 PM" (en)."""
    if value is None or value == "":
        return NO_VALUE
    moment = as_moment(value)
    if moment is None:
        return str(value)
    local = moment.astimezone(viewer.tz)
    day = format_skeleton("yMMMd", local, locale=viewer.locale)
    return f"{day} {format_time(local, 'short', locale=viewer.locale)}"


def format_duration(seconds: Any) -> str:
    """A length of time in seconds as "45 s", "12 min 5 s", "1 h 3 min"."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return NO_VALUE
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def format_day(value: Any, viewer: Viewer) -> str:
    if value is None or value == "":
        return NO_VALUE
    moment = as_moment(value)
    if moment is None:
        return str(value)
    local = moment.astimezone(viewer.tz) if isinstance(value, datetime | str) else moment
    return str(format_skeleton("yMMMd", local, locale=viewer.locale))


def format_number(value: Any, viewer: Viewer, digits: int = 0) -> str:
    if value is None:
        return NO_VALUE
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "")
    return str(format_decimal(value, format=pattern, locale=viewer.locale))


def format_money(value: Any, viewer: Viewer, currency: str | None = None) -> str:
    """Rounded to the currency's minor unit, with its symbol where the locale puts it."""
    if value is None:
        return NO_VALUE
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    try:
        return str(format_currency(value, (currency or viewer.currency).upper(), locale=viewer.locale))
    except UnknownCurrencyError:
        return f"{format_number(value, viewer, 2)} {currency}"


def format_percent_of(value: Any, viewer: Viewer, digits: int = 1) -> str:
    """A share (0.123) as "12.3%"."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return NO_VALUE
    pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "") + "%"
    return str(format_percent(value, format=pattern, locale=viewer.locale))


def format_change(current: Any, previous: Any, viewer: Viewer, digits: int = 1) -> str:
    """Period over period, relative: "+12.4%" / "-3.0%"; "new" when the previous period had none."""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (current, previous))
    if not numbers:
        return NO_VALUE
    if not previous:
        return "new" if current else NO_VALUE
    places = "." + "0" * digits if digits > 0 else ""
    local = viewer.locale.percent_formats[None].pattern.split(";")[0]  # "#,##0%", "#,##0\u00a0%"
    shape = local.replace("#,##0", f"#,##0{places}", 1)
    pattern = f"+{shape};-{shape}"
    return str(format_percent((current - previous) / abs(previous), format=pattern, locale=viewer.locale))


def format_points(current: Any, previous: Any, viewer: Viewer, digits: int = 1) -> str:
    """The difference of two shares (0.25 vs 0.21) in percentage points: "+4.0 pp"."""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (current, previous))
    if not numbers:
        return NO_VALUE
    places = "." + "0" * digits if digits > 0 else ""
    pattern = f"+#,##0{places};-#,##0{places}"
    return f"{format_decimal(100 * (current - previous), format=pattern, locale=viewer.locale)}\u00a0pp"


def trend(current: Any, previous: Any) -> str:
    """ "up", "down" or "flat": a CSS class for a period-over-period change."""
    if not isinstance(current, int | float) or not isinstance(previous, int | float) or current == previous:
        return "flat"
    return "up" if current > previous else "down"


def trait_label(name: str) -> str:
    """ "total_revenue" → "Value (all orders)"; other names read as words: "loyalty_tier" → "Loyalty tier"."""
    if name in TRAIT_LABELS:
        return TRAIT_LABELS[name]
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else name


def identifier_label(kind: str) -> str:
    """ "anonymous_id" → "Device / browser id"; "loyalty_card" → "Loyalty card"."""
    return IDENTIFIER_LABELS.get(kind) or trait_label(kind)


def chips(values: Any) -> Markup:
    """A list as small labelled chips (escaped), anything else as escaped text."""
    if not isinstance(values, list | tuple):
        return Markup(escape(values))
    return Markup("").join(Markup('<span class="chip">{}</span>').format(v) for v in values)


def format_trait(name: str, value: Any, viewer: Viewer) -> Markup:
    """A computed trait's value as a person reads it: money, moments, counts, lists."""
    if value is None:
        return Markup(NO_VALUE)
    if isinstance(value, bool):
        return Markup("yes" if value else "no")
    if name in MONEY_TRAITS:
        return Markup(escape(format_money(value, viewer)))
    if name in MOMENT_TRAITS or (isinstance(value, str) and _ISO_MOMENT.match(value)):
        return Markup(escape(format_when(value, viewer)))
    if isinstance(value, list):
        return chips(value)
    if isinstance(value, float):
        return Markup(escape(format_number(value, viewer, 2)))
    if isinstance(value, int) and not isinstance(value, bool):
        return Markup(escape(format_number(value, viewer)))
    if isinstance(value, dict):  # e.g. the channel-preference job's counts per channel
        return chips([f"{k}: {_inner(v, viewer)}" for k, v in value.items()])
    return Markup(escape(value))


def _inner(value: Any, viewer: Viewer) -> str:
    """A nested value in one chip: "received 12 · responses 3 · ignored last 4"."""
    if not isinstance(value, dict):
        return str(format_trait("", value, viewer))
    shown = []
    for key, item in value.items():
        if item is None or isinstance(item, dict | list):
            continue
        text = format_when(item, viewer) if isinstance(item, str) and _ISO_MOMENT.match(item) else item
        if isinstance(item, float):
            text = format_number(item, viewer, 2)
        shown.append(f"{key.replace('_', ' ')} {text}")
    return " · ".join(shown)


#: Event properties that are amounts of money (in the event's `currency`, else the shop's).
MONEY_PROPERTIES = frozenset({"revenue", "total", "subtotal", "value", "price", "amount", "tax", "shipping"})


def format_property(
    name: str, value: Any, viewer: Viewer, currency: str | None = None, width: int = 60
) -> Markup:
    """An event property in a timeline row: money, moments and lists readable, long text cut."""
    if name in MONEY_PROPERTIES and isinstance(value, int | float) and not isinstance(value, bool):
        return Markup(escape(format_money(value, viewer, currency)))
    if isinstance(value, str) and _ISO_MOMENT.match(value):
        return Markup(escape(format_when(value, viewer)))
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return chips(value[:8])
    if isinstance(value, float):
        return Markup(escape(format_number(value, viewer, 2)))
    if isinstance(value, int) and not isinstance(value, bool):
        return Markup(escape(format_number(value, viewer)))
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return Markup(escape(text if len(text) <= width else text[: width - 1] + "\u2026"))


def format_axis_number(value: float, viewer: Viewer) -> str:
    """Short numbers for chart axes and tips: "12K" (en), "12 k" (fr); grouped digits where the
    language has no short thousands ("12.345" in German)."""
    if abs(value) >= 10_000:
        compact = str(format_compact_decimal(value, format_type="short", locale=viewer.locale))
        if not compact.isdigit():
            return compact
    return format_number(value, viewer, 0 if value == int(value) else 1)


def chart_text(viewer: Viewer) -> ChartText:
    """The viewer's language for charts, which are drawn before the template."""
    return ChartText(
        axis=lambda value: format_axis_number(value, viewer),
        number=lambda value: format_number(value, viewer, 0 if value == int(value) else 1),
        day=lambda day: str(format_skeleton("MMMd", date.fromisoformat(day), locale=viewer.locale)),
        money=lambda value: format_money(value, viewer),
        percent=lambda share: format_percent_of(share, viewer),
    )


# --- Jinja filters: the viewer comes from the template's `request` ----------------------------


def _viewer(ctx: Any) -> Viewer:
    from opencdp.ui.web import ui_settings  # web imports this module

    request = ctx.get("request")
    if request is None:
        settings = ui_settings()
        return Viewer(Locale.parse(settings.locale), _zone(settings.timezone) or UTC, settings.currency)
    return viewer_of(request, ui_settings())


@jinja2.pass_context
def _when_filter(ctx: Any, value: Any) -> str:
    return format_when(value, _viewer(ctx))


@jinja2.pass_context
def _day_filter(ctx: Any, value: Any) -> str:
    return format_day(value, _viewer(ctx))


@jinja2.pass_context
def _num_filter(ctx: Any, value: Any, digits: int = 0) -> str:
    return format_number(value, _viewer(ctx), digits)


@jinja2.pass_context
def _money_filter(ctx: Any, value: Any, currency: str | None = None) -> str:
    return format_money(value, _viewer(ctx), currency)


@jinja2.pass_context
def _percent_filter(ctx: Any, value: Any, digits: int = 1) -> str:
    return format_percent_of(value, _viewer(ctx), digits)


@jinja2.pass_context
def _change_filter(ctx: Any, value: Any, previous: Any, digits: int = 1) -> str:
    return format_change(value, previous, _viewer(ctx), digits)


@jinja2.pass_context
def _points_filter(ctx: Any, value: Any, previous: Any, digits: int = 1) -> str:
    return format_points(value, previous, _viewer(ctx), digits)


@jinja2.pass_context
def _trait_filter(ctx: Any, value: Any, name: str) -> Markup:
    return format_trait(name, value, _viewer(ctx))


@jinja2.pass_context
def _property_filter(ctx: Any, value: Any, name: str, currency: str | None = None) -> Markup:
    return format_property(name, value, _viewer(ctx), currency)


FILTERS = {
    "prop_value": _property_filter,
    "when": _when_filter,
    "day": _day_filter,
    "num": _num_filter,
    "money": _money_filter,
    "percent": _percent_filter,
    "change": _change_filter,
    "points": _points_filter,
    "trend": trend,
    "trait_value": _trait_filter,
    "trait_label": trait_label,
    "identifier_label": identifier_label,
    "chips": chips,
    "duration": format_duration,
}
