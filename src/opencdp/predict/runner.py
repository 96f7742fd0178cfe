"""Running prediction jobs: fit (store a new version, or the reason there is none), score (write
the traits), and the daily schedule that keeps both fresh.

Built-in models (one per kind except custom goals) exist from the first run; a goal is defined with
its event and horizon. After scoring, every segment's memberships are refreshed, so segments,
journeys and audiences that use predicted traits see the new scores at once.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
import structlog

from opencdp.background import OnePerName
from opencdp.predict import store
from opencdp.predict.jobs import KINDS, job
from opencdp.predict.model import TooThin
from opencdp.predict.store import ModelRecord

log = structlog.get_logger(__name__)

#: The models every installation has; goals are added with `opencdp predict define goal`.
BUILTIN = ("clv", "purchase", "churn", "channels", "advocacy", "interests")
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,99}$"
#: Scores are recomputed with the current fit at most this often by the schedule.
SCORE_EVERY = timedelta(days=1)


def ensure_builtin(engine: sa.Engine) -> None:
    """The built-in models' rows, made on first use (two first uses at once: one of them wins)."""
    with engine.connect() as conn:
        if {r.name for r in store.all_models(conn)} >= set(BUILTIN):
            return
    with contextlib.suppress(sa.exc.IntegrityError), engine.begin() as conn:
        for kind in BUILTIN:
            if store.find_model(conn, kind) is None:
                store.define(conn, kind, kind, {})


def define_goal(engine: sa.Engine, event: str, days: int, name: str | None = None) -> ModelRecord:
    """A custom goal: "will do `event` within `days` days"."""
    if days < 1:
        raise ValueError("days must be 1 or more")
    name = name or goal_name(event, days)
    if not re.fullmatch(NAME_PATTERN, name) or name in BUILTIN:
        raise ValueError(
            f"a model name is lower-case letters, digits and _ (at most 100, starting with a letter) "
            f"and not one of {', '.join(BUILTIN)}: {name!r}"
        )
    with engine.begin() as conn:
        return store.define(conn, name, "goal", {"event": event, "horizon_days": days, "name": name})


def goal_name(event: str, days: int) -> str:
    slug = "".join(c if c.isascii() and c.isalnum() else "_" for c in event.lower()).strip("_")
    while "__" in slug:
        slug = slug.replace("__", "_")
    return f"goal_{slug}_{days}d"[:100]


def end_of_day(day: date) -> datetime:
    """`--until 1997-09-30` includes that whole day (UTC)."""
    return datetime.combine(day, time.max, tzinfo=UTC)


def fit(
    engine: sa.Engine, name: str, until: datetime | None = None, options: dict[str, Any] | None = None
) -> ModelRecord:
    """Fit a model on the log up to `until` (default: now) and store it as its next version.
    Raises TooThin (stored as status "refused" with the reason) when the data cannot support it."""
    with engine.begin() as conn:
        if name in BUILTIN and store.find_model(conn, name) is None:
            store.define(conn, name, name, {})
        record = store.get_model(conn, name)
    merged = record.options | (options or {})
    until = until or datetime.now(UTC)
    try:
        fitted = job(record.kind).fit(engine, until, merged)
    except TooThin as refusal:
        with engine.begin() as conn:
            store.save_refusal(conn, name, "refused", str(refusal))
        raise
    except Exception as error:
        with engine.begin() as conn:
            store.save_refusal(conn, name, "failed", f"{type(error).__name__}: {error}")
        raise
    fitted.name, fitted.options = name, merged
    with engine.begin() as conn:
        return store.save_fit(conn, fitted)


def score(
    engine: sa.Engine, name: str, at: datetime | None = None, on_progress: Callable[[int], None] | None = None
) -> int:
    """Score every qualifying profile with the model's current fit, as of `at` (default: now)."""
    with engine.connect() as conn:
        record = store.get_model(conn, name)
    if record.status != "ready":
        raise TooThin(f"model {name!r} has no fit yet ({record.reason or 'run `opencdp predict fit`'})")
    at = at or datetime.now(UTC)
    scores = job(record.kind).score(engine, record.fitted(), at)
    written = store.write_scores(engine, record, scores, at, on_progress)
    if record.kind == "advocacy":
        _advocates_segment(engine)
    return written


#: The segment the advocacy job's first scoring creates (it can be edited or deleted like any).
ADVOCATES = "Advocates"


def _advocates_segment(engine: sa.Engine) -> None:
    """The "advocates" segment ready to use (for journeys, audiences, exports) once there are
    advocacy scores; made once, never overwritten."""
    from opencdp.segments import store as segment_store
    from opencdp.store.dialect import insert_ignoring_duplicates
    from opencdp.store.schema import settings_store

    marker = "predict_advocates_segment"
    with engine.connect() as conn:
        if conn.execute(sa.select(settings_store.c.name).where(settings_store.c.name == marker)).first():
            return
    with contextlib.suppress(segment_store.SegmentError):  # a segment of that name is the user's
        segment_store.save(
            engine,
            ADVOCATES,
            {"predicted": "advocate", "op": "eq", "value": True},
            "Customers whose shares bring visits, sign-ups or orders (predicted trait 'advocate')",
        )
    with engine.begin() as conn:
        insert = insert_ignoring_duplicates(conn.dialect.name, settings_store, ["name"])
        conn.execute(insert, [{"name": marker, "value": "1"}])


def refresh_memberships(engine: sa.Engine) -> None:
    """Segments over predicted traits see the new scores (and journeys their transitions)."""
    from opencdp.process.processor import PROCESSOR
    from opencdp.segments.memberships import refresh_segments
    from opencdp.store.dialect import lock_for_processing

    with engine.begin() as conn:
        lock_for_processing(conn, PROCESSOR)
        refresh_segments(conn, None, datetime.now(UTC), retry_failed=False)


def due(record: ModelRecord, now: datetime) -> tuple[bool, bool]:
    """(refit?, rescore?) for the schedule: models someone has run are kept fresh."""
    if record.version == 0 and record.status == "new":
        return False, False
    refit = record.trained_at is None or now - record.trained_at >= timedelta(days=record.refit_days)
    if record.status != "ready" and record.updated_at and now - record.updated_at < SCORE_EVERY:
        refit = False  # refused or failed today: try again tomorrow
    rescore = record.scored_at is None or now - record.scored_at >= SCORE_EVERY
    return refit, refit or rescore


def run_due(engine: sa.Engine, now: datetime | None = None) -> list[str]:
    """The schedule: refit models older than their `refit_days`, rescore those scored over a day
    ago. Returns the names of the models it scored."""
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        records = store.all_models(conn)
    done = []
    for record in records:
        refit, rescore = due(record, now)
        try:
            if refit:
                fit(engine, record.name, now)
            if rescore:
                score(engine, record.name, now)
                done.append(record.name)
        except TooThin as refusal:
            log.info("prediction not fitted", model=record.name, reason=str(refusal))
        except Exception:
            log.exception("prediction run failed", model=record.name)
    if done:
        refresh_memberships(engine)
    return done


def rescore_after_rebuild(engine: sa.Engine) -> int:
    """`rebuild` recreates profiles: each ready model scores them again as of its last scoring
    time, which reproduces the scores it had written (same fit, same log up to that time)."""
    with engine.connect() as conn:
        records = [r for r in store.all_models(conn) if r.status == "ready" and r.scored_at is not None]
    for record in records:
        assert record.scored_at is not None
        score(engine, record.name, record.scored_at)
    if records:
        refresh_memberships(engine)
    return len(records)


_RUNS = OnePerName("predict")


def running() -> set[str]:
    """Models being fitted and scored in the background now (by the dashboard or the API)."""
    return _RUNS.running()


def run_in_background(engine: sa.Engine, name: str) -> bool:
    """Fit and score `name` in a thread (one run per model at a time); False if one is running.
    The outcome is on the model: a new version, or the reason there is none."""

    def work() -> None:
        try:
            fit(engine, name)
            score(engine, name)
            refresh_memberships(engine)
        except TooThin:
            pass  # stored on the model as its reason
        except Exception:
            log.exception("prediction run failed", model=name)

    return _RUNS.start(name, work)


__all__ = ["BUILTIN", "KINDS", "define_goal", "ensure_builtin", "fit", "run_due", "score"]
