"""The event log's fast insert stores exactly what an `events.insert()` through SQLAlchemy stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from opencdp.access.keys import create_source
from opencdp.log.append import LogAppender
from opencdp.store.dialect import RawJSON
from opencdp.store.schema import events
from opencdp.system import OpenCDP

BERLIN = timezone(timedelta(hours=2))


def _rows(source_id: int, prefix: str) -> list[dict[str, Any]]:
    received = datetime(2026, 12, 1, 16, 30, 15, 123456, tzinfo=UTC)
    return [
        {
            "source_id": source_id,
            "message_id": f"{prefix}-1",
            "type": "track",
            "event": "Viewed ✓",
            "user_id": "u1",
            "anonymous_id": None,
            "received_at": received,
            "sent_at": received - timedelta(seconds=1),
            "original_timestamp": datetime(2026, 12, 1, 18, 30, 0, tzinfo=BERLIN),
            "timestamp": datetime(1900, 1, 1, tzinfo=UTC),
            "payload": RawJSON('{"type":"track","a":[1,2.5,"x"],"b":{"c":null}}'),
        },
        {
            "source_id": source_id,
            "message_id": f"{prefix}-2",
            "type": "identify",
            "event": None,
            "user_id": None,
            "anonymous_id": "a1",
            "received_at": received,
            "sent_at": None,
            "original_timestamp": None,
            "timestamp": datetime(2199, 12, 31, 23, 59, 59, tzinfo=BERLIN),
            "payload": {"type": "identify", "traits": {"name": "Zoë", "n": 2**40}},
        },
    ]


_STORED = (
    "SELECT source_id, type, event, user_id, anonymous_id, CAST(received_at AS TEXT), "
    "CAST(sent_at AS TEXT), CAST(original_timestamp AS TEXT), CAST(timestamp AS TEXT), "
    "CAST(payload AS TEXT) FROM events WHERE message_id LIKE ? ORDER BY message_id"
)


def _stored(conn: sa.Connection, prefix: str) -> list[tuple[Any, ...]]:
    sql = _STORED if conn.dialect.name == "sqlite" else _STORED.replace("?", "%s")
    return [tuple(r) for r in conn.exec_driver_sql(sql, (prefix + "-%",)).all()]


@pytest.mark.parametrize("checked_version", [None, 0])
def test_fast_insert_stores_what_sqlalchemy_stores(cdp: OpenCDP, checked_version: int | None) -> None:
    source = create_source(cdp.engine, "web")[0]
    with cdp.engine.begin() as conn:
        conn.execute(events.insert(), _rows(source.id, "orm"))
    appender = LogAppender.for_engine(cdp.engine)
    with cdp.engine.begin() as conn:
        appended = appender.append(conn, _rows(source.id, "fast"), checked_version, count=True)
    assert appended.written == 2 and appended.suppressed == 0
    with cdp.engine.connect() as conn:
        assert _stored(conn, "fast") == _stored(conn, "orm")
        assert len(_stored(conn, "fast")) == 2
    # duplicates are skipped and not counted
    again = appender.append_committed(cdp.engine, _rows(source.id, "fast"), count=True)
    assert again.written == 0


def test_fast_insert_refuses_naive_times(cdp: OpenCDP) -> None:
    source = create_source(cdp.engine, "web")[0]
    rows = _rows(source.id, "naive")
    rows[0]["sent_at"] = datetime(2026, 1, 1)
    with pytest.raises(ValueError, match="naive"):
        LogAppender.for_engine(cdp.engine).append_committed(cdp.engine, rows)
