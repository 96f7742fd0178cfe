"""Stored prediction models and the predicted traits they write.

A model row holds its options (to refit), its latest fit (parameters, quality, window — JSON, no
pickles) and its last scoring run. Scores go to `profiles.predicted` in batches, each merged with
the traits other models wrote and each its own short transaction, so processing goes on between
batches; a profile the run did not score loses this model's traits (it no longer qualifies, e.g.
it was merged away), so a segment never selects on a stale score.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import sqlalchemy as sa

from opencdp.predict.model import Fitted
from opencdp.store.dialect import json_present
from opencdp.store.schema import prediction_models, profiles

#: Profiles written per transaction.
BATCH = 5000
#: Refit a model after this many days by default (scores are refreshed daily with the current fit).
DEFAULT_REFIT_DAYS = 30


class ModelNotFound(LookupError):
    pass


@dataclass
class ModelRecord:
    name: str
    kind: str
    options: dict[str, Any]
    version: int
    status: str
    reason: str | None
    trained_at: datetime | None
    window: dict[str, Any]
    features: list[str]
    params: dict[str, Any]
    quality: dict[str, Any]
    traits: list[str]
    scored_at: datetime | None
    scored_count: int
    refit_days: int
    created_at: datetime
    updated_at: datetime

    def fitted(self) -> Fitted:
        """The stored fit, to score with (only for status "ready")."""
        assert self.trained_at is not None
        return Fitted(
            kind=self.kind,
            name=self.name,
            trained_at=self.trained_at,
            window=self.window,
            features=self.features,
            params=self.params,
            quality=self.quality,
            traits=self.traits,
            options=self.options,
        )

    def summary(self) -> dict[str, Any]:
        """What the API and `opencdp predict list --json` show (no parameters: they can be large)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "reason": self.reason,
            "version": self.version,
            "options": self.options,
            "trained_at": _iso(self.trained_at),
            "window": self.window,
            "traits": self.traits,
            "quality": self.quality,
            "scored_at": _iso(self.scored_at),
            "scored_count": self.scored_count,
            "refit_days": self.refit_days,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _record(row: sa.Row[Any]) -> ModelRecord:
    m = row._mapping
    return ModelRecord(
        name=m["name"],
        kind=m["kind"],
        options=m["options"] or {},
        version=m["version"],
        status=m["status"],
        reason=m["reason"],
        trained_at=m["trained_at"],
        window=m["window"] or {},
        features=m["features"] or [],
        params=m["params"] or {},
        quality=m["quality"] or {},
        traits=m["traits"] or [],
        scored_at=m["scored_at"],
        scored_count=m["scored_count"],
        refit_days=m["refit_days"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def all_models(conn: sa.Connection) -> list[ModelRecord]:
    return [_record(r) for r in conn.execute(sa.select(prediction_models).order_by(prediction_models.c.name))]


def get_model(conn: sa.Connection, name: str) -> ModelRecord:
    row = conn.execute(sa.select(prediction_models).where(prediction_models.c.name == name)).first()
    if row is None:
        raise ModelNotFound(f"there is no prediction model named {name!r} (see `opencdp predict list`)")
    return _record(row)


def find_model(conn: sa.Connection, name: str) -> ModelRecord | None:
    try:
        return get_model(conn, name)
    except ModelNotFound:
        return None


def define(
    conn: sa.Connection, name: str, kind: str, options: dict[str, Any], refit_days: int = DEFAULT_REFIT_DAYS
) -> ModelRecord:
    """Create a model, or change the options of an existing one (its next fit uses them)."""
    now = datetime.now(UTC)
    existing = find_model(conn, name)
    if existing is None:
        conn.execute(
            prediction_models.insert().values(
                name=name,
                kind=kind,
                options=options,
                version=0,
                status="new",
                scored_count=0,
                refit_days=refit_days,
                created_at=now,
                updated_at=now,
            )
        )
    else:
        if existing.kind != kind:
            raise ValueError(f"model {name!r} is of kind {existing.kind!r}, not {kind!r}")
        conn.execute(
            prediction_models.update()
            .where(prediction_models.c.name == name)
            .values(options=options, refit_days=refit_days, updated_at=now)
        )
    return get_model(conn, name)


def save_fit(conn: sa.Connection, fitted: Fitted) -> ModelRecord:
    """Store a new fit as the model's next version."""
    current = get_model(conn, fitted.name)
    conn.execute(
        prediction_models.update()
        .where(prediction_models.c.name == fitted.name)
        .values(
            version=current.version + 1,
            status="ready",
            reason=None,
            trained_at=fitted.trained_at,
            window=fitted.window,
            features=fitted.features,
            params=fitted.params,
            quality=fitted.quality,
            traits=fitted.traits,
            options=fitted.options,
            updated_at=datetime.now(UTC),
        )
    )
    return get_model(conn, fitted.name)


def save_refusal(conn: sa.Connection, name: str, status: str, reason: str) -> None:
    """Record why a fit did not happen ("refused": too little data; "failed": an error). A model
    that was ready keeps its last fit and goes on scoring with it."""
    current = get_model(conn, name)
    values: dict[str, Any] = {"reason": reason, "updated_at": datetime.now(UTC)}
    if current.trained_at is None:
        values["status"] = status
    conn.execute(prediction_models.update().where(prediction_models.c.name == name).values(**values))


def delete_model(engine: sa.Engine, name: str) -> None:
    """Remove a model and the traits it wrote."""
    with engine.begin() as conn:
        record = get_model(conn, name)
    write_scores(engine, record, [], datetime.now(UTC))
    with engine.begin() as conn:
        conn.execute(prediction_models.delete().where(prediction_models.c.name == name))


def write_scores(
    engine: sa.Engine,
    record: ModelRecord,
    scores: Iterable[tuple[str, dict[str, Any]]],
    at: datetime,
    on_progress: Callable[[int], None] | None = None,
    clear_unscored: bool = True,
) -> int:
    """Write one model's traits for the scored profiles; with `clear_unscored`, remove its traits
    from every profile it did not score in this run. Returns how many profiles were scored."""
    mine = set(record.traits)
    stamp = {"version": record.version, "at": _iso(at)}
    scored: set[str] = set()
    iterator = iter(scores)
    while batch := list(islice(iterator, BATCH)):
        values = dict(batch)
        scored.update(values)
        with engine.begin() as conn:
            current = {
                r.id: (r.predicted or {}, r.predicted_meta or {})
                for r in conn.execute(
                    sa.select(profiles.c.id, profiles.c.predicted, profiles.c.predicted_meta).where(
                        profiles.c.id.in_(list(values))
                    )
                )
            }
            rows = []
            for pid, traits in values.items():
                if pid not in current:  # erased or merged away since it was read
                    continue
                predicted, meta = current[pid]
                kept = {k: v for k, v in predicted.items() if k not in mine}
                rows.append(
                    {
                        "pid": pid,
                        "predicted": kept | traits,
                        "meta": meta | {record.name: stamp},
                    }
                )
            if rows:
                conn.execute(_UPDATE, rows)
        if on_progress:
            on_progress(len(values))
    if clear_unscored:
        _clear_others(engine, record, scored)
    with engine.begin() as conn:
        conn.execute(
            prediction_models.update()
            .where(prediction_models.c.name == record.name)
            .values(scored_at=at, scored_count=len(scored), updated_at=datetime.now(UTC))
        )
    return len(scored)


_UPDATE = (
    profiles.update()
    .where(profiles.c.id == sa.bindparam("pid"))
    .values(predicted=sa.bindparam("predicted"), predicted_meta=sa.bindparam("meta"))
)


def _clear_others(engine: sa.Engine, record: ModelRecord, scored: set[str]) -> None:
    """Remove this model's traits from the profiles the run did not score (found in SQL by the
    model's stamp, so only their ids cross over, not every profile's predictions)."""
    after = ""
    while True:
        with engine.begin() as conn:
            ids = (
                conn.execute(
                    sa.select(profiles.c.id)
                    .where(json_present(profiles.c.predicted_meta, record.name), profiles.c.id > after)
                    .order_by(profiles.c.id)
                    .limit(BATCH * 4)
                )
                .scalars()
                .all()
            )
            if not ids:
                return
            stale = [pid for pid in ids if pid not in scored]
            if stale:
                page = conn.execute(
                    sa.select(profiles.c.id, profiles.c.predicted, profiles.c.predicted_meta).where(
                        profiles.c.id.in_(stale)
                    )
                ).all()
                mine = set(record.traits)
                conn.execute(
                    _UPDATE,
                    [
                        {
                            "pid": r.id,
                            "predicted": {k: v for k, v in (r.predicted or {}).items() if k not in mine}
                            or None,
                            "meta": {k: v for k, v in (r.predicted_meta or {}).items() if k != record.name}
                            or None,
                        }
                        for r in page
                    ],
                )
        after = ids[-1]


def predicted_traits(
    predicted: dict[str, Any] | None, meta: dict[str, Any] | None, models: list[ModelRecord]
) -> dict[str, Any]:
    """A profile's predicted traits as the profile API shows them: value, model, version, time."""
    owner = {t: m.name for m in models for t in m.traits}
    out: dict[str, Any] = {}
    for name, value in sorted((predicted or {}).items()):
        model = owner.get(name)
        stamp = (meta or {}).get(model or "", {})
        out[name] = {
            "value": value,
            "model": model,
            "version": stamp.get("version"),
            "predicted_at": stamp.get("at"),
        }
    return out
