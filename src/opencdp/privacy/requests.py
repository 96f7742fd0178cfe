"""Data subject requests: everything held about a person (access, portability), and erasure.

Erasure runs under the processing lock, after the processor has caught up, and removes the person
from every table — the event log included — then suppresses their identifiers. Events of *other*
people that mention one of the person's identifiers (a shared device, a conflicting login) are
scrubbed of it rather than deleted. The audit log gets the request without personal data.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.access.audit import record
from opencdp.identity.identifiers import Identifier, IdentityRules
from opencdp.privacy.suppression import suppress
from opencdp.process.processor import PROCESSOR, Processor
from opencdp.profiles.reader import find_profile_id, get_profile, merge_history, resolve_profile_id
from opencdp.store.dialect import lock_for_processing
from opencdp.store.schema import (
    consent_history,
    event_owners,
    events,
    identities,
    identity_conflicts,
    identity_edge_members,
    identity_edges,
    identity_links,
    profile_events,
    profiles,
    segment_memberships,
    segment_transitions,
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
    pid = find_profile_id(engine, rules, kind, value)
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


def _scrub(value: Any, needles: set[str]) -> tuple[Any, bool]:
    """Remove every string equal (case-insensitively) to one of the person's identifiers."""
    if isinstance(value, str):
        if value.strip().lower() in needles:
            return None, True
        lowered, hit = value.lower(), False
        for needle in needles:
            while needle and needle in lowered:  # an identifier inside longer text
                start = lowered.index(needle)
                value = value[:start] + "[erased]" + value[start + len(needle) :]
                lowered = value.lower()
                hit = True
        return value, hit
    if isinstance(value, dict):
        out, changed = {}, False
        for key, child in value.items():
            new, hit = _scrub(child, needles)
            changed |= hit
            if new is not None or not hit:
                out[key] = new
        return out, changed
    if isinstance(value, list):
        pairs = [_scrub(child, needles) for child in value]
        return [p[0] for p in pairs if not p[1]], any(p[1] for p in pairs)
    return value, False


def erase_person(
    engine: sa.Engine, rules: IdentityRules, kind: str, value: str, actor: str
) -> dict[str, int]:
    """Remove the person from every table and suppress their identifiers. Returns counts only."""
    Processor(engine, rules).run_until_caught_up()
    pid = find_profile_id(engine, rules, kind, value)
    with engine.begin() as conn:
        lock_for_processing(conn, PROCESSOR)
        pid = resolve_profile_id(conn, pid)
        profile_ids = {pid} | {
            r[0] for r in conn.execute(sa.select(profiles.c.id).where(profiles.c.merged_into == pid))
        }
        idents = conn.execute(
            sa.select(identities.c.id, identities.c.type, identities.c.value).where(
                identities.c.profile_id == pid
            )
        ).all()
        identity_ids = [r.id for r in idents]
        person = [Identifier(r.type, r.value) for r in idents]
        needles = {i.value.lower() for i in person}
        owned = (
            {
                r[0]
                for r in conn.execute(
                    sa.select(event_owners.c.event_id).where(event_owners.c.identity_id.in_(identity_ids))
                )
            }
            if identity_ids
            else set()
        )
        # Other events that carry one of the identifiers (or were not processed yet): scrub or delete.
        mentioned = _mentions(conn, [i.value for i in person])
        scrubbed = 0
        for event_id, payload in mentioned:
            if event_id in owned:
                continue
            clean, _changed = _scrub(payload, needles)
            if not (clean.get("userId") or clean.get("anonymousId")):
                owned.add(event_id)
                continue
            conn.execute(
                events.update()
                .where(events.c.id == event_id)
                .values(payload=clean, user_id=clean.get("userId"), anonymous_id=clean.get("anonymousId"))
            )
            facts = clean.get("properties") if isinstance(clean.get("properties"), dict) else {}
            conn.execute(
                profile_events.update().where(profile_events.c.event_id == event_id).values(properties=facts)
            )
            scrubbed += 1
        owned_list = sorted(owned)
        edge_ids = {
            r[0]
            for r in conn.execute(
                sa.select(identity_edge_members.c.edge_id).where(
                    identity_edge_members.c.identity_id.in_(identity_ids)
                )
            )
        }
        counts = {
            "events_deleted": len(owned_list),
            "events_scrubbed": scrubbed,
            "identifiers": len(person),
            "profiles": len(profile_ids),
        }
        for start in range(0, max(len(owned_list), 1), 500):
            part = owned_list[start : start + 500]
            for table, column in (
                (event_owners, event_owners.c.event_id),
                (profile_events, profile_events.c.event_id),
                (consent_history, consent_history.c.event_id),
                (events, events.c.id),
            ):
                if part:
                    conn.execute(table.delete().where(column.in_(part)))
        for table, column in (
            (identity_edge_members, identity_edge_members.c.edge_id),
            (identity_edges, identity_edges.c.id),
        ):
            if edge_ids:
                conn.execute(table.delete().where(column.in_(sorted(edge_ids))))
        pairs = [(i.type, i.value) for i in person]
        for table in (identity_links, identity_conflicts):
            if pairs:
                conn.execute(
                    table.delete().where(
                        sa.or_(
                            sa.tuple_(table.c.left_type, table.c.left_value).in_(pairs),
                            sa.tuple_(table.c.right_type, table.c.right_value).in_(pairs),
                        )
                    )
                )
        for table, column in (
            (identity_links, identity_links.c.profile_id),
            (profile_events, profile_events.c.profile_id),
            (consent_history, consent_history.c.profile_id),
            (segment_memberships, segment_memberships.c.profile_id),
            (segment_transitions, segment_transitions.c.profile_id),
            (identities, identities.c.profile_id),
            (profiles, profiles.c.id),
        ):
            conn.execute(table.delete().where(column.in_(sorted(profile_ids))))
        counts["profiles_scrubbed"] = _scrub_other_profiles(conn, needles, profile_ids)
        suppress(conn, person)
        record(conn, actor, "privacy.erase", "profile", pid, counts)
    return counts


def _mentions(conn: sa.Connection, values: Iterable[str]) -> list[tuple[int, dict[str, Any]]]:
    """Events whose ids or payload contain one of the values (a scan: erasure is rare)."""
    wanted = [v for v in values if v]
    if not wanted:
        return []
    text = sa.cast(events.c.payload, sa.Text)
    found: dict[int, dict[str, Any]] = {}
    for start in range(0, len(wanted), 50):
        part = wanted[start : start + 50]
        condition = sa.or_(
            events.c.user_id.in_(part),
            events.c.anonymous_id.in_(part),
            *(sa.func.lower(text).contains(v.lower(), autoescape=True) for v in part),
        )
        for row in conn.execute(sa.select(events.c.id, events.c.payload).where(condition)):
            found[row.id] = row.payload
    return sorted(found.items())


def _scrub_other_profiles(conn: sa.Connection, needles: set[str], erased: set[str]) -> int:
    """Other people's traits that hold one of the identifiers (e.g. a shared e-mail typed into a form)."""
    text = sa.func.lower(sa.cast(profiles.c.traits, sa.Text))
    condition = (
        sa.or_(*(text.contains(n, autoescape=True) for n in sorted(needles))) if needles else sa.false()
    )
    rows = conn.execute(
        sa.select(profiles.c.id, profiles.c.traits, profiles.c.trait_meta).where(
            condition, profiles.c.id.not_in(sorted(erased))
        )
    ).all()
    for row in rows:
        traits, _ = _scrub(row.traits, needles)
        meta = {k: v for k, v in row.trait_meta.items() if k in traits}
        conn.execute(profiles.update().where(profiles.c.id == row.id).values(traits=traits, trait_meta=meta))
    return len(rows)
