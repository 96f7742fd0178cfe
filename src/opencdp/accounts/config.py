"""Settings of customer accounts, read from the environment (documented in docs/identity.md).

Accounts are on when `OPENCDP_ACCOUNTS_ISSUER` is set: the public URL of this server as relying
parties see it (`https://login.shop.example`). Every token names it, so it cannot be guessed from
requests. Without it the hosted pages and the provider's endpoints answer 404; clients can still
be registered ahead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from opencdp.accounts.profiling import QUESTIONS
from opencdp.accounts.social import SocialProvider
from opencdp.accounts.social_config import social_from_env
from opencdp.config import ConfigError

SECURITY = ("none", "starttls", "ssl")


def _int(name: str, default: int, low: int = 1) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < low:
        raise ConfigError(f"{name} must be at least {low}, got {value}")
    return value


def _texts(path: str) -> dict[str, dict[str, str]]:
    """`{"de": {"sign_in": "Anmelden", …}, …}` from a JSON file: texts per locale."""
    try:
        data: Any = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"OPENCDP_ACCOUNTS_TEXTS: cannot read {path!r} as JSON ({exc})") from None
    if not isinstance(data, dict) or not all(
        isinstance(v, dict) and all(isinstance(t, str) for t in v.values()) for v in data.values()
    ):
        raise ConfigError('OPENCDP_ACCOUNTS_TEXTS must hold {"<locale>": {"<key>": "<text>", …}, …}')
    return {str(locale).replace("-", "_"): dict(texts) for locale, texts in data.items()}


def _colour(name: str, default: str) -> str:
    raw = os.environ.get(name, "") or default
    if not (
        raw.startswith("#") and len(raw) in (4, 7) and all(c in "0123456789abcdefABCDEF" for c in raw[1:])
    ):
        raise ConfigError(f"{name} must be a colour such as #1f6feb, got {raw!r}")
    return raw


@dataclass(frozen=True)
class Brand:
    name: str = "opencdp"
    #: an https URL (or a path on this server); its origin is allowed in the pages' CSP
    logo_url: str = ""
    primary: str = "#1f6feb"
    background: str = "#f6f8fa"
    text: str = "#1f2328"
    #: per locale, texts that replace the built-in English ones (accounts/texts.py)
    texts: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Smtp:
    host: str = ""
    port: int = 587
    security: str = "starttls"
    username: str = ""
    password: str = ""
    sender: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.host and self.sender)


@dataclass(frozen=True)
class AccountSettings:
    issuer: str = ""
    brand: Brand = field(default_factory=Brand)
    smtp: Smtp = field(default_factory=Smtp)
    #: purposes offered as opt-in checkboxes at registration; empty: every defined purpose
    purposes: tuple[str, ...] = ()
    #: the version of the consent texts, recorded with every consent given on these pages
    consent_version: str | None = None
    access_token_seconds: int = 3600
    refresh_token_days: int = 30
    session_hours: int = 24 * 14
    link_hours: int = 24
    #: argon2 computations at once for customer passwords (each ~19 MiB and one core for ~20 ms)
    hash_slots: int = 2
    #: customer-face requests worked on at once, and how many more may wait (accounts/admission.py)
    concurrency: int = 2
    queue: int = 64
    #: Mark cookies `Secure` even on plain HTTP (behind a TLS proxy)
    secure_cookies: bool = False
    #: social logins offered on the hosted pages (accounts/social_config.py), and their labels
    social: tuple[SocialProvider, ...] = ()
    social_labels: dict[str, str] = field(default_factory=dict)
    #: progressive profiling: questions asked one per sign-in, in this order (accounts/profiling.py)
    ask: tuple[str, ...] = ()
    #: a skipped question is asked again after this many days
    ask_again_days: int = 90

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)

    def social_provider(self, name: str) -> SocialProvider | None:
        return next((p for p in self.social if p.name == name), None)

    @classmethod
    def from_env(cls) -> AccountSettings:
        issuer = os.environ.get("OPENCDP_ACCOUNTS_ISSUER", "").strip().rstrip("/")
        if issuer and not issuer.startswith(("https://", "http://")):
            raise ConfigError(f"OPENCDP_ACCOUNTS_ISSUER must be an https:// URL, got {issuer!r}")
        texts_file = os.environ.get("OPENCDP_ACCOUNTS_TEXTS", "")
        security = os.environ.get("OPENCDP_ACCOUNTS_SMTP_SECURITY", "starttls").lower()
        if security not in SECURITY:
            raise ConfigError(f"OPENCDP_ACCOUNTS_SMTP_SECURITY must be one of {', '.join(SECURITY)}")
        default_port = {"none": 25, "starttls": 587, "ssl": 465}[security]
        purposes = os.environ.get("OPENCDP_ACCOUNTS_PURPOSES", "")
        social, social_labels = social_from_env()
        ask = tuple(q.strip() for q in os.environ.get("OPENCDP_ACCOUNTS_ASK", "").split(",") if q.strip())
        if unknown := [q for q in ask if q not in QUESTIONS]:
            raise ConfigError(
                f"OPENCDP_ACCOUNTS_ASK: unknown question {unknown[0]!r} (one of {', '.join(QUESTIONS)})"
            )
        return cls(
            issuer=issuer,
            brand=Brand(
                name=os.environ.get("OPENCDP_ACCOUNTS_BRAND_NAME", "") or "opencdp",
                logo_url=os.environ.get("OPENCDP_ACCOUNTS_LOGO_URL", ""),
                primary=_colour("OPENCDP_ACCOUNTS_COLOUR_PRIMARY", "#1f6feb"),
                background=_colour("OPENCDP_ACCOUNTS_COLOUR_BACKGROUND", "#f6f8fa"),
                text=_colour("OPENCDP_ACCOUNTS_COLOUR_TEXT", "#1f2328"),
                texts=_texts(texts_file) if texts_file else {},
            ),
            smtp=Smtp(
                host=os.environ.get("OPENCDP_ACCOUNTS_SMTP_HOST", ""),
                port=_int("OPENCDP_ACCOUNTS_SMTP_PORT", default_port),
                security=security,
                username=os.environ.get("OPENCDP_ACCOUNTS_SMTP_USERNAME", ""),
                password=os.environ.get("OPENCDP_ACCOUNTS_SMTP_PASSWORD", ""),
                sender=os.environ.get("OPENCDP_ACCOUNTS_MAIL_FROM", ""),
            ),
            purposes=tuple(p.strip() for p in purposes.split(",") if p.strip()),
            consent_version=os.environ.get("OPENCDP_ACCOUNTS_CONSENT_VERSION") or None,
            access_token_seconds=_int("OPENCDP_ACCOUNTS_ACCESS_TOKEN_SECONDS", 3600, 60),
            refresh_token_days=_int("OPENCDP_ACCOUNTS_REFRESH_TOKEN_DAYS", 30),
            session_hours=_int("OPENCDP_ACCOUNTS_SESSION_HOURS", 24 * 14),
            link_hours=_int("OPENCDP_ACCOUNTS_LINK_HOURS", 24),
            hash_slots=_int("OPENCDP_ACCOUNTS_HASH_SLOTS", 2),
            concurrency=_int("OPENCDP_ACCOUNTS_CONCURRENCY", 2),
            queue=_int("OPENCDP_ACCOUNTS_QUEUE", 64, 0),
            secure_cookies=os.environ.get("OPENCDP_ACCOUNTS_SECURE_COOKIES", "0").lower()
            in {"1", "true", "yes"},
            social=social,
            social_labels=social_labels,
            ask=ask,
            ask_again_days=_int("OPENCDP_ACCOUNTS_ASK_AGAIN_DAYS", 90),
        )
