"""The delivery worker: sends what the outbox holds, at least once, and only where allowed.

Each pass claims the due deliveries of each destination (a lease: a worker killed mid-send leaves
them to be claimed again when the lease runs out, with the same idempotency key), checks at send
time that the profile still exists and consents to the destination's purpose, renders and sends
them through the destination's driver, and records each outcome:

- delivered;
- retry later: exponential back-off with jitter (or the receiver's Retry-After), until the
  destination's `max_retry_seconds` have passed since the decision, then a dead letter;
- failed (a 4xx that cannot succeed, a broken template): a dead letter at once;
- skipped: no consent (any more), or the profile or event was erased meanwhile.

A destination whose sends keep failing trips a circuit breaker: it is left alone for a while (30 s,
doubling to 10 min), then probed with one delivery. Per-destination rate limits are token buckets.
Time comes from an injectable clock, so tests cover hours of retries without sleeping; the
schedule lives in the database (`next_attempt_at`, `open_until`, `next_run_at`), never in memory.
Several workers may share the outbox: on PostgreSQL claims skip rows another worker locked.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from opencdp import logs
from opencdp.activation import outbox
from opencdp.activation.destinations import make_driver
from opencdp.activation.drivers import Driver, Message, Outcome
from opencdp.activation.secrets import SecretMissing
from opencdp.config import Settings
from opencdp.store.schema import deliveries, destinations, events, profiles, segments, sources
from opencdp.store.write_turns import WriteTurns

log = logs.get("opencdp.delivery")
Clock = Callable[[], datetime]

#: consecutive failed sends (all retryable) that open a destination's circuit
BREAKER_THRESHOLD = 5
BREAKER_FIRST_SECONDS = 30.0
BREAKER_MAX_SECONDS = 600.0
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0
#: the longest a Retry-After is honoured
RETRY_AFTER_MAX_SECONDS = 3600.0


def system_clock() -> datetime:
    return datetime.now(UTC)


def backoff_seconds(attempts: int, rng: random.Random) -> float:
    """Exponential back-off with "equal jitter": half fixed, half random, capped."""
    delay = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** max(0, attempts - 1))
    return delay / 2 + rng.uniform(0, delay / 2)


def breaker_seconds(failures: int) -> float:
    return min(BREAKER_MAX_SECONDS, BREAKER_FIRST_SECONDS * 2 ** max(0, failures - BREAKER_THRESHOLD))


@dataclass
class _Bucket:
    """A token bucket for one destination's rate limit (per worker)."""

    rate: float
    tokens: float
    at: datetime

    def take(self, wanted: int, now: datetime) -> int:
        self.tokens = min(max(self.rate, 1.0), self.tokens + (now - self.at).total_seconds() * self.rate)
        self.at = now
        granted = min(wanted, int(self.tokens))
        self.tokens -= granted
        return granted


@dataclass
class PassResult:
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    skipped: int = 0
    by_destination: dict[str, int] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return self.delivered + self.dead + self.skipped

    @property
    def work(self) -> int:
        return self.finished + self.retried

    def summary(self) -> str:
        return (
            f"delivered {self.delivered}, retrying {self.retried}, dead {self.dead}, skipped {self.skipped}"
        )


class DeliveryWorker:
    def __init__(
        self,
        engine: sa.Engine,
        settings: Settings,
        clock: Clock = system_clock,
        lease_seconds: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.lease_seconds = lease_seconds if lease_seconds is not None else settings.delivery_lease_seconds
        self.rng = rng or random.Random()
        self.name = uuid.uuid4().hex
        self._drivers: dict[int, tuple[datetime, Driver]] = {}
        self._buckets: dict[int, _Bucket] = {}
        self._skip_locked = engine.dialect.name == "postgresql"
        self._next_prune: datetime | None = None
        self._turns = WriteTurns(engine)

    # -- one pass ---------------------------------------------------------------------------------
    async def run_once(self) -> PassResult:
        """Claim, check, send and record the due deliveries of every destination, once."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(destinations).where(destinations.c.enabled.is_(True)).order_by(destinations.c.id)
            ).all()
        result = PassResult()
        await asyncio.gather(*(self._serve(row, result) for row in rows))
        self._prune()
        return result

    def _prune(self) -> None:
        now = self.clock()
        if self._next_prune is not None and now < self._next_prune:
            return
        self._next_prune = now + timedelta(hours=1)
        with self._turns.transaction() as conn:
            gone = outbox.prune(conn, now - timedelta(days=self.settings.delivery_retention_days))
        if gone:
            log.info("old deliveries forgotten", deliveries=gone)

    def run_until_idle(self, max_passes: int = 10_000) -> PassResult:
        """Passes until one finds nothing due now (tests, `opencdp deliveries flush`)."""
        total = PassResult()
        loop = asyncio.new_event_loop()
        try:
            for _ in range(max_passes):
                one = loop.run_until_complete(self.run_once())
                for name in ("delivered", "retried", "dead", "skipped"):
                    setattr(total, name, getattr(total, name) + getattr(one, name))
                if not one.work:
                    break
        finally:
            loop.run_until_complete(self.close())
            loop.close()
        return total

    async def close(self) -> None:
        for _, driver in self._drivers.values():
            try:
                await driver.close()
            except Exception:
                log.exception("closing a destination's connections failed")
        self._drivers.clear()
        self._turns.close()

    async def _serve(self, dest: Any, result: PassResult) -> None:
        now = self.clock()
        if dest.open_until is not None and now < dest.open_until:
            return
        try:
            driver = await self._driver(dest)
        except SecretMissing as exc:
            self._note_error(dest.id, str(exc), now)
            return
        every = driver.every_seconds()
        if every is not None and dest.next_run_at is not None and now < dest.next_run_at:
            return
        wanted = 1 if dest.open_until is not None else driver.batch_size()  # half-open: one probe
        if dest.rate_per_second:
            bucket = self._buckets.get(dest.id)
            if bucket is None or bucket.rate != dest.rate_per_second:
                bucket = self._buckets[dest.id] = _Bucket(dest.rate_per_second, dest.rate_per_second, now)
            wanted = bucket.take(wanted, now)
            if wanted < 1:
                return
        claimed = self._claim(dest.id, wanted, now)
        if not claimed:
            return  # a scheduled destination's period starts with its next drop, not an empty pass
        messages, skipped = self._prepare(dest, claimed)
        outcomes: list[Outcome] = []
        if messages:
            try:
                outcomes = await driver.send(messages)
                if len(outcomes) != len(messages):
                    raise RuntimeError(
                        f"{dest.kind} driver gave {len(outcomes)} outcomes for {len(messages)}"
                    )
            except Exception as exc:  # a driver bug must not lose deliveries: try again later
                log.exception("destination driver failed", destination=dest.name)
                outcomes = [Outcome.again(f"{type(exc).__name__}: {exc}")] * len(messages)
        self._record(dest, claimed, messages, outcomes, skipped, self.clock(), result)
        if every is not None:
            self._set_next_run(dest.id, now + timedelta(seconds=every))

    async def _driver(self, dest: Any) -> Driver:
        cached = self._drivers.get(dest.id)
        if cached is not None and cached[0] == dest.updated_at:
            return cached[1]
        if cached is not None:
            await cached[1].close()
        driver = make_driver(self.settings, dest)
        self._drivers[dest.id] = (dest.updated_at, driver)
        return driver

    # -- claiming ---------------------------------------------------------------------------------
    def _claim(self, destination_id: int, limit: int, now: datetime) -> list[Any]:
        due = sa.or_(
            sa.and_(deliveries.c.status == outbox.PENDING, deliveries.c.next_attempt_at <= now),
            sa.and_(deliveries.c.status == outbox.SENDING, deliveries.c.lease_until < now),
        )
        claim = uuid.uuid4().hex
        with self.engine.connect() as conn:  # a cheap look first: most passes find nothing due
            if (
                conn.execute(
                    sa.select(deliveries.c.id)
                    .where(deliveries.c.destination_id == destination_id, due)
                    .limit(1)
                ).first()
                is None
            ):
                return []
        with self._turns.transaction() as conn:
            query = (
                sa.select(deliveries.c.id)
                .where(deliveries.c.destination_id == destination_id, due)
                .order_by(deliveries.c.id)
                .limit(limit)
            )
            if self._skip_locked:
                query = query.with_for_update(skip_locked=True)
            ids = list(conn.execute(query).scalars())
            if not ids:
                return []
            # `due` again: on SQLite another worker may have claimed them between our read and write
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(ids), due)
                .values(
                    status=outbox.SENDING,
                    claim=claim,
                    lease_until=now + timedelta(seconds=self.lease_seconds),
                    attempts=deliveries.c.attempts + 1,
                )
            )
            return list(
                conn.execute(
                    sa.select(deliveries).where(deliveries.c.claim == claim).order_by(deliveries.c.id)
                ).all()
            )

    # -- send-time checks and rendering -----------------------------------------------------------
    def _prepare(self, dest: Any, claimed: list[Any]) -> tuple[list[Message], dict[int, str]]:
        """Messages for the deliveries that may go; the others with the reason they may not."""
        with self.engine.connect() as conn:
            people = _profiles(conn, {r.profile_id for r in claimed if r.profile_id})
            found_events = _events(conn, {r.event_id for r in claimed if r.event_id is not None})
            names = _segment_names(
                conn, {int(r.subject["segment"]) for r in claimed if "segment" in r.subject}
            )
        messages: list[Message] = []
        skipped: dict[int, str] = {}
        for row in claimed:
            person = people.get(row.profile_id) if row.profile_id else None
            if row.profile_id and person is None:
                skipped[row.id] = "the profile was erased"
                continue
            action = row.subject.get("action")
            # taking someone out of an audience needs no consent
            needs_consent = bool(dest.purpose) and action != "remove"
            if needs_consent and (
                person is None or (person.get("consent") or {}).get(dest.purpose) is not True
            ):
                skipped[row.id] = f"no consent for {dest.purpose}"
                continue
            context: dict[str, Any] = {
                "kind": row.kind,
                "idempotency_key": row.key,
                "destination": {"id": dest.id, "name": dest.name},
                "profile": person,
            }
            if row.kind == "event":
                event = found_events.get(row.event_id)
                if event is None:
                    skipped[row.id] = "the event was erased"
                    continue
                context["event"] = event
                body = {
                    "type": "event",
                    "idempotency_key": row.key,
                    "profile_id": _pid(person),
                    "event": event,
                }
            elif row.kind == "journey":
                journey = {"id": row.subject.get("journey"), "name": row.subject.get("journey_name")}
                context.update(
                    journey=journey,
                    step=row.subject.get("step"),
                    channel=row.subject.get("channel"),
                    content=row.subject.get("content") or {},
                )
                body = {
                    "type": "journey",
                    "idempotency_key": row.key,
                    "journey": journey,
                    "step": row.subject.get("step"),
                    "channel": row.subject.get("channel"),
                    "content": row.subject.get("content") or {},
                    "profile": _public(person),
                }
            else:
                segment = {
                    "id": row.subject.get("segment"),
                    "name": names.get(int(row.subject.get("segment", 0))),
                }
                context.update(action=action, segment=segment)
                body = {
                    "type": row.kind,
                    "action": action,
                    "idempotency_key": row.key,
                    "segment": segment,
                    "profile": _public(person),
                }
            messages.append(Message(row.id, row.key, context, body))
        return messages, skipped

    # -- recording outcomes -----------------------------------------------------------------------
    def _record(
        self,
        dest: Any,
        claimed: list[Any],
        messages: list[Message],
        outcomes: list[Outcome],
        skipped: dict[int, str],
        now: datetime,
        result: PassResult,
    ) -> None:
        rows = {r.id: r for r in claimed}
        done: list[int] = []
        finished: list[dict[str, Any]] = [
            {"i": i, "s": outbox.SKIPPED, "e": reason} for i, reason in skipped.items()
        ]
        retries: list[dict[str, Any]] = []
        last_error: str | None = None
        for message, outcome in zip(messages, outcomes, strict=True):
            row = rows[message.delivery_id]
            if outcome.status == "delivered":
                done.append(row.id)
                continue
            last_error = outcome.error or outcome.status
            expired = (now - row.created_at).total_seconds() >= dest.max_retry_seconds
            if outcome.status == "failed" or expired:
                reason = outcome.error or "failed"
                if expired and outcome.status == "retry":
                    reason = (
                        f"gave up after {row.attempts} attempts over {dest.max_retry_seconds} s: {reason}"
                    )
                finished.append({"i": row.id, "s": outbox.DEAD, "e": reason})
                continue
            delay = (
                min(outcome.after, RETRY_AFTER_MAX_SECONDS)
                if outcome.after is not None
                else backoff_seconds(row.attempts, self.rng)
            )
            retries.append({"i": row.id, "t": now + timedelta(seconds=delay), "e": outcome.error})
        retried = len(retries)
        with self._turns.transaction() as conn:
            for start in range(0, len(done), 5000):
                conn.execute(
                    deliveries.update()
                    .where(deliveries.c.id.in_(done[start : start + 5000]))
                    .values(
                        status=outbox.DELIVERED,
                        finished_at=now,
                        lease_until=None,
                        claim=None,
                        last_error=None,
                    )
                )
            if finished:
                conn.execute(
                    deliveries.update()
                    .where(deliveries.c.id == sa.bindparam("i"))
                    .values(
                        status=sa.bindparam("s"),
                        finished_at=now,
                        lease_until=None,
                        claim=None,
                        last_error=sa.bindparam("e"),
                    ),
                    finished,
                )
            if retries:
                conn.execute(
                    deliveries.update()
                    .where(deliveries.c.id == sa.bindparam("i"))
                    .values(
                        status=outbox.PENDING,
                        next_attempt_at=sa.bindparam("t"),
                        lease_until=None,
                        claim=None,
                        last_error=sa.bindparam("e"),
                    ),
                    retries,
                )
            health: dict[str, Any] = {}
            if done:
                health.update(failures=0, open_until=None, last_success_at=now)
            elif retried:
                failures = dest.failures + 1
                health.update(failures=failures)
                if failures >= BREAKER_THRESHOLD:
                    health["open_until"] = now + timedelta(seconds=breaker_seconds(failures))
                    if dest.open_until is None:
                        log.warning("circuit opened", destination=dest.name, error=last_error)
            if last_error:
                health.update(last_error=last_error[:1000], last_error_at=now)
            if health:
                conn.execute(destinations.update().where(destinations.c.id == dest.id).values(**health))
        dead = sum(1 for f in finished if f["s"] == outbox.DEAD)
        result.delivered += len(done)
        result.retried += retried
        result.dead += dead
        result.skipped += len(finished) - dead
        result.by_destination[dest.name] = result.by_destination.get(dest.name, 0) + len(done)

    def _note_error(self, destination_id: int, error: str, now: datetime) -> None:
        with self._turns.transaction() as conn:
            conn.execute(
                destinations.update()
                .where(destinations.c.id == destination_id)
                .values(last_error=error, last_error_at=now)
            )

    def _set_next_run(self, destination_id: int, when: datetime) -> None:
        with self._turns.transaction() as conn:
            conn.execute(
                destinations.update().where(destinations.c.id == destination_id).values(next_run_at=when)
            )


def _pid(person: dict[str, Any] | None) -> str | None:
    return person["id"] if person else None


def _public(person: dict[str, Any] | None) -> dict[str, Any] | None:
    if person is None:
        return None
    return {
        "id": person["id"],
        "traits": person["traits"],
        "computed": person["computed"],
        "predicted": person["predicted"],
    }


def _profiles(conn: sa.Connection, ids: set[str]) -> dict[str, dict[str, Any]]:
    """Profiles by the id a delivery names, following merges to the surviving profile."""
    found: dict[str, dict[str, Any]] = {}
    wanted = {i: i for i in ids}  # asked id -> id to look up
    for _ in range(8):  # merge chains are short; a survivor is never merged again in one step
        if not wanted:
            break
        rows = {
            r.id: r
            for r in conn.execute(
                sa.select(
                    profiles.c.id,
                    profiles.c.merged_into,
                    profiles.c.traits,
                    profiles.c.computed,
                    profiles.c.predicted,
                    profiles.c.consent,
                ).where(profiles.c.id.in_(sorted(set(wanted.values()))))
            )
        }
        following: dict[str, str] = {}
        for asked, look in wanted.items():
            row = rows.get(look)
            if row is None:
                continue
            if row.merged_into is not None:
                following[asked] = row.merged_into
                continue
            found[asked] = {
                "id": row.id,
                "traits": row.traits or {},
                "computed": row.computed or {},
                "predicted": row.predicted or {},
                "consent": row.consent or {},
            }
        wanted = following
    return found


def _events(conn: sa.Connection, ids: set[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    return {
        r.id: {**r.payload, "type": r.type, "source": r.source}
        for r in conn.execute(
            sa.select(events.c.id, events.c.type, events.c.payload, sources.c.name.label("source"))
            .join(sources, sources.c.id == events.c.source_id)
            .where(events.c.id.in_(sorted(ids)))
        )
    }


def _segment_names(conn: sa.Connection, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(
        conn.execute(sa.select(segments.c.id, segments.c.name).where(segments.c.id.in_(sorted(ids)))).all()
    )


class DeliveryLoop:
    """The worker in a thread with its own event loop: a pass of the journey runner (its sends
    become deliveries) and one of the delivery worker, again at once while there is work, else a
    wait for `notify` (the processor put something in the outbox) or `idle_seconds`. A pass that
    a notification starts begins at least `pace_seconds` after the previous one, so that a
    trickle of events becomes a few passes a second, not one write transaction per event each
    taking its turn at SQLite's write lock before collection's."""

    def __init__(
        self,
        worker: DeliveryWorker,
        idle_seconds: float = 0.2,
        journeys: Any = None,
        pace_seconds: float = 0.05,
    ) -> None:
        from opencdp.journeys.runner import JourneyRunner

        self.worker = worker
        self.journeys = journeys if journeys is not None else JourneyRunner(worker.engine, worker.settings)
        self.idle_seconds = idle_seconds
        self.pace_seconds = pace_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def notify(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="opencdp-delivery", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            while not self._stop.is_set():
                self._wake.clear()
                began = time.monotonic()
                try:
                    moved = self.journeys.run_once()
                    result = loop.run_until_complete(self.worker.run_once())
                except Exception:
                    log.exception("delivery pass failed; retrying")
                    self._stop.wait(1.0)
                    continue
                if not result.work and not moved and self._wake.wait(self.idle_seconds):
                    self._stop.wait(max(0.0, began + self.pace_seconds - time.monotonic()))
        finally:
            loop.run_until_complete(self.worker.close())
            loop.close()
            self.journeys.close()
