"""Computed trait definitions (built-in + stored) and writing their values onto profiles.

Each definition is evaluated in isolation (`store.failures`): one that fails (or no longer
validates) is marked failed and skipped, its previous values stay, the other traits go on.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from opencdp.config import session_gap_from_env
from opencdp.personalise.profile_sessions import session_traits
from opencdp.segments.oracle import OracleEvent
from opencdp.store import failures
from opencdp.store.schema import computed_trait_definitions, profile_events, profiles
from opencdp.traits.compute import compute, derive
from opencdp.traits.definitions import BUILT_IN, DERIVED, ComputedTrait


class TraitDefinitionError(ValueError):
    pass


def _stored(conn: sa.Connection) -> list[sa.Row[Any]]:
    return list(
        conn.execute(
            sa.select(computed_trait_definitions.c.name, computed_trait_definitions.c.definition).order_by(
                computed_trait_definitions.c.name
            )
        )
    )


def definitions(conn: sa.Connection) -> list[ComputedTrait]:
    """Built-in and custom definitions; a stored one that no longer validates is left out (it is
    marked failed when processing meets it, see `failures`)."""
    stored = []
    for row in _stored(conn):
        try:
            stored.append(ComputedTrait.model_validate(row.definition))
        except ValidationError:
            continue
    return [*BUILT_IN, *stored]


def define(engine: sa.Engine, definition: ComputedTrait) -> None:
    reserved = {d.name for d in BUILT_IN} | set(DERIVED)
    if definition.name in reserved:
        raise TraitDefinitionError(f"{definition.name!r} is a built-in trait; choose another name")
    with engine.begin() as conn:
        conn.execute(
            computed_trait_definitions.delete().where(computed_trait_definitions.c.name == definition.name)
        )
        failures.clear(conn, "trait", definition.name)  # redefined: evaluated afresh
        conn.execute(
            computed_trait_definitions.insert().values(
                name=definition.name,
                definition=definition.model_dump(mode="json"),
                created_at=datetime.now(UTC),
            )
        )


def remove(engine: sa.Engine, name: str) -> None:
    with engine.begin() as conn:
        if (
            conn.execute(
                computed_trait_definitions.delete().where(computed_trait_definitions.c.name == name)
            ).rowcount
            == 0
        ):
            raise TraitDefinitionError(f"no custom computed trait named {name!r}")
        failures.clear(conn, "trait", name)


def load_events(conn: sa.Connection, profile_ids: list[str]) -> dict[str, list[OracleEvent]]:
    out: dict[str, list[OracleEvent]] = {pid: [] for pid in profile_ids}
    for start in range(0, len(profile_ids), 500):
        part = profile_ids[start : start + 500]
        rows = conn.execute(
            sa.select(
                profile_events.c.profile_id,
                profile_events.c.name,
                profile_events.c.type,
                profile_events.c.ts,
                profile_events.c.properties,
            ).where(profile_events.c.profile_id.in_(part))
        )
        for row in rows:
            out[row.profile_id].append(OracleEvent(row.name, row.type, row.ts, row.properties))
    return out


def _session_values(
    conn: sa.Connection, events: dict[str, list[OracleEvent]], now: datetime
) -> dict[str, dict[str, Any]]:
    """The session computed traits (the gap is `OPENCDP_SESSION_GAP_MINUTES`, like the live view)."""
    gap = timedelta(minutes=session_gap_from_env())
    return {pid: session_traits(own, now, gap) for pid, own in events.items()}


def refresh_computed(
    conn: sa.Connection,
    profile_ids: Iterable[str],
    now: datetime | None = None,
    retry_failed: bool = False,
) -> int:
    """Recompute every computed trait of these (live) profiles; returns how many were written.

    A definition marked failed is skipped unless `retry_failed` (the scheduled refresh), and so is
    one that raises now (it is marked failed): either way these profiles get no value for it
    (a value that cannot be computed now would be stale; the processor rewrites the rows anyway)."""
    ids = sorted(profile_ids)
    if not ids:
        return 0
    now = now or datetime.now(UTC)
    failed = failures.failures(conn, "trait")
    sources: list[tuple[str, ComputedTrait | Any]] = [(d.name, d) for d in BUILT_IN]
    sources += [(r.name, r.definition) for r in _stored(conn)]
    events = load_events(conn, ids)
    # Most definitions count one event name: give them only those events (compute filters again).
    by_name: dict[str, dict[str | None, list[OracleEvent]]] = {}
    for pid, own in events.items():
        named = by_name[pid] = {}
        for event in own:
            named.setdefault(event.name, []).append(event)
    values: dict[str, dict[str, Any]] = {pid: {} for pid in ids}
    for name, source in sources:
        previous = failed.get(name)
        if previous is not None and not retry_failed:
            continue
        out: dict[str, Any] = {}

        def work(source: ComputedTrait | Any = source, out: dict[str, Any] = out) -> None:
            definition = source if isinstance(source, ComputedTrait) else ComputedTrait.model_validate(source)
            name = definition.filter.event
            for pid in ids:
                candidates = events[pid] if name is None else by_name[pid].get(name, [])
                value = compute(definition, candidates, now)
                if value is not None:
                    out[pid] = value

        # Pure Python over events already read: nothing to roll back, so no SAVEPOINT needed.
        if failures.attempt(conn, "trait", name, work, now, previous, savepoint=False):
            for pid, value in out.items():
                values[pid][name] = value
    for pid, found in _session_values(conn, events, now).items():
        values[pid].update(found)
    rows = [{"pid": pid, "computed": values[pid] | derive(values[pid], now), "at": now} for pid in ids]
    conn.execute(
        profiles.update()
        .where(profiles.c.id == sa.bindparam("pid"))
        .values(computed=sa.bindparam("computed"), computed_at=sa.bindparam("at")),
        rows,
    )
    return len(rows)
