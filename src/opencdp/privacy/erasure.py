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

import orjson
import sqlalchemy as sa

from opencdp.access.audit import record
from opencdp.identity.identifiers import Identifier, IdentityRules
from opencdp.log.lock import lock_log
from opencdp.privacy.suppression import suppress
from opencdp.process.processor import PROCESSOR, Processor, read_checkpoint
from opencdp.profiles.reader import find_profile_id, resolve_profile_id
from opencdp.store.dialect import lock_for_processing, purge_deleted_content
from opencdp.store.schema import (
    account_challenges,
    account_codes,
    account_logins,
    account_recovery_codes,
    account_second_factors,
    account_sessions,
    account_skipped_questions,
    account_tokens,
    accounts,
    audience_sync_members,
    consent_history,
    deliveries,
    event_owners,
    events,
    identities,
    identity_conflicts,
    identity_edge_members,
    identity_edges,
    identity_links,
    identity_rejections,
    journey_history,
    journey_instances,
    match_candidates,
    preference_links,
    profile_events,
    profile_refresh_queue,
    profiles,
    segment_memberships,
    segment_transitions,
)


class Needles:
    """The person's identifier values as searched for in other data (lower case). Any string equal
    to one goes; e-mail addresses, phone numbers and long ids are also cut out of longer text (a
    delivery note). A short id such as user 42 is not: "42" inside other text is not the person."""

    EMBEDDED_TYPES = frozenset({"email", "phone"})
    EMBEDDED_MIN_LENGTH = 12

    def __init__(self, identifiers: Iterable[Identifier]) -> None:
        idents = list(identifiers)
        self.exact = {i.value.lower() for i in idents if i.value}
        self.embedded = {
            i.value.lower()
            for i in idents
            if i.value and (i.type in self.EMBEDDED_TYPES or len(i.value) >= self.EMBEDDED_MIN_LENGTH)
        }

    def __bool__(self) -> bool:
        return bool(self.exact)

    def patterns(self) -> list[str]:
        """Substrings of a JSON document's text (lower case) that find every mention."""
        quoted = {orjson.dumps(v).decode() for v in self.exact - self.embedded}
        return sorted(quoted | self.embedded)

    def scrub(self, value: Any) -> tuple[Any, bool]:
        """The value without the person's identifiers; and whether anything was removed."""
        if isinstance(value, str):
            if value.strip().lower() in self.exact:
                return None, True
            lowered, hit = value.lower(), False
            for needle in self.embedded:
                while needle in lowered:
                    start = lowered.index(needle)
                    value = value[:start] + "[erased]" + value[start + len(needle) :]
                    lowered = value.lower()
                    hit = True
            return value, hit
        if isinstance(value, dict):
            out, changed = {}, False
            for key, child in value.items():
                new, hit = self.scrub(child)
                changed |= hit
                if new is not None or not hit:
                    out[key] = new
            return out, changed
        if isinstance(value, list):
            pairs = [self.scrub(child) for child in value]
            return [p[0] for p in pairs if not p[1]], any(p[1] for p in pairs)
        return value, False


def _mentions(
    conn: sa.Connection, needles: Needles, after_id: int, up_to_id: int | None
) -> list[tuple[int, dict[str, Any]]]:
    """Events in (after_id, up_to_id] that carry or mention one of the person's identifiers (a
    scan: erasure is rare)."""
    if not needles:
        return []
    values, patterns = sorted(needles.exact), needles.patterns()
    text = sa.func.lower(sa.cast(events.c.payload, sa.Text))
    window = [events.c.id > after_id] + ([events.c.id <= up_to_id] if up_to_id is not None else [])
    found: dict[int, dict[str, Any]] = {}
    for start in range(0, max(len(values), len(patterns)), 50):
        condition = sa.or_(
            sa.func.lower(events.c.user_id).in_(values[start : start + 50]),
            sa.func.lower(events.c.anonymous_id).in_(values[start : start + 50]),
            *(text.contains(p, autoescape=True) for p in patterns[start : start + 50]),
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
        self.checkpoint = read_checkpoint(conn)
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
        #: events of others that mention the person: their payload without the person
        self.scrubbed: dict[int, dict[str, Any]] = {}

    @property
    def needles(self) -> Needles:
        return Needles(self.person)

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

    def sweep(self, identifiers: set[Identifier], after_id: int, up_to_id: int | None) -> set[Identifier]:
        """Handle every event in the window that mentions one of the identifiers, until no new
        identifier of the person turns up; returns the identifiers it added."""
        added: set[Identifier] = set()
        todo = identifiers
        while todo:
            before = set(self.person)
            for event_id, payload in _mentions(self.conn, Needles(todo), after_id, up_to_id):
                if event_id not in self.doomed:
                    self._handle(event_id, payload)
            todo = self.person - before
            added |= todo
        return added

    def _handle(self, event_id: int, payload: dict[str, Any]) -> None:
        if event_id > self.checkpoint:
            found = self.rules.extract(payload)
            if found and found[0] in self.person:  # the person would own it: theirs, with its identifiers
                new = set(found) - self.person
                self.person |= new - self._belongs_to_others(new)
                self.doomed.add(event_id)
                return
        clean, changed = self.needles.scrub(payload)
        if not changed:
            return  # a false alarm of the text search (e.g. a property named like the id)
        if not (clean.get("userId") or clean.get("anonymousId")):
            self.doomed.add(event_id)
            return
        self.scrubbed[event_id] = clean

    def apply(self) -> None:
        """Write what the sweeps found. Called under the log lock: a collector that re-sends an
        event being rewritten here would otherwise wait for this transaction while holding the
        lock this transaction waits for."""
        conn = self.conn
        for event_id, clean in sorted(self.scrubbed.items()):
            if event_id in self.doomed:
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
        # rejected pairs and match candidates name identifiers too (their edges go with them)
        for table in (identity_links, identity_conflicts, identity_rejections, match_candidates):
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
            (profile_refresh_queue, profile_refresh_queue.c.profile_id),
            # nothing queued for the person is sent, and no trace says where they were sent
            (deliveries, deliveries.c.profile_id),
            (audience_sync_members, audience_sync_members.c.profile_id),
            (journey_instances, journey_instances.c.profile_id),
            (journey_history, journey_history.c.profile_id),
            (identities, identities.c.profile_id),
            # links to the person's preference centre end with them
            (preference_links, preference_links.c.profile_id),
            (profiles, profiles.c.id),
        ):
            conn.execute(table.delete().where(column.in_(sorted(self.profile_ids))))
        # the person's customer accounts (their user ids): login, linked social logins, sessions,
        # codes and tokens
        account_ids = sorted(i.value for i in self.person if i.type == "user_id")
        if account_ids:
            for table, column in (
                (account_sessions, account_sessions.c.account_id),
                (account_logins, account_logins.c.account_id),
                (account_codes, account_codes.c.account_id),
                (account_tokens, account_tokens.c.account_id),
                (account_second_factors, account_second_factors.c.account_id),
                (account_recovery_codes, account_recovery_codes.c.account_id),
                (account_challenges, account_challenges.c.account_id),
                (account_skipped_questions, account_skipped_questions.c.account_id),
                (accounts, accounts.c.id),
            ):
                conn.execute(table.delete().where(column.in_(account_ids)))


def erase_person(
    engine: sa.Engine, rules: IdentityRules, kind: str, value: str, actor: str
) -> dict[str, int]:
    """Remove the person from every table and suppress their identifiers. Returns counts only."""
    processor = Processor(engine, rules)
    processor.move_intake()  # what `serve` acknowledged is in the log (log/intake.py)
    processor.run_through(processor.newest_event_id())  # the person's profile as of the request
    pid = find_profile_id(engine, rules, kind, value)
    with engine.begin() as conn:
        lock_for_processing(conn, PROCESSOR)
        erasure = _Erasure(conn, rules, resolve_profile_id(conn, pid))
        # The whole log as it stands, read while collectors keep appending...
        high = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0))).scalar_one())
        erasure.sweep(erasure.person, 0, high)
        # ...then no more appends until this commits: the tail since, the writes, the suppression list.
        lock_log(conn)
        found = erasure.sweep(erasure.person, high, None)
        while found:  # identifiers first seen in the tail: their older events too
            found = erasure.sweep(found, 0, None)
        erasure.apply()
        counts = {
            "events_deleted": len(erasure.doomed),
            "events_scrubbed": len(erasure.scrubbed.keys() - erasure.doomed),
            "identifiers": len(erasure.person),
            "profiles": len(erasure.profile_ids),
            "profiles_scrubbed": _scrub_other_profiles(conn, erasure.needles, erasure.profile_ids),
        }
        suppress(conn, erasure.person)
        record(conn, actor, "privacy.erase", "profile", erasure.pid, counts)
    # events still in the log's intake (log/intake.py) are checked against the new list as they
    # move: the person's are dropped, and deleted from the intake with the rest
    while processor.move_intake():
        pass
    processor.purge_intake()
    purge_deleted_content(engine)
    return counts


def _scrub_other_profiles(conn: sa.Connection, needles: Needles, erased: set[str]) -> int:
    """Other people's traits that hold one of the identifiers (e.g. a shared e-mail typed into a form)."""
    if not needles:
        return 0
    text = sa.func.lower(sa.cast(profiles.c.traits, sa.Text))
    rows = conn.execute(
        sa.select(profiles.c.id, profiles.c.traits, profiles.c.trait_meta).where(
            sa.or_(*(text.contains(p, autoescape=True) for p in needles.patterns())),
            profiles.c.id.not_in(sorted(erased)),
        )
    ).all()
    scrubbed = 0
    for row in rows:
        traits, changed = needles.scrub(row.traits)
        if changed:
            meta = {k: v for k, v in row.trait_meta.items() if k in traits}
            conn.execute(
                profiles.update().where(profiles.c.id == row.id).values(traits=traits, trait_meta=meta)
            )
            scrubbed += 1
    return scrubbed
