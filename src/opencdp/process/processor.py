"""The processor: reads the event log in order and keeps identities and profiles up to date.

Each chunk of events is applied in one transaction together with the checkpoint, so a crash
never applies an event twice or skips one. Processors are serialised by a lock (see
`store.dialect.lock_for_processing`); because identity resolution is order-independent
(`identity.graph`), any number of processors, a rebuild and live processing all give the same
profiles.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from opencdp import metrics
from opencdp.activation.forwarding import emit as forward
from opencdp.identity.graph import edge_rule
from opencdp.identity.identifiers import Identifier, IdentityRules
from opencdp.journeys.triggers import on_events as journey_events
from opencdp.log.intake import MOVE_LIMIT, Intake, intake_path
from opencdp.log.lock import suppression_version
from opencdp.privacy.suppression import Suppressor
from opencdp.process.chunk import Chunk
from opencdp.process.derived import enqueue, queued, refresh_queued, update_derived_state
from opencdp.process.rejections import apply_pending, has_pending, recompute_pairs
from opencdp.process.working_set import signature
from opencdp.store.dialect import insert_ignoring_duplicates, lock_for_processing
from opencdp.store.schema import DERIVED_TABLES, events, identity_rejections, processor_state, sources
from opencdp.store.write_turns import WriteTurns

PROCESSOR = "profiles"
#: the smallest chunk a write-lock budget may shrink a chunk to (per-chunk work must stay amortised)
MIN_CHUNK = 50

_NEXT_EVENTS = (
    sa.select(
        events.c.id,
        events.c.type,
        events.c.message_id,
        events.c.source_id,
        events.c.timestamp,
        events.c.payload,
        sources.c.name.label("source"),
    )
    .join(sources, sources.c.id == events.c.source_id)
    .where(events.c.id > sa.bindparam("after"))
    .order_by(events.c.id)
    .limit(sa.bindparam("limit"))
)


def _stage(name: str, since: float) -> float:
    """Count the time since `since` to a processing stage (/metrics); returns now."""
    now = time.perf_counter()
    metrics.record_stage(name, now - since)
    return now


@dataclass
class _Prepared:
    """A chunk read and parsed: the checkpoint and suppression version it was read at."""

    after: int
    version: int
    batch: list[Any]
    extracted: list[list[Identifier]]


def read_checkpoint(conn: sa.Connection) -> int:
    """The id of the last event the processor applied (0 before the first)."""
    return int(
        conn.execute(
            sa.select(processor_state.c.last_event_id).where(processor_state.c.name == PROCESSOR)
        ).scalar()
        or 0
    )


class Processor:
    """Applies the event log to identities and profiles, chunk by chunk."""

    def __init__(
        self,
        engine: sa.Engine,
        rules: IdentityRules | None = None,
        chunk_size: int = 500,
        max_hold_seconds: float | None = None,
    ) -> None:
        self.engine = engine
        self.rules = rules or IdentityRules.from_env()
        self.chunk_size = chunk_size
        #: SQLite: how long one chunk may hold the write lock that collection needs too; the chunk
        #: shrinks (down to MIN_CHUNK events) to fit, from the time per event measured so far
        self.max_hold_seconds = max_hold_seconds if engine.dialect.name == "sqlite" else None
        self._seconds_per_event: float | None = None
        self.turns = WriteTurns(engine)
        #: PostgreSQL: computed traits and memberships are refreshed by any worker, in parallel
        self.parallel_refresh = engine.dialect.name == "postgresql"
        #: SQLite: read and parse a chunk before taking the write lock, which collection needs too
        #: (PostgreSQL has no database-wide write lock; a worker that finds the identity step busy
        #: would read for nothing)
        self.read_before_lock = engine.dialect.name == "sqlite"
        #: SQLite: where `serve`'s collector commits; moved into the log before each chunk
        self._intake_path = intake_path(engine)
        self._intake: Intake | None = None
        self._suppressor = Suppressor(engine, self.rules)

    def run_once(self) -> int:
        """Process up to one chunk; returns how many events were applied (0: caught up)."""
        return self._apply_next_chunk(wait=True) or 0

    def step(self) -> int:
        """One unit of whatever work is waiting, for a worker's loop: a chunk if no other worker
        is resolving identities, then (PostgreSQL) one batch of queued profile refreshes. Returns
        the work done (events + profiles; 0: nothing to do)."""
        applied = self._apply_next_chunk(wait=not self.parallel_refresh)
        refreshed = refresh_queued(self.engine) if self.parallel_refresh else 0
        return (applied or 0) + refreshed

    def refresh_all_queued(self) -> int:
        """Refresh queued profiles until none waits (other workers may be refreshing some)."""
        total = 0
        while self.parallel_refresh:
            if n := refresh_queued(self.engine):
                total += n
                continue
            with self.engine.connect() as conn:
                if not queued(conn):
                    break
            time.sleep(0.01)  # the rest is being refreshed by another worker right now
        return total

    def move_intake(self, rounds: int = 4) -> int:
        """SQLite: move what `serve`'s collector committed to the intake into the event log
        (log/intake.py), at most `rounds` moves of MOVE_LIMIT rows; returns the rows moved."""
        if self._intake_path is None or not os.path.exists(self._intake_path):
            return 0
        if self._intake is None:
            self._intake = Intake(self._intake_path)
        total = 0
        for _ in range(rounds):
            moved = self._intake.move(self.engine, self.turns, self._suppressor)
            total += moved
            if moved < MOVE_LIMIT:
                break
        return total

    def purge_intake(self) -> None:
        """After an erasure: no old copy of a row stays in the intake's files."""
        if self._intake_path is not None and os.path.exists(self._intake_path):
            if self._intake is None:
                self._intake = Intake(self._intake_path)
            self._intake.purge()

    def intake_pending(self) -> int:
        """Rows in the intake not yet moved into the log (0 without an intake)."""
        if self._intake_path is None or not os.path.exists(self._intake_path):
            return 0
        if self._intake is None:
            self._intake = Intake(self._intake_path)
        return self._intake.pending()

    def next_chunk_size(self) -> int:
        """`chunk_size`, or fewer events where a chunk must not hold SQLite's write lock longer
        than `max_hold_seconds` (so collection gets its turns however large the backlog)."""
        if self.max_hold_seconds is None or self._seconds_per_event is None:
            return self.chunk_size
        fitting = int(self.max_hold_seconds / max(self._seconds_per_event, 1e-6))
        return max(min(MIN_CHUNK, self.chunk_size), min(self.chunk_size, fitting))

    def _measured(self, events: int, seconds: float) -> None:
        per_event = seconds / events
        previous = self._seconds_per_event
        self._seconds_per_event = per_event if previous is None else 0.7 * previous + 0.3 * per_event

    def _prepare(self, conn: sa.Connection, after: int) -> _Prepared:
        """Read and parse the next chunk: the part of the work that needs no lock."""
        version = suppression_version(conn)
        batch = list(conn.execute(_NEXT_EVENTS, {"after": after, "limit": self.next_chunk_size()}))
        extracted = [self.rules.extract(e.payload) for e in batch]
        return _Prepared(after, version, batch, extracted)

    def _apply_next_chunk(self, wait: bool) -> int | None:
        """Apply the next chunk; None if another processor holds the lock and `wait` is false.
        Returns the events applied (0 for a step that only applied rejections: none is left).

        On SQLite the chunk is read and parsed before the lock (outside the write lock, while
        collection goes on) and read again under it only if the checkpoint moved meanwhile
        (another processor) or the suppression version did (an erasure deleted or scrubbed
        events). Appends commit in id order (§12), so nothing below the newest id read is missed.
        With no new events the step still applies a waiting rejection (an undone merge); finding
        none costs one query on a tiny table."""
        clock = time.perf_counter()
        prepared: _Prepared | None = None
        if self.read_before_lock:
            if self.move_intake():
                clock = _stage("intake", clock)
            with self.engine.connect() as conn:
                prepared = self._prepare(conn, read_checkpoint(conn))
                if not prepared.batch and not has_pending(conn):
                    return 0
            clock = _stage("read", clock)
        with self.turns.turn(), self.engine.begin() as conn:
            if not lock_for_processing(conn, PROCESSOR, wait=wait):
                return None
            locked = time.perf_counter()
            last = conn.execute(
                sa.select(processor_state.c.last_event_id).where(processor_state.c.name == PROCESSOR)
            ).scalar()
            if last is None:  # the first run, or after a reset
                conn.execute(
                    insert_ignoring_duplicates(conn.dialect.name, processor_state, ["name"]),
                    [{"name": PROCESSOR, "last_event_id": 0}],
                )
                last = 0
            clock = _stage("wait", clock)
            if prepared is None or last != prepared.after or suppression_version(conn) != prepared.version:
                prepared = self._prepare(conn, last)
                if not prepared.batch and not has_pending(conn):
                    return 0
                clock = _stage("read", clock)
            batch, extracted = prepared.batch, prepared.extracted
            chunk = Chunk(conn, self.rules)
            chunk.load_rejections()
            chunk.preload(
                {i for ids in extracted for i in ids} | chunk.rejected,
                {
                    signature(ids, edge_rule(e.type, e.payload, e.source))
                    for e, ids in zip(batch, extracted, strict=True)
                    if ids
                },
            )
            apply_pending(chunk)  # before the events: they are resolved with every rejection
            first_seen: dict[Identifier, int] = {}
            for event, ids in zip(batch, extracted, strict=True):
                for ident in ids:
                    first_seen.setdefault(ident, event.id)
            chunk.insert_identities(first_seen)
            for event, ids in zip(batch, extracted, strict=True):
                chunk.apply(event, ids)
            clock = _stage("identity", clock)
            chunk.flush()
            # what acts on these events, decided in this transaction: forwarding, journeys
            forward(conn, batch, chunk.event_profiles)
            journey_events(conn, batch, chunk.event_profiles)
            clock = _stage("write", clock)
            self._derived(conn, chunk.derived_touched())
            clock = _stage("derived", clock)
            if batch:
                conn.execute(
                    processor_state.update()
                    .where(processor_state.c.name == PROCESSOR)
                    .values(last_event_id=batch[-1].id)
                )
        _stage("commit", clock)
        if not batch:
            return 0
        self._measured(len(batch), time.perf_counter() - locked)
        metrics.record_processed(len(batch))
        return len(batch)

    def _derived(self, conn: sa.Connection, touched: set[str]) -> None:
        """Computed traits and memberships of the profiles a step touched: queued for any worker
        (PostgreSQL) or refreshed in this transaction (SQLite)."""
        if self.parallel_refresh:
            enqueue(conn, touched)
        else:
            update_derived_state(conn, touched)

    def allow_again(self, rejection_id: int) -> set[str] | None:
        """Withdraw a rejection: under the processing lock, delete it and resolve its identifiers'
        component again without it (the same path as applying one). Returns the component's live
        profiles, None if no such rejection."""
        with self.turns.turn(), self.engine.begin() as conn:
            lock_for_processing(conn, PROCESSOR, wait=True)
            row = conn.execute(
                sa.select(identity_rejections).where(identity_rejections.c.id == rejection_id)
            ).first()
            if row is None:
                return None
            conn.execute(identity_rejections.delete().where(identity_rejections.c.id == rejection_id))
            chunk = Chunk(conn, self.rules)
            chunk.load_rejections()
            chunk.preload(set(chunk.rejected), set())
            pair = (Identifier(row.left_type, row.left_value), Identifier(row.right_type, row.right_value))
            live = recompute_pairs(chunk, [pair])
            apply_pending(chunk)
            self._derived(conn, chunk.derived_touched())
        return live

    def run_until_caught_up(self) -> int:
        """Process every waiting event and refresh every queued profile; returns the events."""
        total = 0
        while n := self.run_once():
            total += n
        self.refresh_all_queued()
        return total

    def run_through(self, event_id: int) -> None:
        """Process at least up to `event_id` (others may help); unlike `run_until_caught_up` this
        ends under a steady stream of new events."""
        while self.checkpoint() < event_id and self.run_once():
            pass
        self.refresh_all_queued()

    def newest_event_id(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0))).scalar_one())

    def checkpoint(self) -> int:
        with self.engine.connect() as conn:
            return read_checkpoint(conn)

    def backlog(self) -> int:
        last = self.checkpoint()
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(events).where(events.c.id > last)
                ).scalar_one()
            )


def reset_derived_state(engine: sa.Engine) -> None:
    """Forget every identity and profile; the log stays. The next processing rebuilds them."""
    with engine.begin() as conn:
        for table in reversed(DERIVED_TABLES):
            conn.execute(table.delete())
