"""Dashboard settings, read from the environment once per process (documented in docs/ui.md).

They live here rather than in `opencdp.config.Settings` because only the dashboard uses them;
moving them there later changes nothing for users.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.numbers import is_currency

from opencdp.config import ConfigError


def _minutes(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number of minutes, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {value}")
    return value


def _locale() -> str:
    raw = os.environ.get("OPENCDP_UI_LOCALE", "") or "en"
    try:
        Locale.parse(raw.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        raise ConfigError(f"OPENCDP_UI_LOCALE must be a locale (en, en_GB, de_DE), got {raw!r}") from None
    return raw.replace("-", "_")


def _timezone() -> str:
    raw = os.environ.get("OPENCDP_UI_TIMEZONE", "") or "UTC"
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"OPENCDP_UI_TIMEZONE must be a time zone (Europe/Berlin), got {raw!r}") from None
    return raw


def _currency() -> str:
    raw = (os.environ.get("OPENCDP_CURRENCY", "") or "EUR").upper()
    if not is_currency(raw):
        raise ConfigError(f"OPENCDP_CURRENCY must be an ISO 4217 code such as EUR or USD, got {raw!r}")
    return raw


@dataclass(frozen=True)
class UISettings:
    #: A session ends after this long without a request (the laptop left open in a café).
    idle: timedelta
    #: …and after this long in any case, so a stolen cookie is not valid for ever.
    lifetime: timedelta
    #: Mark cookies `Secure` even when the request looks like plain HTTP (behind a TLS proxy that
    #: does not send X-Forwarded-Proto).
    secure_cookies: bool
    #: How values are shown before the browser says otherwise (see ui/format.py).
    locale: str = "en"
    timezone: str = "UTC"
    #: The shop's currency, for amounts whose events do not name one.
    currency: str = "EUR"

    @classmethod
    def from_env(cls) -> UISettings:
        return cls(
            idle=timedelta(minutes=_minutes("OPENCDP_UI_IDLE_MINUTES", 120)),
            lifetime=timedelta(minutes=_minutes("OPENCDP_UI_SESSION_MINUTES", 12 * 60)),
            secure_cookies=os.environ.get("OPENCDP_UI_SECURE_COOKIES", "0").lower() in {"1", "true", "yes"},
            locale=_locale(),
            timezone=_timezone(),
            currency=_currency(),
        )
