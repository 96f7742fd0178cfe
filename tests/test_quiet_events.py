"""Quiet events (process/quiet.py): a profile changed only by the system's own `Experience Viewed`
keeps its derived state, unless a segment or computed trait reads that event; a profile such an
event creates, or one carrying traits or consent, is refreshed as any other."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from opencdp.config import Settings
from opencdp.process.quiet import quiet_name, read_by_definitions
from opencdp.segments import store as segment_store
from opencdp.store.database import open_database
from opencdp.store.schema import profile_events, profiles, segment_memberships, segments
from opencdp.traits.definitions import ComputedTrait, EventFilter
from opencdp.traits.store import define
from tests.identity_helpers import log_messages, process, profile_of, track


def _row(engine: sa.Engine, pid: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.select(profiles).where(profiles.c.id == pid)).one()


def _member(engine: sa.Engine, pid: str, segment: str) -> bool:
    with engine.connect() as conn:
        return (
            conn.execute(
                sa.select(segment_memberships.c.profile_id)
                .join(segments, segments.c.id == segment_memberships.c.segment_id)
                .where(
                    segments.c.name == segment,
                    segment_memberships.c.profile_id == pid,
                    segment_memberships.c.exited_at.is_(None),
                )
            ).first()
            is not None
        )


def test_quiet_names() -> None:
    viewed = {"type": "track", "event": "Experience Viewed", "properties": {"variant": "a"}}
    assert quiet_name("track", viewed) == "Experience Viewed"
    assert quiet_name("track", {**viewed, "event": "Order Completed"}) is None
    assert quiet_name("page", {**viewed, "type": "page"}) is None
    assert quiet_name("track", {**viewed, "context": {"traits": {"plan": "gold"}}}) is None
    assert quiet_name("track", {**viewed, "traits": {"plan": "gold"}}) is None
    consent = {"consent": {"categoryPreferences": {"marketing": True}}}
    assert quiet_name("track", {**viewed, "context": consent}) is None


def test_exposures_keep_derived_state_unless_a_definition_reads_them(settings: Settings) -> None:
    engine = open_database(settings)
    try:
        log_messages(
            engine,
            [
                {"type": "identify", "userId": "u1", "traits": {"plan": "gold"}, "messageId": "i1"},
                track("u1", "Order Completed", 0, revenue=30),
            ],
        )
        process(engine)
        pid = profile_of(engine, "user_id", "u1")
        before = _row(engine, pid)
        assert before.computed["order_count"] == 1 and before.computed_at is not None

        log_messages(engine, [track("u1", "Experience Viewed", 1, experience="hero")])
        process(engine)
        after = _row(engine, pid)
        assert after.computed_at == before.computed_at  # nothing read it: not refreshed
        assert after.last_seen > before.last_seen  # but the profile itself moved on
        with engine.connect() as conn:
            logged = conn.execute(
                sa.select(sa.func.count()).where(
                    profile_events.c.profile_id == pid, profile_events.c.name == "Experience Viewed"
                )
            ).scalar_one()
            assert logged == 1
            assert read_by_definitions(conn, {"Experience Viewed"}) == set()

        # a segment that reads exposures: the next exposure refreshes the profile
        segment_store.save(
            engine, "saw hero twice", {"event": "Experience Viewed", "count": {"op": "gte", "value": 2}}
        )
        assert not _member(engine, pid, "saw hero twice")
        log_messages(engine, [track("u1", "Experience Viewed", 2, experience="hero")])
        process(engine)
        assert _member(engine, pid, "saw hero twice")
        assert _row(engine, pid).computed_at > before.computed_at

        # a visitor an exposure makes known gets derived state like any new profile
        log_messages(
            engine,
            [{"type": "track", "anonymousId": "stranger", "event": "Experience Viewed", "messageId": "s1"}],
        )
        process(engine)
        stranger = _row(engine, profile_of(engine, "anonymous_id", "stranger"))
        assert stranger.computed is not None and stranger.computed["order_count"] == 0
    finally:
        engine.dispose()


def test_a_computed_trait_over_every_track_event_reads_exposures(settings: Settings) -> None:
    engine = open_database(settings)
    try:
        log_messages(engine, [track("u2", "Order Completed", 0, revenue=5)])
        process(engine)
        define(engine, ComputedTrait(name="track_events", kind="count", filter=EventFilter(types=["track"])))
        with engine.connect() as conn:
            assert read_by_definitions(conn, {"Experience Viewed"}) == {"Experience Viewed"}
        log_messages(engine, [track("u2", "Experience Viewed", 1)])
        process(engine)
        assert _row(engine, profile_of(engine, "user_id", "u2")).computed["track_events"] == 2
    finally:
        engine.dispose()
