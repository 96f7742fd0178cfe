"""The journey runner: moves profiles through their journeys' steps when they are due.

Each due instance is advanced in a transaction (a savepoint each, so one that fails does not hold
up the others) until it reaches a wait or the end: a wait sets when it goes on (`next_at`, in the
database: the runner keeps no timers, so a restart loses nothing), a send becomes an outbox row in
that same transaction (key: instance and step count, so a retried step is one delivery), a trait
or tag change becomes an identify event in the log (the profile changes the way every source
changes it, and a rebuild reproduces it). Frequency caps count sends over all journeys; a send
that falls in the quiet hours waits for their end. Time comes from an injectable clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from opencdp import logs
from opencdp.activation import outbox
from opencdp.collect.messages import Envelope, Limits, normalise
from opencdp.config import Settings
from opencdp.identity.identifiers import IdentityRules
from opencdp.journeys.definition import (
    EXIT,
    BranchStep,
    Cap,
    ExitStep,
    JourneyDefinition,
    ScheduleEntry,
    SendStep,
    SetTraitsStep,
    TagStep,
    WaitForStep,
    WaitStep,
)
from opencdp.journeys.schedule import in_quiet_hours, next_occurrence
from opencdp.journeys.triggers import active_journeys, definition_of, enrol, history_row
from opencdp.log.append import LogAppender
from opencdp.privacy.consent_events import addressed_to, system_source_id
from opencdp.segments.compiler import members_query
from opencdp.segments.language import parse_criteria
from opencdp.segments.store import lookup_in
from opencdp.store.schema import (
    destinations,
    journey_history,
    journey_instances,
    journeys,
    profiles,
    segment_memberships,
    segments,
)
from opencdp.store.write_turns import WriteTurns

log = logs.get("opencdp.journeys")
JOURNEY_SOURCE = "opencdp-journeys"
#: steps one instance may take in one go (a loop of branches without a wait stops here)
MAX_STEPS_AT_ONCE = 50
BATCH = 200


def system_clock() -> datetime:
    return datetime.now(UTC)


class JourneyRunner:
    def __init__(
        self, engine: sa.Engine, settings: Settings, clock: Callable[[], datetime] = system_clock
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.appender = LogAppender.for_engine(engine, IdentityRules.from_env())
        self._skip_locked = engine.dialect.name == "postgresql"
        self._turns = WriteTurns(engine)

    def run_once(self) -> int:
        """Scheduled entries that are due, then one batch of due instances; returns the work done."""
        now = self.clock()
        return self._schedules(now) + self._advance(now)

    def close(self) -> None:
        self._turns.close()

    def run_until_idle(self, max_passes: int = 10_000) -> int:
        total = 0
        for _ in range(max_passes):
            done = self.run_once()
            total += done
            if not done:
                break
        return total

    # -- scheduled entries ------------------------------------------------------------------------
    def _schedules(self, now: datetime) -> int:
        entered = 0
        with self.engine.connect() as conn:  # a cheap look first: most passes find nothing due
            if not any(
                isinstance(d.entry, ScheduleEntry) and row.next_run_at is not None and row.next_run_at <= now
                for row, d in active_journeys(conn)
            ):
                return 0
        with self._turns.transaction() as conn:
            due = [
                (row, d)
                for row, d in active_journeys(conn)
                if isinstance(d.entry, ScheduleEntry)
                and row.next_run_at is not None
                and row.next_run_at <= now
            ]
            for row, definition in due:
                entry = definition.entry
                assert isinstance(entry, ScheduleEntry)
                members = list(
                    conn.execute(
                        sa.select(segment_memberships.c.profile_id)
                        .join(segments, segments.c.id == segment_memberships.c.segment_id)
                        .where(segments.c.name == entry.audience, segment_memberships.c.exited_at.is_(None))
                    ).scalars()
                )
                why = {"schedule": row.next_run_at.isoformat()}
                entered += len(enrol(conn, row, definition, members, now, why))
                conn.execute(
                    journeys.update()
                    .where(journeys.c.id == row.id)
                    .values(next_run_at=next_occurrence(entry.schedule, now))
                )
        return entered

    # -- moving instances -------------------------------------------------------------------------
    def _advance(self, now: datetime) -> int:
        with self.engine.connect() as conn:  # a cheap look first: most passes find nothing due
            if (
                conn.execute(
                    sa.select(journey_instances.c.id)
                    .where(journey_instances.c.status == "active", journey_instances.c.next_at <= now)
                    .limit(1)
                ).first()
                is None
            ):
                return 0
        with self._turns.transaction() as conn:
            query = (
                sa.select(journey_instances)
                .join(journeys, journeys.c.id == journey_instances.c.journey_id)
                .where(
                    journey_instances.c.status == "active",
                    journey_instances.c.next_at <= now,
                    journeys.c.status == "active",
                )
                .order_by(journey_instances.c.next_at, journey_instances.c.id)
                .limit(BATCH)
            )
            if self._skip_locked:
                query = query.with_for_update(skip_locked=True, of=journey_instances)
            due = conn.execute(query).all()
            if not due:
                return 0
            rows = {r.id: r for r in conn.execute(sa.select(journeys)).all()}
            names = dict(conn.execute(sa.select(destinations.c.name, destinations.c.id)).all())
            for inst in due:
                journey = rows[inst.journey_id]
                definition = definition_of(journey.id, journey.version, journey.definition)
                try:
                    with conn.begin_nested():
                        _Walk(self, conn, inst, journey, definition, names, now).run()
                except Exception as exc:
                    log.exception("journey step failed", journey=journey.name, instance=inst.id)
                    with conn.begin_nested():
                        conn.execute(
                            journey_instances.update()
                            .where(journey_instances.c.id == inst.id)
                            .values(next_at=now + timedelta(minutes=5))
                        )
                        conn.execute(
                            journey_history.insert().values(
                                history_row(
                                    inst.id,
                                    inst.journey_id,
                                    inst.profile_id,
                                    inst.step,
                                    "error",
                                    now,
                                    error=f"{type(exc).__name__}: {exc}"[:500],
                                )
                            )
                        )
            return len(due)


class _Walk:
    """One instance taken through its steps until a wait or the end."""

    def __init__(
        self,
        runner: JourneyRunner,
        conn: sa.Connection,
        inst: Any,
        journey: Any,
        definition: JourneyDefinition,
        destination_ids: dict[str, int],
        now: datetime,
    ) -> None:
        self.runner, self.conn, self.inst, self.journey = runner, conn, inst, journey
        self.definition, self.destination_ids, self.now = definition, destination_ids, now
        self.state: dict[str, Any] = {"step": inst.step, "steps_done": inst.steps_done, "at_step": None}
        self.history: list[dict[str, Any]] = []
        self.pid = inst.profile_id

    def note(self, step: str | None, action: str, **detail: Any) -> None:
        self.history.append(
            history_row(self.inst.id, self.journey.id, self.pid, step, action, self.now, **detail)
        )

    def finish(self, outcome: str) -> None:
        self.state.update(status="done", outcome=outcome, finished_at=self.now, waiting_for=None)
        self.note(None, outcome)

    def run(self) -> None:
        profile = self._profile()
        if profile is None:
            self.finish("exited")  # erased or gone: nothing more for it
        else:
            self._walk(profile)
        self.conn.execute(
            journey_instances.update().where(journey_instances.c.id == self.inst.id).values(**self.state)
        )
        if self.history:
            self.conn.execute(journey_history.insert(), self.history)

    def _profile(self) -> Any:
        pid = self.pid
        for _ in range(8):
            row = self.conn.execute(
                sa.select(profiles.c.id, profiles.c.merged_into, profiles.c.traits).where(
                    profiles.c.id == pid
                )
            ).first()
            if row is None or row.merged_into is None:
                self.pid = pid
                return row
            pid = row.merged_into
        return None

    def _walk(self, profile: Any) -> None:
        definition = self.definition
        for _ in range(MAX_STEPS_AT_ONCE):
            step_id = self.state["step"]
            if step_id == EXIT:
                self.finish("completed")
                return
            try:
                step = definition.step(step_id)
            except KeyError:  # the journey changed and this step is gone
                self.finish("exited")
                return
            following = definition.after(step)
            if isinstance(step, WaitStep):
                self.state.update(
                    step=following, at_step=step.id, next_at=self.now + timedelta(seconds=step.wait.seconds)
                )
                self.note(step.id, "waiting")
                return
            if isinstance(step, WaitForStep):
                wait = step.wait_for
                self.state.update(
                    step=wait.timeout or following,
                    at_step=step.id,
                    next_at=self.now + timedelta(seconds=wait.within.seconds),
                    waiting_for={
                        "event": wait.event,
                        "where": [c.model_dump() for c in wait.where],
                        "then": wait.then or following,
                        "step": step.id,
                    },
                )
                self.note(step.id, "waiting", event=wait.event)
                return
            self.state["waiting_for"] = None
            if isinstance(step, BranchStep):
                query = members_query(
                    parse_criteria(step.branch.if_), self.now, lookup_in(self.conn), [self.pid]
                )
                yes = self.conn.execute(query).first() is not None
                target = step.branch.then if yes else step.branch.else_
                self.note(step.id, "branched", to=target, matched=yes)
                self.state["step"] = target
                continue
            if isinstance(step, SendStep):
                if not self._send(step):
                    return
            elif isinstance(step, SetTraitsStep):
                self._identify(step.id, dict(step.set_traits))
                self.note(step.id, "traits", traits=sorted(step.set_traits))
            elif isinstance(step, TagStep):
                tags = [t for t in (profile.traits or {}).get("tags") or [] if isinstance(t, str)]
                if step.tag.add and step.tag.add not in tags:
                    tags.append(step.tag.add)
                if step.tag.remove:
                    tags = [t for t in tags if t != step.tag.remove]
                self._identify(step.id, {"tags": tags})
                self.note(step.id, "tagged", add=step.tag.add, remove=step.tag.remove)
            elif isinstance(step, ExitStep):
                self.finish("completed")
                return
            self.state["step"] = following
        self.state["next_at"] = self.now  # a long run of steps: go on in the next pass
        self.note(self.state["step"], "paused", reason=f"{MAX_STEPS_AT_ONCE} steps without a wait")

    def _send(self, step: SendStep) -> bool:
        """Queue the message (or skip it for a cap); False when it must wait (quiet hours)."""
        quiet = self.definition.quiet_hours
        if quiet is not None:
            ends = in_quiet_hours(quiet.start, quiet.end, quiet.timezone, self.now)
            if ends is not None:
                self.state.update(next_at=ends, at_step=step.id)
                self.note(step.id, "held", until=ends.isoformat())
                return False
        send = step.send
        capped = self._capped(send.channel)
        if capped:
            self.note(step.id, "capped", channel=send.channel, cap=capped)
            return True
        destination = self.destination_ids.get(send.destination)
        if destination is None:
            self.note(step.id, "skipped", channel=send.channel, reason=f"no destination {send.destination!r}")
            return True
        self.state["steps_done"] += 1
        outbox.write(
            self.conn,
            [
                outbox.decision(
                    destination,
                    f"jrn-{self.inst.id}-{self.state['steps_done']}",
                    "journey",
                    {
                        "journey": self.journey.id,
                        "journey_name": self.journey.name,
                        "step": step.id,
                        "channel": send.channel,
                        "content": send.content,
                    },
                    self.pid,
                    None,
                    self.now,
                )
            ],
        )
        self.note(step.id, "sent", channel=send.channel, destination=send.destination)
        return True

    def _capped(self, channel: str) -> str | None:
        caps = self.definition.caps
        checks: list[tuple[str, Cap | None, str | None]] = [("per profile", caps.per_profile, None)]
        if channel in caps.per_channel:
            checks.append((f"per channel {channel}", caps.per_channel[channel], channel))
        for label, cap, only in checks:
            if cap is None:
                continue
            query = sa.select(sa.func.count()).where(
                journey_history.c.profile_id == self.pid,
                journey_history.c.action == "sent",
                journey_history.c.at > self.now - timedelta(days=cap.days),
            )
            if only is not None:
                query = query.where(journey_history.c.channel == only)
            sent = int(self.conn.execute(query).scalar_one()) + sum(
                1 for h in self.history if h["action"] == "sent" and (only is None or h["channel"] == only)
            )
            if sent >= cap.max:
                return f"{label}: {cap.max} in {cap.days:g} days"
        return None

    def _identify(self, step_id: str, traits: dict[str, Any]) -> None:
        """A trait change as an identify event from the journeys source, in this transaction."""
        self.state["steps_done"] += 1
        message = addressed_to(
            self.conn,
            self.pid,
            {
                "type": "identify",
                "messageId": f"journey-{self.inst.id}-{self.state['steps_done']}",
                "traits": traits,
                "context": {"journey": {"id": self.journey.id, "name": self.journey.name, "step": step_id}},
            },
        )
        row = normalise(message, Envelope(self.now), system_source_id(self.conn, JOURNEY_SOURCE), Limits())
        self.runner.appender.append(self.conn, [row])
