"""Consent as events: read from `context.consent` of any call, kept per purpose on the profile
with its full history. Opt-in: a purpose with no record is not consented.

Accepted shapes (both may appear; `purposes` wins for a purpose named in both):

    "context": {"consent": {
        "categoryPreferences": {"Advertising": false, "Analytics": true},      # Segment's consent spec
        "purposes": {"email_marketing": {"granted": true, "version": "2026-03"}, "sms": false},
        "version": "2026-03"                                                   # text version for all
    }}
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.store.dialect import json_bool
from opencdp.store.schema import consent_purposes, profiles


@dataclass(frozen=True)
class ConsentChange:
    purpose: str
    granted: bool
    version: str | None


def purpose_name(raw: str) -> str:
    return "_".join(raw.strip().lower().replace("-", " ").split())[:64]


def extract_consent(payload: dict[str, Any]) -> list[ConsentChange]:
    context = payload.get("context")
    consent = context.get("consent") if isinstance(context, dict) else None
    if not isinstance(consent, dict):
        return []
    default_version = consent.get("version") if isinstance(consent.get("version"), str) else None
    found: dict[str, ConsentChange] = {}
    categories = consent.get("categoryPreferences")
    if isinstance(categories, dict):
        for name, value in categories.items():
            if isinstance(name, str) and isinstance(value, bool) and purpose_name(name):
                found[purpose_name(name)] = ConsentChange(purpose_name(name), value, default_version)
    purposes = consent.get("purposes")
    if isinstance(purposes, dict):
        for name, value in purposes.items():
            if not isinstance(name, str) or not purpose_name(name):
                continue
            if isinstance(value, bool):
                found[purpose_name(name)] = ConsentChange(purpose_name(name), value, default_version)
            elif isinstance(value, dict) and isinstance(value.get("granted"), bool):
                version = value.get("version") if isinstance(value.get("version"), str) else default_version
                found[purpose_name(name)] = ConsentChange(purpose_name(name), value["granted"], version)
    return sorted(found.values(), key=lambda c: c.purpose)


class ConsentError(ValueError):
    pass


#: The purposes a new installation starts with (migration 0005 seeds the same).
DEFAULT_PURPOSES = {
    "analytics": "Measuring and improving our site and shop",
    "email_marketing": "Marketing e-mails and newsletters",
    "sms": "Marketing text messages",
    "personalisation": "Personalised content and offers",
    "advertising": "Audiences for advertising platforms",
}


def seed_default_purposes(engine: sa.Engine) -> None:
    """Insert the default purposes that are missing (for databases emptied by hand or by tests)."""
    with engine.begin() as conn:
        existing = {r[0] for r in conn.execute(sa.select(consent_purposes.c.name))}
        missing = [
            {"name": n, "description": d, "created_at": datetime.now(UTC)}
            for n, d in DEFAULT_PURPOSES.items()
            if n not in existing
        ]
        if missing:
            conn.execute(consent_purposes.insert(), missing)


def list_purposes(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(name=r.name, description=r.description, created_at=r.created_at)
            for r in conn.execute(sa.select(consent_purposes).order_by(consent_purposes.c.name))
        ]


def define_purpose(engine: sa.Engine, name: str, description: str) -> str:
    clean = purpose_name(name)
    if not clean:
        raise ConsentError("a purpose needs a name")
    with engine.begin() as conn:
        if conn.execute(sa.select(consent_purposes.c.name).where(consent_purposes.c.name == clean)).first():
            raise ConsentError(f"purpose {clean!r} already exists")
        conn.execute(
            consent_purposes.insert().values(
                name=clean, description=description, created_at=datetime.now(UTC)
            )
        )
    return clean


def require_purpose(conn: sa.Connection, purpose: str | None) -> str:
    """Exports must name a defined purpose: only profiles that consented to it leave the system."""
    if not purpose:
        raise ConsentError("a purpose is required: only profiles that consented to it are exported")
    clean = purpose_name(purpose)
    if (
        conn.execute(sa.select(consent_purposes.c.name).where(consent_purposes.c.name == clean)).first()
        is None
    ):
        known = [
            r[0] for r in conn.execute(sa.select(consent_purposes.c.name).order_by(consent_purposes.c.name))
        ]
        raise ConsentError(f"unknown purpose {purpose!r}; defined purposes: {', '.join(known)}")
    return clean


def consenting_profiles(purpose: str) -> sa.Select[tuple[str]]:
    """Ids of the profiles that may leave the system for `purpose` (a name `require_purpose`
    checked). Opt-in: only a recorded, granted consent counts; every export filters through this."""
    return sa.select(profiles.c.id).where(json_bool(profiles.c.consent, purpose) == sa.true())
