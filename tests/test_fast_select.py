"""FastSelect (store/fast_select.py) gives exactly the rows SQLAlchemy gives for the same statement,
on both engines: JSON and UTC datetime columns converted, datetime parameters bound, literal and
expanding (IN) parameters rendered, NULL parameters compared as SQL does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from opencdp.config import Settings
from opencdp.store.database import open_database
from opencdp.store.fast_select import FastSelect
from opencdp.store.schema import events, profile_events, profiles
from tests.identity_helpers import log_messages, process, track

SINCE = datetime(2026, 6, 1, 10, 0, 1, tzinfo=UTC)


def _statements() -> list[tuple[sa.Select[Any], dict[str, Any]]]:
    return [
        (sa.select(profiles.c.id, profiles.c.traits, profiles.c.first_seen, profiles.c.computed), {}),
        (
            sa.select(profile_events.c.name, profile_events.c.ts, events.c.payload)
            .join(events, events.c.id == profile_events.c.event_id)
            .where(
                profile_events.c.ts >= sa.bindparam("since"),
                sa.or_(profile_events.c.name == "Order Completed", profile_events.c.name == "Product Viewed"),
                profile_events.c.type == "track",
            )
            .order_by(profile_events.c.ts),
            {"since": SINCE},
        ),
        (
            sa.select(events.c.event, events.c.timestamp).where(
                sa.or_(
                    events.c.anonymous_id == sa.bindparam("anonymous_id", type_=sa.String),
                    events.c.user_id == sa.bindparam("user_id", type_=sa.String),
                )
            ),
            {"anonymous_id": None, "user_id": "u1"},
        ),
        (sa.select(sa.select(sa.func.max(events.c.id)).scalar_subquery(), sa.literal(7)), {}),
        (sa.select(profiles.c.id).where(profiles.c.id == sa.bindparam("pid")), {"pid": "nobody"}),
    ]


def test_fast_select_matches_sqlalchemy(settings: Settings) -> None:
    engine = open_database(settings)
    try:
        log_messages(
            engine,
            [
                {"type": "identify", "userId": "u1", "traits": {"plan": "gold", "n": 3}, "messageId": "i1"},
                track("u1", "Product Viewed", 1, category="shoes"),
                track("u1", "Order Completed", 2, revenue=12.5),
                track("u2", "Order Completed", 3, revenue=1),
            ],
        )
        process(engine)
        with engine.connect() as conn:
            for statement, params in _statements():
                expected = [tuple(r) for r in conn.execute(statement, params).all()]
                got = FastSelect(statement, engine.dialect).rows(conn, params)
                assert got == expected, statement
            rows = FastSelect(_statements()[1][0], engine.dialect).rows(conn, {"since": SINCE})
            assert [r[0] for r in rows] == ["Product Viewed", "Order Completed", "Order Completed"]
            assert rows[0][1] == SINCE and rows[0][2]["properties"] == {"category": "shoes"}
            later = FastSelect(_statements()[1][0], engine.dialect).rows(
                conn, {"since": SINCE + timedelta(seconds=1)}
            )
            assert len(later) == 2
    finally:
        engine.dispose()


def test_an_in_list_is_refused_with_a_clear_error(settings: Settings) -> None:
    engine = open_database(settings)
    try:
        with pytest.raises(ValueError, match="OR-ed equalities"):
            FastSelect(sa.select(profiles.c.id).where(profiles.c.id.in_(["a", "b"])), engine.dialect)
    finally:
        engine.dispose()
