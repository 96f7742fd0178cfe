"""Computed trait definitions (built-in + stored) and writing their values onto profiles."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.segments.oracle import OracleEvent
from opencdp.store.schema import computed_trait_definitions, profile_events, profiles
from opencdp.traits.compute import compute_all
from opencdp.traits.definitions import BUILT_IN, DERIVED, ComputedTrait


class TraitDefinitionError(ValueError):
    pass


def definitions(conn: sa.Connection) -> list[ComputedTrait]:
    stored = [
        ComputedTrait.model_validate(r.definition)
        for r in conn.execute(
            sa.select(computed_trait_definitions).order_by(computed_trait_definitions.c.name)
        )
    ]
    return [*BUILT_IN, *stored]


def define(engine: sa.Engine, definition: ComputedTrait) -> None:
    reserved = {d.name for d in BUILT_IN} | set(DERIVED)
    if definition.name in reserved:
        raise TraitDefinitionError(f"{definition.name!r} is a built-in trait; choose another name")
    with engine.begin() as conn:
        conn.execute(
            computed_trait_definitions.delete().where(computed_trait_definitions.c.name == definition.name)
        )
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


def refresh_computed(
    conn: sa.Connection,
    profile_ids: Iterable[str],
    now: datetime | None = None,
    defs: list[ComputedTrait] | None = None,
) -> int:
    """Recompute every computed trait of these (live) profiles; returns how many were written."""
    ids = sorted(profile_ids)
    if not ids:
        return 0
    now = now or datetime.now(UTC)
    defs = defs if defs is not None else definitions(conn)
    events = load_events(conn, ids)
    rows: list[dict[str, Any]] = [
        {"pid": pid, "computed": compute_all(defs, events[pid], now)} for pid in ids
    ]
    conn.execute(
        profiles.update()
        .where(profiles.c.id == sa.bindparam("pid"))
        .values(computed=sa.bindparam("computed")),
        rows,
    )
    return len(rows)
