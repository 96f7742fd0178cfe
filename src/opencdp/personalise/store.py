"""Experiences as data: created (disabled until enabled), changed (each change `version` + 1; no
history of older definitions is kept — the version logged with each decision says which one
decided), enabled, disabled and deleted. Every change is audited in the same transaction
(`experience.create`, `.update`, `.enable`, `.disable`, `.delete`) with ids, names, placements and
versions, never content.

The API, the CLI and the dashboard all go through here; the decide engine reads `list_enabled`
and polls `stamp` to know when to read again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.access.audit import record
from opencdp.personalise.experiences import Experience, ExperienceError, parse_experience
from opencdp.store.schema import experiences

__all__ = [
    "EnabledExperience",
    "ExperienceError",
    "ExperienceNotSaved",
    "checked",
    "create",
    "delete",
    "find_id",
    "get",
    "list_all",
    "list_enabled",
    "set_enabled",
    "stamp",
    "stored_definition",
    "update",
]


class ExperienceNotSaved(ValueError):
    """A request about experiences that cannot be done (not an invalid definition: that is an
    `ExperienceError` with its problems); `field` names the offending input, `status` the HTTP
    status it maps to (404 unknown, 409 name taken)."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status = field, message, status


@dataclass(frozen=True)
class EnabledExperience:
    """An enabled experience as the decide engine uses it: the parsed definition with the row's
    id and version (both logged with each decision)."""

    id: int
    version: int
    experience: Experience

    @property
    def name(self) -> str:
        return self.experience.name

    @property
    def placement(self) -> str:
        return self.experience.placement


#: What a JSON column (and orjson) can hold exactly.
INT_RANGE = (-(2**63), 2**64 - 1)


def checked(document: Any) -> Experience:
    """`parse_experience`, after refusing numbers no store can hold (integers beyond 64 bits, NaN,
    infinity) with their path."""
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            stack.extend((child, f"{path}.{key}" if path else str(key)) for key, child in value.items())
        elif isinstance(value, list):
            stack.extend((child, f"{path}.{i}" if path else str(i)) for i, child in enumerate(value))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int) and not INT_RANGE[0] <= value <= INT_RANGE[1]:
            raise ExperienceError([{"path": path, "problem": "integers must fit in 64 bits"}])
        elif isinstance(value, float) and not math.isfinite(value):
            raise ExperienceError([{"path": path, "problem": "numbers must be finite (no NaN or Infinity)"}])
    return parse_experience(document)


def stored_definition(experience: Experience) -> dict[str, Any]:
    """What is stored: the validated definition with its defaults spelt out (so a later change of a
    default does not change a saved experience), unset optional parts left out."""
    return experience.model_dump(mode="json", exclude_none=True)


def _out(row: sa.Row[Any]) -> dict[str, Any]:
    definition = row.definition
    return {
        "id": row.id,
        "name": row.name,
        "placement": row.placement,
        "enabled": bool(row.enabled),
        "version": row.version,
        "strategy": definition.get("strategy", "first_match"),
        "holdout_percent": definition.get("holdout_percent", 10.0),
        "priority": definition.get("priority", 0),
        "variants": [v.get("name") for v in definition.get("variants", [])],
        "definition": definition,
        "created_by": row.created_by,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def _brief(out: dict[str, Any]) -> dict[str, Any]:
    return {"name": out["name"], "placement": out["placement"], "version": out["version"]}


def _row(conn: sa.Connection, experience_id: int) -> sa.Row[Any]:
    row = None
    if 0 < experience_id < 2**31:  # beyond the column's range: no such experience (not a DataError)
        row = conn.execute(sa.select(experiences).where(experiences.c.id == experience_id)).first()
    if row is None:
        raise ExperienceNotSaved("experience", f"no experience with id {experience_id}", 404)
    return row


def find_id(conn: sa.Connection, name_or_id: str | int) -> int:
    """The id of the experience: an int is an id; text is a name, or an id when no experience has
    that name (a name may be all digits)."""
    if isinstance(name_or_id, int):
        return int(_row(conn, name_or_id).id)
    text = name_or_id.strip()
    found = conn.execute(sa.select(experiences.c.id).where(experiences.c.name == text)).scalar()
    if found is not None:
        return int(found)
    if text.isdigit() and 0 < int(text) < 2**31 and _row_exists(conn, int(text)):
        return int(text)
    raise ExperienceNotSaved("experience", f"no experience named {text!r}", 404)


def _row_exists(conn: sa.Connection, experience_id: int) -> bool:
    found = conn.execute(sa.select(experiences.c.id).where(experiences.c.id == experience_id)).first()
    return found is not None


def _name_taken(conn: sa.Connection, name: str, other_than: int | None = None) -> None:
    query = sa.select(experiences.c.id).where(experiences.c.name == name)
    if other_than is not None:
        query = query.where(experiences.c.id != other_than)
    if conn.execute(query).first():
        raise ExperienceNotSaved("name", f"an experience named {name!r} exists; change that one", 409)


def create(conn: sa.Connection, document: Any, *, actor: str, enabled: bool = False) -> dict[str, Any]:
    """Validate (`ExperienceError` with exact paths) and store a new experience, disabled unless
    `enabled` (an experience starts deciding only once someone switched it on)."""
    experience = checked(document)
    _name_taken(conn, experience.name)
    now = datetime.now(UTC)
    try:  # a concurrent create of the same name: 409, not a 500 (the transaction is rolled back)
        new_id = conn.execute(
            experiences.insert().values(
                name=experience.name,
                placement=experience.placement,
                definition=stored_definition(experience),
                enabled=enabled,
                version=1,
                created_by=actor,
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
    except sa.exc.IntegrityError:
        raise ExperienceNotSaved("name", f"an experience named {experience.name!r} exists", 409) from None
    out = get(conn, int(new_id))
    record(
        conn, actor, "experience.create", "experience", str(out["id"]), {**_brief(out), "enabled": enabled}
    )
    return out


def update(conn: sa.Connection, name_or_id: str | int, document: Any, *, actor: str) -> dict[str, Any]:
    """Replace the definition (a new version; the name and placement may change too, the name to
    one no other experience has). Enabled stays as it was."""
    experience_id = find_id(conn, name_or_id)
    experience = checked(document)
    _name_taken(conn, experience.name, other_than=experience_id)
    row = _row(conn, experience_id)
    conn.execute(
        experiences.update()
        .where(experiences.c.id == experience_id)
        .values(
            name=experience.name,
            placement=experience.placement,
            definition=stored_definition(experience),
            version=row.version + 1,
            updated_at=datetime.now(UTC),
        )
    )
    out = get(conn, experience_id)
    detail = _brief(out) if row.name == out["name"] else {**_brief(out), "renamed_from": row.name}
    record(conn, actor, "experience.update", "experience", str(experience_id), detail)
    return out


def set_enabled(conn: sa.Connection, name_or_id: str | int, enabled: bool, *, actor: str) -> dict[str, Any]:
    experience_id = find_id(conn, name_or_id)
    conn.execute(
        experiences.update()
        .where(experiences.c.id == experience_id)
        .values(enabled=enabled, updated_at=datetime.now(UTC))
    )
    out = get(conn, experience_id)
    action = "experience.enable" if enabled else "experience.disable"
    record(conn, actor, action, "experience", str(experience_id), _brief(out))
    return out


def delete(conn: sa.Connection, name_or_id: str | int, *, actor: str) -> dict[str, Any]:
    """Remove an experience (its logged decisions stay in the event log); returns what it was."""
    experience_id = find_id(conn, name_or_id)
    out = get(conn, experience_id)
    conn.execute(experiences.delete().where(experiences.c.id == experience_id))
    record(conn, actor, "experience.delete", "experience", str(experience_id), _brief(out))
    return out


def get(conn: sa.Connection, name_or_id: str | int) -> dict[str, Any]:
    """One experience by name or id (see `find_id`)."""
    if isinstance(name_or_id, int):
        return _out(_row(conn, name_or_id))
    return _out(_row(conn, find_id(conn, name_or_id)))


def list_all(conn: sa.Connection, placement: str | None = None) -> list[dict[str, Any]]:
    """Experiences by placement, then name (only one placement's when given)."""
    query = sa.select(experiences).order_by(experiences.c.placement, experiences.c.name)
    if placement is not None:
        query = query.where(experiences.c.placement == placement)
    return [_out(r) for r in conn.execute(query)]


def list_enabled(conn: sa.Connection) -> list[EnabledExperience]:
    """Every enabled experience, parsed, by placement then highest priority first. A stored
    definition that no longer parses (the language changed under it) is left out rather than
    failing every decision."""
    out = []
    for row in conn.execute(
        sa.select(experiences.c.id, experiences.c.version, experiences.c.definition)
        .where(experiences.c.enabled == sa.true())
        .order_by(experiences.c.id)
    ):
        try:
            out.append(EnabledExperience(row.id, row.version, parse_experience(row.definition)))
        except ExperienceError:
            continue
    out.sort(key=lambda e: (e.placement, -e.experience.priority, e.id))
    return out


def stamp(conn: sa.Connection) -> tuple[Any, ...]:
    """A cheap value that changes whenever any experience is created, changed, switched or deleted
    (for a cache of `list_enabled` to poll)."""
    return tuple(
        conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.max(experiences.c.id), 0),
                sa.func.coalesce(sa.func.sum(experiences.c.version), 0),
                sa.func.max(experiences.c.updated_at),
            )
        ).one()
    )
