"""Surveys kept as data: saved (created or replaced by name), listed, enabled and disabled, removed.
A disabled survey keeps its definition but is not shown to customers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.accounts.surveys import Survey, parse_survey
from opencdp.store.schema import surveys


class SurveyNotFound(LookupError):
    pass


def _out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "enabled": row.enabled,
        "definition": row.definition,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def save_survey(engine: sa.Engine, definition: Any, actor: str | None) -> tuple[dict[str, Any], bool]:
    """Create the survey, or replace the definition of the one with its name (answers already
    given stay on the profiles). Returns the stored survey and whether it was created. A new survey
    starts enabled."""
    survey = parse_survey(definition)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        existing = conn.execute(sa.select(surveys.c.id).where(surveys.c.name == survey.name)).scalar()
        if existing is None:
            conn.execute(
                surveys.insert().values(
                    name=survey.name,
                    definition=survey.as_dict(),
                    enabled=True,
                    created_by=actor,
                    created_at=now,
                    updated_at=now,
                )
            )
        else:
            conn.execute(
                surveys.update()
                .where(surveys.c.id == existing)
                .values(definition=survey.as_dict(), updated_at=now)
            )
        row = conn.execute(sa.select(surveys).where(surveys.c.name == survey.name)).one()
    return _out(row), existing is None


def list_surveys(engine: sa.Engine, enabled_only: bool = False) -> list[dict[str, Any]]:
    stmt = sa.select(surveys).order_by(surveys.c.name)
    if enabled_only:
        stmt = stmt.where(surveys.c.enabled == sa.true())
    with engine.connect() as conn:
        return [_out(r) for r in conn.execute(stmt)]


def get_survey(engine: sa.Engine, name: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(sa.select(surveys).where(surveys.c.name == name)).first()
    if row is None:
        raise SurveyNotFound(f"no survey {name!r}")
    return _out(row)


def enabled_survey(engine: sa.Engine, name: str) -> Survey:
    """The survey a customer may answer; SurveyNotFound if unknown or disabled."""
    stored = get_survey(engine, name)
    if not stored["enabled"]:
        raise SurveyNotFound(f"no survey {name!r}")
    return parse_survey(stored["definition"])


def set_enabled(engine: sa.Engine, name: str, enabled: bool) -> dict[str, Any]:
    with engine.begin() as conn:
        done = conn.execute(
            surveys.update()
            .where(surveys.c.name == name)
            .values(enabled=enabled, updated_at=datetime.now(UTC))
        ).rowcount
    if not done:
        raise SurveyNotFound(f"no survey {name!r}")
    return get_survey(engine, name)


def remove_survey(engine: sa.Engine, name: str) -> None:
    with engine.begin() as conn:
        if not conn.execute(surveys.delete().where(surveys.c.name == name)).rowcount:
            raise SurveyNotFound(f"no survey {name!r}")
