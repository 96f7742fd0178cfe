"""The processor: reads the event log in order and keeps identities and profiles up to date.

Each chunk of events is applied in one transaction together with the checkpoint, so a crash
never applies an event twice or skips one. Processors are serialised by a lock (see
`store.dialect.lock_for_processing`); because identity resolution is order-independent
(`identity.graph`), any number of processors, a rebuild and live processing all give the same
profiles.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from opencdp.identity.identifiers import Identifier, IdentityRules
from opencdp.process.chunk import Chunk
from opencdp.process.working_set import signature
from opencdp.store.dialect import insert_ignoring_duplicates, lock_for_processing
from opencdp.store.schema import DERIVED_TABLES, events, processor_state, profiles, sources
from opencdp.store.write_turns import WriteTurns

PROCESSOR = "profiles"


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

    def __init__(self, engine: sa.Engine, rules: IdentityRules | None = None, chunk_size: int = 500) -> None:
        self.engine = engine
        self.rules = rules or IdentityRules.from_env()
        self.chunk_size = chunk_size
        self.turns = WriteTurns(engine)

    def run_once(self) -> int:
        """Process up to one chunk; returns how many events were applied (0: caught up)."""
        with self.turns.turn():
            applied = self._apply_next_chunk()
        if applied:
            self.turns.yield_turn()
        return applied

    def _apply_next_chunk(self) -> int:
        with self.engine.begin() as conn:
            lock_for_processing(conn, PROCESSOR)
            last = conn.execute(
                sa.select(processor_state.c.last_event_id).where(processor_state.c.name == PROCESSOR)
            ).scalar()
            if last is None:  # the first run, or after a reset
                conn.execute(
                    insert_ignoring_duplicates(conn.dialect.name, processor_state, ["name"]),
                    [{"name": PROCESSOR, "last_event_id": 0}],
                )
                last = 0
            batch = conn.execute(
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
                .where(events.c.id > last)
                .order_by(events.c.id)
                .limit(self.chunk_size)
            ).all()
            if not batch:
                return 0
            chunk = Chunk(conn, self.rules)
            extracted = [self.rules.extract(e.payload) for e in batch]
            chunk.preload(
                {i for ids in extracted for i in ids},
                {
                    signature(ids, "alias" if e.type == "alias" else "same_event")
                    for e, ids in zip(batch, extracted, strict=True)
                    if ids
                },
            )
            first_seen: dict[Identifier, int] = {}
            for event, ids in zip(batch, extracted, strict=True):
                for ident in ids:
                    first_seen.setdefault(ident, event.id)
            chunk.insert_identities(first_seen)
            for event, ids in zip(batch, extracted, strict=True):
                chunk.apply(event, ids)
            chunk.flush()
            update_derived_state(conn, chunk.touched)
            conn.execute(
                processor_state.update()
                .where(processor_state.c.name == PROCESSOR)
                .values(last_event_id=batch[-1].id)
            )
        return len(batch)

    def run_until_caught_up(self) -> int:
        total = 0
        while n := self.run_once():
            total += n
        return total

    def run_through(self, event_id: int) -> None:
        """Process at least up to `event_id` (others may help); unlike `run_until_caught_up` this
        ends under a steady stream of new events."""
        while self.checkpoint() < event_id and self.run_once():
            pass

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


def update_derived_state(conn: sa.Connection, touched: set[str], now: datetime | None = None) -> None:
    """Computed traits and segment memberships of the profiles a chunk changed, in its transaction."""
    from opencdp.segments.memberships import refresh_segments
    from opencdp.traits.store import refresh_computed

    if not touched:
        return
    live = {
        r[0]
        for r in conn.execute(
            sa.select(profiles.c.id).where(
                profiles.c.id.in_(sorted(touched)), profiles.c.merged_into.is_(None)
            )
        )
    }
    now = now or datetime.now(UTC)
    refresh_computed(conn, live, now)
    refresh_segments(conn, touched, now)


def reset_derived_state(engine: sa.Engine) -> None:
    """Forget every identity and profile; the log stays. The next processing rebuilds them."""
    with engine.begin() as conn:
        for table in reversed(DERIVED_TABLES):
            conn.execute(table.delete())
