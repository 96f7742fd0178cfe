"""The log's unprocessed tail as decisions see it: kept between decisions, read incrementally.

A decision counts the visitor's events the processor has not reached yet (the page view sent a
moment before it). Scanning every unprocessed event for each decision cost most of a decision
under load: hundreds of rows, most of them other visitors' `Experience Viewed`, read again from
pages a busy writer had just changed. `LogTail` keeps the unprocessed *activity* of every visitor
in memory and reads only the ids appended since the previous decision, so each decision reads a
handful of new rows. It reads the database, so events other processes append count as well. What
it keeps is dropped once the processor has passed it, when it falls out of the newest `window`
ids, and when an erasure changes the suppression version (an erased visitor's events leave with
it at once).

On SQLite under `serve` the newest events wait in the log's intake (`log/intake.py`) until the
processor moves them into the log; they are read from there too, and dropped once the move's
mark says they are in the log. The intake is read *before* the log's position: a row moved in
between is then in the log the position sees, and one not moved yet was still in the intake.
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from opencdp.log.intake import MARK as INTAKE_MARK
from opencdp.log.intake import IntakeReader, intake_path, stored_time
from opencdp.log.lock import LOCK_ROW
from opencdp.personalise.sessions import NOT_ACTIVITY, SESSION_TYPES, SessionEvent, activity
from opencdp.store.dialect import json_deserializer
from opencdp.store.fast_select import FastSelect
from opencdp.store.schema import events, processor_state, settings_store

_POSITION = sa.select(
    sa.select(processor_state.c.last_event_id).where(processor_state.c.name == "profiles").scalar_subquery(),
    sa.select(sa.func.max(events.c.id)).scalar_subquery(),
    sa.select(settings_store.c.value).where(settings_store.c.name == LOCK_ROW).scalar_subquery(),
    sa.select(settings_store.c.value).where(settings_store.c.name == INTAKE_MARK).scalar_subquery(),
)
_INTAKE_ACTIVITY = (
    "SELECT id, anonymous_id, user_id, type, timestamp, payload FROM intake WHERE id > ? "
    f"AND type IN ({', '.join('?' for _ in SESSION_TYPES)}) "
    f"AND (event IS NULL OR event NOT IN ({', '.join('?' for _ in NOT_ACTIVITY)})) ORDER BY id"
)
_NEW_ACTIVITY = sa.select(
    events.c.id, events.c.anonymous_id, events.c.user_id, events.c.type, events.c.timestamp, events.c.payload
).where(
    events.c.id > sa.bindparam("after"),
    events.c.id <= sa.bindparam("upto"),
    activity(events.c.type, events.c.event),
)


def payload_of(value: Any) -> dict[str, Any]:
    if isinstance(value, str | bytes):
        value = json_deserializer(value)
    return value if isinstance(value, dict) else {}


def session_event(
    call_type: str, ts: datetime, payload: dict[str, Any], properties: Any = None
) -> SessionEvent:
    props = properties if isinstance(properties, dict) else payload.get("properties")
    ctx = payload.get("context")
    name = payload.get("event") if call_type == "track" else payload.get("name")
    return SessionEvent(
        ts=ts,
        type=call_type,
        name=name if isinstance(name, str) else None,
        properties=props if isinstance(props, dict) else {},
        context=ctx if isinstance(ctx, dict) else {},
    )


class LogTail:
    """The unprocessed activity of the newest `window` ids, by visitor; one per server process."""

    def __init__(self, dialect: sa.engine.Dialect, window: int) -> None:
        self.window = window
        self._position = FastSelect(_POSITION, dialect)
        self._new = FastSelect(_NEW_ACTIVITY, dialect)
        self._lock = threading.Lock()
        self._upto = 0  # every id up to this one has been read (or is below the floor)
        self._version: Any = None
        self._kept: deque[tuple[int, str | None, str | None, SessionEvent]] = deque()
        #: what waits in the log's intake, by intake id (SQLite under `serve`)
        self._intake: IntakeReader | None = None
        self._intake_kept: deque[tuple[int, str | None, str | None, SessionEvent]] = deque()
        self._intake_upto = 0

    def events_for(
        self, conn: sa.Connection, anonymous_id: str | None, user_id: str | None, since: datetime
    ) -> list[SessionEvent]:
        """The visitor's unprocessed activity since `since`, oldest first."""
        with self._lock:
            self._read_intake(conn)  # first: see the module's docstring
            position = self._position.first(conn)
            checkpoint, newest, version, mark = position if position is not None else (None,) * 4
            self._read_log(conn, checkpoint, newest, version)
            self._drop_moved(mark)
            return [
                event
                for _eid, anon, user, event in (*self._kept, *self._intake_kept)
                if event.ts >= since
                and (
                    (anonymous_id is not None and anon == anonymous_id)
                    or (user_id is not None and user == user_id)
                )
            ]

    def _read_log(self, conn: sa.Connection, checkpoint: Any, newest: Any, version: Any) -> None:
        """Bring the kept log tail up to `newest` (the caller holds the lock)."""
        if newest is None or (checkpoint is not None and checkpoint >= newest):
            self._kept.clear()
            self._upto = newest or 0
            return
        floor = max(checkpoint or 0, newest - self.window)
        if version != self._version or self._upto > newest or self._upto < floor:
            # an erasure, a log that went back (a reset), or a tail that has moved past us
            self._kept.clear()
            self._intake_kept.clear()  # an erasure: the intake's rows are read again, checked
            self._upto, self._version = floor, version
        if newest > self._upto:
            for eid, anon, user, kind, ts, payload in self._new.rows(
                conn, {"after": self._upto, "upto": newest}
            ):
                self._kept.append((eid, anon, user, session_event(kind, ts, payload_of(payload))))
            self._upto = newest
        while self._kept and self._kept[0][0] <= floor:
            self._kept.popleft()

    def _read_intake(self, conn: sa.Connection) -> None:
        """The activity that arrived in the intake since the last read (none without one)."""
        if self._intake is None:
            path = intake_path(conn.engine)
            if path is None:
                return
            self._intake = IntakeReader(path)
        rows = self._intake.rows(_INTAKE_ACTIVITY, (self._intake_upto, *SESSION_TYPES, *NOT_ACTIVITY))
        if rows is None:  # no intake (any more): nothing waits there
            self._intake_kept.clear()
            self._intake_upto = 0
            return
        for iid, anon, user, kind, ts, payload in rows:
            self._intake_kept.append(
                (iid, anon, user, session_event(kind, stored_time(ts), payload_of(payload)))
            )
            self._intake_upto = iid
        while len(self._intake_kept) > self.window:
            self._intake_kept.popleft()

    def _drop_moved(self, mark: str | None) -> None:
        """Forget the intake's rows the log holds now (the move's mark, of this intake file)."""
        if self._intake is None or not self._intake_kept:
            return
        moved = self._intake.moved_through(mark)
        while self._intake_kept and self._intake_kept[0][0] <= moved:
            self._intake_kept.popleft()
