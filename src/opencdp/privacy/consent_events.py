"""Consent given or withdrawn through the admin API becomes an event in the log like any other,
so it is processed, kept in the history, replayed by `rebuild` and visible in the timeline."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.access.keys import hash_secret
from opencdp.collect.messages import Envelope, Limits, normalise
from opencdp.profiles.reader import resolve_profile_id
from opencdp.store.schema import identities, sources

ADMIN_SOURCE = "opencdp-admin"


def admin_source_id(engine: sa.Engine) -> int:
    """The built-in source for changes made through the admin API (it has no usable write key)."""
    with engine.begin() as conn:
        return system_source_id(conn, ADMIN_SOURCE)


def system_source_id(conn: sa.Connection, name: str) -> int:
    """A built-in source (admin API, journeys): created on first use, disabled for collection."""
    found = conn.execute(sa.select(sources.c.id).where(sources.c.name == name)).scalar()
    if found is not None:
        return int(found)
    result = conn.execute(
        sources.insert().values(
            name=name,
            write_key_hash=hash_secret(secrets.token_hex(32)),
            enabled=False,
            created_at=datetime.now(UTC),
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def addressed_to(conn: sa.Connection, survivor: str, message: dict[str, Any]) -> dict[str, Any]:
    """The message with the profile's strongest identifier, so processing files it under that
    profile: its user id, else its anonymous id, else (e.g. only an e-mail) an external id."""
    idents = {
        r.type: r.value
        for r in conn.execute(
            sa.select(identities.c.type, identities.c.value)
            .where(identities.c.profile_id == survivor)
            .order_by(identities.c.type.desc(), identities.c.value.desc())
        )
    }
    if "user_id" in idents:
        message["userId"] = idents["user_id"]
    elif "anonymous_id" in idents:
        message["anonymousId"] = idents["anonymous_id"]
    elif idents:
        kind, value = next(iter(sorted(idents.items())))
        message["anonymousId"] = f"profile:{survivor}"
        message.setdefault("context", {})["externalIds"] = [{"type": kind, "id": value}]
    return message


def consent_message(purpose: str, granted: bool, version: str | None, actor: str) -> dict[str, Any]:
    """A `Consent Updated` call carrying the change in `context.consent`, as a site would send it."""
    return {
        "type": "track",
        "event": "Consent Updated",
        "messageId": f"consent-{uuid.uuid4()}",
        "properties": {"purpose": purpose, "granted": granted, "version": version, "changed_by": actor},
        "context": {"consent": {"purposes": {purpose: {"granted": granted, "version": version}}}},
    }


def consent_event(
    engine: sa.Engine, profile_id: str, purpose: str, granted: bool, version: str | None, actor: str
) -> dict[str, Any]:
    """An event-log row recording the consent change for the profile's strongest identifier."""
    message = consent_message(purpose, granted, version, actor)
    with engine.connect() as conn:
        addressed_to(conn, resolve_profile_id(conn, profile_id), message)
    return normalise(message, Envelope(datetime.now(UTC)), admin_source_id(engine), Limits())
