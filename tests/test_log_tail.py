"""LogTail (personalise/log_tail.py): a decision's view of the visitor's unprocessed events, read
incrementally between decisions, equals a fresh scan of the log's tail: new events are seen at
the next decision, processed ones leave, the window bounds it, and an erasure empties it."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from opencdp.config import Settings
from opencdp.log.lock import bump_suppression_version
from opencdp.personalise.log_tail import LogTail
from opencdp.store.database import open_database
from opencdp.store.schema import events
from tests.identity_helpers import log_messages, process

SINCE = datetime(2026, 1, 1, tzinfo=UTC)


def _page(anon: str, n: int, user: str | None = None) -> dict[str, object]:
    message: dict[str, object] = {
        "type": "page",
        "anonymousId": anon,
        "name": f"page {n}",
        "messageId": f"{anon}-{n}",
        "timestamp": f"2026-06-01T10:00:{n:02d}Z",
    }
    if user:
        message["userId"] = user
    return message


def test_the_tail_follows_the_log(settings: Settings) -> None:
    engine = open_database(settings)
    tail = LogTail(engine.dialect, window=1000)

    def seen(anon: str | None, user: str | None = None) -> list[str | None]:
        with engine.connect() as conn:
            return [e.name for e in tail.events_for(conn, anon, user, SINCE)]

    try:
        log_messages(engine, [_page("a", 1), _page("b", 2)])
        assert seen("a") == ["page 1"] and seen("b") == ["page 2"] and seen("c") == []
        log_messages(
            engine,
            [
                _page("a", 3),
                {"type": "track", "anonymousId": "a", "event": "Experience Viewed", "messageId": "x"},
                _page("z", 4, user="u1"),
            ],
        )
        assert seen("a") == ["page 1", "page 3"]  # read since the last call; exposures are not activity
        assert seen(None, "u1") == ["page 4"] and seen("a", "u1") == ["page 1", "page 3", "page 4"]

        process(engine)  # the processor has passed every one of them: they are the profile's now
        assert seen("a") == [] and seen(None, "u1") == []
        log_messages(engine, [_page("a", 5)])
        assert seen("a") == ["page 5"]

        # an erasure: the suppression version changes, and what was kept goes
        with engine.begin() as conn:
            conn.execute(events.delete().where(events.c.anonymous_id == "a", events.c.id > 0))
            bump_suppression_version(conn)
        log_messages(engine, [_page("b", 6)])
        assert seen("a") == [] and seen("b") == ["page 6"]
    finally:
        engine.dispose()


def test_the_window_bounds_the_tail(settings: Settings) -> None:
    engine = open_database(settings)
    tail = LogTail(engine.dialect, window=3)
    try:
        log_messages(engine, [_page("a", n) for n in range(1, 6)])
        with engine.connect() as conn:
            assert [e.name for e in tail.events_for(conn, "a", None, SINCE)] == ["page 3", "page 4", "page 5"]
            assert (
                tail.events_for(conn, "a", None, datetime(2026, 6, 1, 10, 0, 5, tzinfo=UTC))[0].name
                == "page 5"
            )
            newest = conn.execute(sa.select(sa.func.max(events.c.id))).scalar_one()
        log_messages(engine, [_page("a", 6)])
        with engine.connect() as conn:
            assert [e.name for e in tail.events_for(conn, "a", None, SINCE)] == ["page 4", "page 5", "page 6"]
            assert conn.execute(sa.select(sa.func.max(events.c.id))).scalar_one() == newest + 1
    finally:
        engine.dispose()
