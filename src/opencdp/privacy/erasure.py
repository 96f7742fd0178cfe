"""Erasure (GDPR article 17): the person leaves every table, the event log included, and stays out.

Complete the moment it reports success, for every process:
- It runs under the processing lock, so no processor applies the person's events meanwhile.
- It scans the log for the person's identifiers without blocking ingestion, then takes the log's
  append lock (`log.append`), sweeps the events committed since, and commits the suppression list
  in the same transaction. Every append after that reads the new list under the same lock, in any
  server, worker or import, so not one event of the person enters the log afterwards — not even one
  a collector accepted a moment before from a stale cache.
- Events not processed yet belong to the person when the person's identifier would own them; their
  other identifiers (a new device id, say) are the person's too, and are erased and suppressed with
  them. Events of *other* people that mention one of the identifiers (a shared device, a conflicting
  login) are scrubbed of it instead.
- On SQLite, deleted content is overwritten (`secure_delete`) and the WAL is checkpointed and
  truncated, so the database files hold no copy of the erased values.
The audit log gets the request without personal data; `rebuild` replays a log without the person.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from opencdp.access.audit import record
from opencdp.identity.identifiers import Identifier, IdentityRules
from opencdp.privacy.suppression import suppress
from opencdp.process.processor import PROCESSOR, Processor
from opencdp.profiles.reader import find_profile_id, resolve_profile_id
from opencdp.store.dialect import lock_for_processing, lock_log_for_append, purge_deleted_content
from opencdp.store.schema import (
    consent_history,
    event_owners,
    events,
    identities,
    identity_conflicts,
    identity_edge_members,
    identity_edges,
    identity_links,
    processor_state,
    profile_events,
    profiles,
    segment_memberships,
    segment_transitions,
)


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


def _mentions(
    conn: sa.Connection, values: Iterable[str], after_id: int, up_to_id: int | None
) -> list[tuple[int, dict[str, Any]]]:
    """Events in (after_id, up_to_id] whose ids or payload contain one of the values (a scan:
    erasure is rare)."""
    wanted = sorted({v for v in values if v})
    if not wanted:
        return []
    text = sa.cast(events.c.payload, sa.Text)
    window = [events.c.id > after_id] + ([events.c.id <= up_to_id] if up_to_id is not None else [])
    found: dict[int, dict[str, Any]] = {}
    for start in range(0, len(wanted), 50):
        part = wanted[start : start + 50]
        condition = sa.or_(
            events.c.user_id.in_(part),
            events.c.anonymous_id.in_(part),
            *(sa.func.lower(text).contains(v.lower(), autoescape=True) for v in part),
        )
        for row in conn.execute(sa.select(events.c.id, events.c.payload).where(condition, *window)):
            found[row.id] = row.payload
    return sorted(found.items())


class _Erasure:
    """The person being erased and what the sweeps of the log found."""

    def __init__(self, conn: sa.Connection, rules: IdentityRules, pid: str) -> None:
        self.conn, self.rules, self.pid = conn, rules, pid
        self.profile_ids = {pid} | {
            r[0] for r in conn.execute(sa.select(profiles.c.id).where(profiles.c.merged_into == pid))
        }
        rows = conn.execute(
            sa.select(identities.c.id, identities.c.type, identities.c.value).where(
                identities.c.profile_id == pid
            )
        ).all()
        self.identity_ids = [r.id for r in rows]
        self.person = {Identifier(r.type, r.value) for r in rows}
        self.checkpoint = int(
            conn.execute(
                sa.select(processor_state.c.last_event_id).where(processor_state.c.name == PROCESSOR)
            ).scalar()
            or 0
        )
        self.doomed: set[int] = (
            {
                r[0]
                for r in conn.execute(
                    sa.select(event_owners.c.event_id).where(
                        event_owners.c.identity_id.in_(self.identity_ids)
                    )
                )
            }
            if self.identity_ids
            else set()
        )
        self.scrubbed: set[int] = set()

    @property
    def needles(self) -> set[str]:
        return {i.value.lower() for i in self.person}

    def _belongs_to_others(self, candidates: set[Identifier]) -> set[Identifier]:
        if not candidates:
            return set()
        pairs = [(i.type, i.value) for i in candidates]
        return {
            Identifier(r.type, r.value)
            for r in self.conn.execute(
                sa.select(identities.c.type, identities.c.value, identities.c.profile_id).where(
                    sa.tuple_(identities.c.type, identities.c.value).in_(pairs),
                    identities.c.profile_id.is_not(None),
                )
            )
            if r.profile_id not in self.profile_ids
        }

    def sweep(self, values: set[str], after_id: int, up_to_id: int | None) -> set[str]:
        """Handle every event in the window that mentions one of the values, until no new identifier
        of the person turns up; returns the values of the identifiers it added."""
        added: set[str] = set()
        todo = values
        while todo:
            before = set(self.person)
            for event_id, payload in _mentions(self.conn, todo, after_id, up_to_id):
                if event_id not in self.doomed:
                    self._handle(event_id, payload)
            grown = {i.value.lower() for i in self.person - before}
            added |= grown
            todo = grown
        return added

    def _handle(self, event_id: int, payload: dict[str, Any]) -> None:
        if event_id > self.checkpoint:
            found = self.rules.extract(payload)
            if found and found[0] in self.person:  # the person would own it: theirs, with its identifiers
                new = set(found) - self.person
                self.person |= new - self._belongs_to_others(new)
                self.doomed.add(event_id)
                return
        clean, _changed = _scrub(payload, self.needles)
        if not (clean.get("userId") or clean.get("anonymousId")):
            self.doomed.add(event_id)
            return
        self.conn.execute(
            events.update()
            .where(events.c.id == event_id)
            .values(payload=clean, user_id=clean.get("userId"), anonymous_id=clean.get("anonymousId"))
        )
        facts = clean.get("properties") if isinstance(clean.get("properties"), dict) else {}
        self.conn.execute(
            profile_events.update().where(profile_events.c.event_id == event_id).values(properties=facts)
        )
        self.scrubbed.add(event_id)

    def delete(self) -> None:
        conn = self.conn
        doomed = sorted(self.doomed)
        for start in range(0, len(doomed), 500):
            part = doomed[start : start + 500]
            for table, column in (
                (event_owners, event_owners.c.event_id),
                (profile_events, profile_events.c.event_id),
                (consent_history, consent_history.c.event_id),
                (events, events.c.id),
            ):
                conn.execute(table.delete().where(column.in_(part)))
        if self.identity_ids:
            edge_ids = sorted(
                {
                    r[0]
                    for r in conn.execute(
                        sa.select(identity_edge_members.c.edge_id).where(
                            identity_edge_members.c.identity_id.in_(self.identity_ids)
                        )
                    )
                }
            )
            for table, column in (
                (identity_edge_members, identity_edge_members.c.edge_id),
                (identity_edges, identity_edges.c.id),
            ):
                if edge_ids:
                    conn.execute(table.delete().where(column.in_(edge_ids)))
        pairs = [(i.type, i.value) for i in self.person]
        for table in (identity_links, identity_conflicts):
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
            conn.execute(table.delete().where(column.in_(sorted(self.profile_ids))))


def erase_person(
    engine: sa.Engine, rules: IdentityRules, kind: str, value: str, actor: str
) -> dict[str, int]:
    """Remove the person from every table and suppress their identifiers. Returns counts only."""
    Processor(engine, rules).run_until_caught_up()  # fewer unprocessed events to judge
    pid = find_profile_id(engine, rules, kind, value)
    with engine.begin() as conn:
        lock_for_processing(conn, PROCESSOR)
        erasure = _Erasure(conn, rules, resolve_profile_id(conn, pid))
        # The whole log as it stands, while collectors keep appending...
        high = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0))).scalar_one())
        erasure.sweep(erasure.needles, 0, high)
        # ...then no more appends until this commits: the tail since, and the suppression list.
        lock_log_for_append(conn)
        found = erasure.sweep(erasure.needles, high, None)
        while found:  # identifiers first seen in the tail: their older events too
            found = erasure.sweep(found, 0, None)
        erasure.delete()
        counts = {
            "events_deleted": len(erasure.doomed),
            "events_scrubbed": len(erasure.scrubbed - erasure.doomed),
            "identifiers": len(erasure.person),
            "profiles": len(erasure.profile_ids),
            "profiles_scrubbed": _scrub_other_profiles(conn, erasure.needles, erasure.profile_ids),
        }
        suppress(conn, erasure.person)
        record(conn, actor, "privacy.erase", "profile", erasure.pid, counts)
    purge_deleted_content(engine)
    return counts


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
