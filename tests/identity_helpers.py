"""Helpers for identity tests: put messages in the log, process, read back the resolved world."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from opencdp.collect.messages import Envelope, Limits, normalise
from opencdp.identity.identifiers import IdentityRules
from opencdp.log.append import LogAppender
from opencdp.process.processor import Processor
from opencdp.store.schema import (
    events,
    identities,
    identity_conflicts,
    identity_links,
    profile_events,
    profiles,
    sources,
)

RULES = IdentityRules()


def source_id(engine: sa.Engine, name: str = "test") -> int:
    from datetime import UTC, datetime

    with engine.begin() as conn:
        row = conn.execute(sa.select(sources.c.id).where(sources.c.name == name)).first()
        if row:
            return int(row[0])
        return int(
            conn.execute(
                sources.insert().values(
                    name=name, write_key_hash=name * 2, enabled=True, created_at=datetime.now(UTC)
                )
            ).inserted_primary_key[0]
        )


def log_messages(engine: sa.Engine, messages: list[dict[str, Any]]) -> None:
    """Store messages in the event log, in this order, exactly as the collector would."""
    from datetime import UTC, datetime

    sid = source_id(engine)
    rows = [normalise(dict(m), Envelope(datetime(2026, 6, 1, tzinfo=UTC)), sid, Limits()) for m in messages]
    LogAppender.for_engine(engine, RULES).append_committed(engine, rows)


def track(user: str, event: str, n: int = 0, **props: Any) -> dict[str, Any]:
    """A track message, unique per (user, event, n), at a fixed time n seconds into a minute."""
    return {
        "type": "track",
        "userId": user,
        "event": event,
        "messageId": f"{user}-{event}-{n}",
        "timestamp": f"2026-06-01T10:00:{n:02d}Z",
        "properties": props,
    }


def process(engine: sa.Engine, chunk_size: int = 500) -> None:
    Processor(engine, RULES, chunk_size=chunk_size).run_until_caught_up()


def world(engine: sa.Engine) -> dict[str, Any]:
    """The resolved state, independent of database ids: groups of identifiers with their traits."""
    with engine.connect() as conn:
        groups: dict[str, set[str]] = {}
        for row in conn.execute(sa.select(identities.c.type, identities.c.value, identities.c.profile_id)):
            groups.setdefault(row.profile_id, set()).add(f"{row.type}:{row.value}")
        live = {r.id: r for r in conn.execute(sa.select(profiles).where(profiles.c.merged_into.is_(None)))}
        message = {r.id: r.message_id for r in conn.execute(sa.select(events.c.id, events.c.message_id))}
        conflicts = {
            (message[r.event_id], r.rule, r.left_type, r.left_value, r.right_type, r.right_value)
            for r in conn.execute(sa.select(identity_conflicts))
        }
        owned: dict[str, set[str]] = {}
        for r in conn.execute(sa.select(profile_events.c.profile_id, profile_events.c.event_id)):
            owned.setdefault(r.profile_id, set()).add(message[r.event_id])
        links = {
            (
                r.profile_id,
                message[r.event_id],
                r.rule,
                r.left_type,
                r.left_value,
                r.right_type,
                r.right_value,
            )
            for r in conn.execute(sa.select(identity_links))
        }
        merged = dict(
            conn.execute(
                sa.select(profiles.c.id, profiles.c.merged_into).where(profiles.c.merged_into.is_not(None))
            ).all()
        )
    return {
        "profiles": {
            pid: {
                "identifiers": frozenset(groups.get(pid, set())),
                "traits": dict(row.traits),
                "counts": dict(row.event_counts),
                "first": row.first_seen,
                "last": row.last_seen,
                "identity_counts": {k: v for k, v in dict(row.identity_counts).items() if v},
                "events": frozenset(owned.get(pid, set())),
                "computed": row.computed,
                "consent": row.consent_meta,
            }
            for pid, row in live.items()
        },
        "conflict_count": len(conflicts),
        "conflicts": conflicts,
        "links": links,
        "merged_resolve_to_live": all(target in live for target in merged.values()),
    }


def profile_of(engine: sa.Engine, kind: str, value: str) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                sa.select(identities.c.profile_id).where(
                    identities.c.type == kind, identities.c.value == value
                )
            ).scalar_one()
        )
