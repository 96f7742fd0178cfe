"""Data subject requests: everything held about a person (access, portability). Erasure: `erasure`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.identity.identifiers import IdentityRules
from opencdp.profiles.reader import find_profile_id, get_profile, merge_history, resolve_profile_id
from opencdp.store.schema import (
    consent_history,
    event_owners,
    events,
    identities,
    profiles,
    segment_memberships,
    segments,
    sources,
)


def parse_identifier(text: str) -> tuple[str, str]:
    """`email:ann@example.com`, `user_id:42`; a bare value with an @ is an e-mail."""
    kind, sep, value = text.partition(":")
    if sep and kind and value and "@" not in kind:
        return kind.strip(), value.strip()
    if "@" in text:
        return "email", text.strip()
    raise ValueError(
        f"{text!r}: write the identifier as TYPE:VALUE, e.g. email:ann@example.com or user_id:42"
    )


def _rows(conn: sa.Connection, stmt: Any) -> list[dict[str, Any]]:
    result = conn.execute(stmt)
    names = [str(n) for n in result.keys()]  # noqa: SIM118
    return [dict(zip(names, row, strict=True)) for row in result]


def export_person(engine: sa.Engine, rules: IdentityRules, kind: str, value: str) -> dict[str, Any]:
    """Everything held about one person, machine-readable (GDPR articles 15 and 20)."""
    return export_profile(engine, find_profile_id(engine, rules, kind, value))


def export_profile(engine: sa.Engine, pid: str) -> dict[str, Any]:
    """Everything held about the person of profile `pid` (followed through merges)."""
    profile = get_profile(engine, pid)
    with engine.connect() as conn:
        pid = resolve_profile_id(conn, pid)
        ids = [r[0] for r in conn.execute(sa.select(identities.c.id).where(identities.c.profile_id == pid))]
        owned = sa.select(event_owners.c.event_id).where(event_owners.c.identity_id.in_(ids))
        raw_events = _rows(
            conn,
            sa.select(
                events.c.id,
                sources.c.name.label("source"),
                events.c.type,
                events.c.timestamp,
                events.c.received_at,
                events.c.payload,
            )
            .join(sources, sources.c.id == events.c.source_id)
            .where(events.c.id.in_(owned))
            .order_by(events.c.timestamp, events.c.id),
        )
        consents = _rows(
            conn,
            sa.select(
                consent_history.c.purpose,
                consent_history.c.granted,
                consent_history.c.version,
                consent_history.c.ts,
            )
            .where(consent_history.c.profile_id == pid)
            .order_by(consent_history.c.ts),
        )
        memberships = _rows(
            conn,
            sa.select(
                segments.c.name.label("segment"),
                segment_memberships.c.entered_at,
                segment_memberships.c.exited_at,
            )
            .join(segments, segments.c.id == segment_memberships.c.segment_id)
            .where(segment_memberships.c.profile_id == pid),
        )
        row = conn.execute(
            sa.select(profiles.c.computed, profiles.c.consent_meta).where(profiles.c.id == pid)
        ).one()
    return {
        "generated_at": datetime.now(UTC),
        "profile": profile,
        "computed_traits": row.computed or {},
        "consent": {
            p: {"granted": r[0], "timestamp": r[1], "source": r[4], "version": r[5]}
            for p, r in (row.consent_meta or {}).items()
        },
        "consent_history": consents,
        "segment_memberships": memberships,
        "merge_history": merge_history(engine, pid),
        "events": raw_events,
    }
