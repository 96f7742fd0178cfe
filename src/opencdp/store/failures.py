"""Definitions (segments, computed traits) that failed to evaluate, and running one in isolation.

One bad definition must not stop processing for everyone: each is evaluated in its own SAVEPOINT;
if it raises, only its work is rolled back, it is recorded here as failed (error, time) and
skipped by live processing until it is saved again or a scheduled refresh evaluates it. The
failures are shown by the API, the CLI, the dashboard and `/api/health`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from pydantic import ValidationError

from opencdp import logs
from opencdp.store.dialect import insert_ignoring_duplicates
from opencdp.store.schema import definition_failures

log = logs.get("opencdp.definitions")

Kind = Literal["segment", "trait"]
#: How the kinds are called in messages.
LABELS: dict[str, str] = {"segment": "segment", "trait": "computed trait"}
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Failure:
    kind: str
    name: str
    error: str
    failed_at: datetime


def failures(conn: sa.Connection, kind: Kind | None = None) -> dict[str, Failure]:
    """Current failures by name (of one kind), or by "kind:name" (all kinds)."""
    stmt = sa.select(definition_failures).order_by(definition_failures.c.kind, definition_failures.c.name)
    if kind is not None:
        stmt = stmt.where(definition_failures.c.kind == kind)
    rows = [Failure(r.kind, r.name, r.error, r.failed_at) for r in conn.execute(stmt)]
    return {(f.name if kind else f"{f.kind}:{f.name}"): f for f in rows}


def clear(conn: sa.Connection, kind: Kind, name: str) -> None:
    conn.execute(
        definition_failures.delete().where(
            definition_failures.c.kind == kind, definition_failures.c.name == name
        )
    )


def record(conn: sa.Connection, kind: Kind, name: str, error: str, now: datetime) -> str | None:
    """Store the failure; returns the error stored before it (None: it starts failing now).

    Several workers may meet the same failure at once (PostgreSQL refreshes profiles in parallel):
    the insert waits for the other's commit and then finds its row, so only one of them reports a
    new failure and none fails on the duplicate key."""
    first = conn.execute(
        insert_ignoring_duplicates(conn.dialect.name, definition_failures, ["kind", "name"])
        .values(kind=kind, name=name, error=error, failed_at=now)
        .returning(definition_failures.c.name)
    ).first()
    if first is not None:
        return None
    where = (definition_failures.c.kind == kind, definition_failures.c.name == name)
    before = conn.execute(sa.select(definition_failures.c.error).where(*where)).scalar()
    conn.execute(definition_failures.update().where(*where).values(error=error, failed_at=now))
    return before


def describe(exc: BaseException) -> str:
    """One line for people: the database's own message without the (possibly huge) SQL."""
    if isinstance(exc, ValidationError):
        text = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors())
        return _shorten(f"invalid definition: {text}")
    orig = getattr(exc, "orig", None)
    cause = orig if isinstance(orig, BaseException) else exc
    text = " ".join(str(cause).split()) or type(cause).__name__
    return _shorten(f"{type(cause).__name__}: {text}")


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def attempt(
    conn: sa.Connection,
    kind: Kind,
    name: str,
    work: Callable[[], object],
    now: datetime,
    previous: Failure | None,
    savepoint: bool = True,
) -> bool:
    """Run one definition's work; True if it succeeded (a previous failure is then cleared).

    On any exception only this work is rolled back (SAVEPOINT), the failure is recorded and logged:
    with a traceback when the definition starts failing (or fails differently), else in one line.
    `savepoint=False` is for work that writes nothing (pure Python over rows already read)."""
    try:
        if savepoint:
            with conn.begin_nested():
                work()
        else:
            work()
    except Exception as exc:
        error = describe(exc)
        label = LABELS[kind]
        if record(conn, kind, name, error, now) != error:
            statement = getattr(exc, "statement", None)
            if isinstance(statement, str) and len(statement) > 2000:  # the traceback, not the SQL
                exc.statement = statement[:2000] + " …"  # type: ignore[attr-defined]
            log.exception(f"{label} failed to evaluate; skipped until it is fixed", name=name, error=error)
        elif previous is not None:
            log.warning(f"{label} still fails to evaluate", name=name, error=error)
        else:  # another worker met the same failure at the same moment and reported it
            log.debug(f"{label} failed to evaluate", name=name, error=error)
        return False
    if previous is not None:
        clear(conn, kind, name)
        log.info(f"{LABELS[kind]} evaluates again", name=name)
    return True
