"""Decisions: which content each placement shows this visitor, now.

One decision reads, for the visitor's strongest identifier: the profile (traits, computed and
predicted traits), its current segment memberships, its recent events (the current session,
including events the processor has not reached yet, read from the log's tail) and, only when an
audience asks about history events, its whole event history. Experiences are cached in memory and
re-read when one changes (checked at most once a second). Then every experience of each placement is
evaluated in Python (`audience.py`'s language), a variant chosen by the experience's strategy, and a
stable share of profiles held out. The decision is returned at once; its `Experience Viewed` events
are handed to the log writer by the caller.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from opencdp.config import Settings
from opencdp.identity.identifiers import Identifier, IdentityRules
from opencdp.personalise.audience import (
    ContextCondition,
    SessionCondition,
    SessionEventCondition,
    parse_audience,
)
from opencdp.personalise.context import live_context
from opencdp.personalise.experiences import (
    EXPERIENCE_VIEWED,
    PLACEMENT_PATTERN,
    Experience,
    parse_experience,
)
from opencdp.personalise.forms import struggling
from opencdp.personalise.log_tail import LogTail, payload_of, session_event
from opencdp.personalise.sessions import Session, SessionEvent, activity, current_session
from opencdp.personalise.weather import Weather, lookup
from opencdp.segments.language import (
    And,
    ComputedCondition,
    EventCondition,
    Not,
    Or,
    PredictedCondition,
    SegmentRef,
    TraitCondition,
    leaves,
)
from opencdp.segments.oracle import OracleEvent, OracleProfile, _event, count_holds, value_matches
from opencdp.store.fast_select import FastSelect
from opencdp.store.schema import (
    events,
    experiences,
    identities,
    profile_events,
    profiles,
    segment_memberships,
    segments,
)

#: How far back a decision reads events for the current session (a session longer than this is
#: cut to it); at most `SESSION_EVENTS` of them, newest first.
SESSION_LOOKBACK = timedelta(hours=12)
SESSION_EVENTS = 500
#: The log's tail read for events not processed yet: at most this many of the newest events (kept
#: between decisions, `personalise/log_tail.py`: the processor is normally within a chunk of the
#: newest event, and a visitor's older unprocessed events are missed only while it lags further).
TAIL_WINDOW = 1000
#: Experiences are re-read when changed; the change check runs at most this often.
CACHE_SECONDS = 1.0
MAX_PLACEMENTS = 20
MAX_TRAITS = 50


_PLACEMENT = re.compile(PLACEMENT_PATTERN)


# -- the request ----------------------------------------------------------------------------------
class DecideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    anonymous_id: str | None = Field(None, alias="anonymousId", min_length=1, max_length=256)
    user_id: str | None = Field(None, alias="userId", min_length=1, max_length=256)
    placements: list[str] = Field(min_length=1, max_length=MAX_PLACEMENTS)
    context: dict[str, Any] = Field(default_factory=dict)
    #: secret keys only: trait values to return with the decision (for templating on the server)
    traits: list[str] = Field(default_factory=list, max_length=MAX_TRAITS)

    @field_validator("user_id", "anonymous_id", mode="before")
    @classmethod
    def _numbers_are_ids(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("placements")
    @classmethod
    def _placement_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _PLACEMENT.match(name):
                raise ValueError(f"{name!r} is not a placement name (letters, digits, - _ . :, up to 100)")
        return list(dict.fromkeys(value))


class DecideRequestError(ValueError):
    """A request the decide API refuses; `problems` lists {"path", "problem"}."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{p['path'] or '(root)'}: {p['problem']}" for p in problems))
        self.problems = problems


def parse_decide_request(body: Any) -> DecideRequest:
    if not isinstance(body, dict):
        raise DecideRequestError([{"path": "", "problem": "must be a JSON object"}])
    try:
        request = DecideRequest.model_validate(body)
    except ValidationError as exc:
        raise DecideRequestError(
            [
                {
                    "path": ".".join(str(p) for p in err["loc"]),
                    "problem": err["msg"].removeprefix("Value error, "),
                }
                for err in exc.errors()
            ]
        ) from None
    if request.anonymous_id is None and request.user_id is None:
        raise DecideRequestError([{"path": "anonymousId", "problem": "give anonymousId or userId (or both)"}])
    if len(orjson.dumps(request.context)) > 16 * 1024:
        raise DecideRequestError([{"path": "context", "problem": "is larger than 16 KB"}])
    return request


# -- what a decision knows about the visitor ------------------------------------------------------
@dataclass
class VisitorView:
    """Everything an audience can ask about, gathered once per decision."""

    profile_id: str | None
    traits: dict[str, Any]
    computed: dict[str, Any]
    predicted: dict[str, Any]
    segments: frozenset[str]
    session: Session | None
    session_facts: dict[str, Any]
    context: dict[str, Any]
    #: the whole history as oracle events, loaded on first use (only history event conditions need it)
    history: Callable[[], list[OracleEvent]] = field(default=lambda: [])


def session_facts(
    session: Session | None, now: datetime, first_seen: datetime | None, context: dict[str, Any]
) -> dict[str, Any]:
    """The values of `session` conditions. Without an open session, the visit is just starting:
    its entry is what the page's context says."""
    entry: dict[str, Any] = session.entry() if session else {}
    fallback = {
        "source": context.get("utm.source"),
        "medium": context.get("utm.medium"),
        "campaign": context.get("utm.campaign"),
        "referrer": context.get("page.referrer"),
        "landing_path": context.get("page.path"),
    }
    for key, value in fallback.items():
        if entry.get(key) is None:
            entry[key] = value
    struggle = struggling(session.events, now) if session else None
    return {
        "events": len(session.events) if session else 0,
        "page_views": session.page_views if session else 0,
        "duration_seconds": session.duration_seconds if session else 0.0,
        "is_first": first_seen is None or (session is not None and first_seen >= session.started_at),
        **entry,
        "struggling": struggle is not None,
        "struggling_form": struggle.form_id if struggle else None,
        "struggling_field": struggle.field if struggle else None,
    }


def matches(node: Any, view: VisitorView, now: datetime) -> bool:
    """Whether the visitor is in a parsed audience."""
    if isinstance(node, And):
        return all(matches(c, view, now) for c in node.and_)
    if isinstance(node, Or):
        return any(matches(c, view, now) for c in node.or_)
    if isinstance(node, Not):
        return not matches(node.not_, view, now)
    if isinstance(node, TraitCondition):
        return value_matches(view.traits, node.trait, node)
    if isinstance(node, ComputedCondition):
        return value_matches(view.computed, node.computed, node)
    if isinstance(node, PredictedCondition):
        return value_matches(view.predicted, node.predicted, node)
    if isinstance(node, SegmentRef):
        return node.segment in view.segments
    if isinstance(node, SessionCondition):
        return value_matches(view.session_facts, node.session, node)
    if isinstance(node, ContextCondition):
        return value_matches(view.context, node.context, node)
    if isinstance(node, SessionEventCondition):
        return _session_events(node, view.session)
    if isinstance(node, EventCondition):
        return _event(node, OracleProfile(events=view.history()), now)
    raise TypeError(f"not an audience node: {node!r}")


def _session_events(cond: SessionEventCondition, session: Session | None) -> bool:
    n = sum(
        1
        for e in (session.events if session else ())
        if (cond.session_event is None or e.name == cond.session_event)
        and (cond.type is None or e.type == cond.type)
        and all(value_matches(e.properties, p.property, p) for p in cond.where)
    )
    return count_holds(cond.count_test, n)


def _any_leaf(node: Any, test: Callable[[Any], bool]) -> bool:
    """Whether some condition of an audience passes `test`."""
    return any(test(leaf) for leaf in leaves(node))


def _is_history_event(node: Any) -> bool:
    return isinstance(node, EventCondition)


def _is_weather(node: Any) -> bool:
    return isinstance(node, ContextCondition) and node.context.startswith("weather.")


# -- experiences, compiled once -------------------------------------------------------------------
@dataclass(frozen=True)
class LiveExperience:
    """An enabled experience with its audiences parsed."""

    id: int
    version: int
    definition: Experience
    audience: Any | None
    variant_audiences: tuple[Any | None, ...]
    needs_history: bool
    needs_weather: bool


def compile_experience(experience_id: int, version: int, document: Any) -> LiveExperience:
    definition = parse_experience(document)
    audience = parse_audience(definition.audience) if definition.audience is not None else None
    variants = tuple(
        parse_audience(v.audience) if v.audience is not None else None for v in definition.variants
    )
    parsed = [a for a in (audience, *variants) if a is not None]
    return LiveExperience(
        experience_id,
        version,
        definition,
        audience,
        variants,
        needs_history=any(_any_leaf(a, _is_history_event) for a in parsed),
        needs_weather=any(_any_leaf(a, _is_weather) for a in parsed),
    )


def unit_hash(*parts: object) -> float:
    """A stable number in [0, 1) for a visitor and a purpose (holdout, weighted choice)."""
    digest = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def in_holdout(experience_id: int, unit: str, percent: float) -> bool:
    """Stable per profile (or per visitor while unknown): the same answer for every decision."""
    return percent > 0 and unit_hash(experience_id, "holdout", unit) * 100 < percent


# -- the decision ---------------------------------------------------------------------------------
@dataclass
class PlacementDecision:
    placement: str
    experience: LiveExperience | None
    variant: str | None
    content: dict[str, Any] | None
    holdout: bool
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {
            "experience": self.experience.definition.name if self.experience else None,
            "variant": self.variant,
            "content": self.content,
            "holdout": self.holdout,
            "reason": self.reason,
        }


@dataclass
class Decision:
    request: DecideRequest
    now: datetime
    profile_id: str | None
    placements: list[PlacementDecision]
    traits: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        """The response: content per placement; trait values only when a secret key asked."""
        body: dict[str, Any] = {"decisions": {p.placement: p.as_json() for p in self.placements}}
        if self.traits is not None:
            body["traits"] = self.traits
        return body

    def exposure_rows(self, source_id: int, received_at: datetime) -> list[dict[str, Any]]:
        """One `Experience Viewed` log row per placement an experience decided."""
        rows = []
        stamp = received_at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        page = self.request.context.get("page")
        for p in self.placements:
            if p.experience is None:
                continue
            message_id = f"decide-{uuid.uuid4()}"
            properties = {
                "experience": p.experience.definition.name,
                "experience_id": p.experience.id,
                "version": p.experience.version,
                "placement": p.placement,
                "variant": p.variant,
                "holdout": p.holdout,
                "reason": p.reason,
            }
            message: dict[str, Any] = {
                "type": "track",
                "event": EXPERIENCE_VIEWED,
                "messageId": message_id,
                "properties": properties,
                "context": {"page": page} if isinstance(page, dict) else {},
                "timestamp": stamp,
                "receivedAt": stamp,
            }
            if self.request.user_id is not None:
                message["userId"] = self.request.user_id
            if self.request.anonymous_id is not None:
                message["anonymousId"] = self.request.anonymous_id
            rows.append(
                {
                    "source_id": source_id,
                    "message_id": message_id,
                    "type": "track",
                    "event": EXPERIENCE_VIEWED,
                    "user_id": self.request.user_id,
                    "anonymous_id": self.request.anonymous_id,
                    "received_at": received_at,
                    "sent_at": None,
                    "original_timestamp": None,
                    "timestamp": received_at,
                    "payload": message,
                }
            )
        return rows


def choose(live: LiveExperience, view: VisitorView, unit: str, now: datetime) -> tuple[int | None, str]:
    """The variant index the strategy picks for this visitor (None: no variant matches)."""
    definition = live.definition
    candidates = [
        i
        for i, audience in enumerate(live.variant_audiences)
        if audience is None or matches(audience, view, now)
    ]
    if not candidates:
        return None, "no_match"
    if definition.strategy == "first_match":
        return candidates[0], "matched"
    if definition.strategy == "weighted":
        weighted = [i for i in candidates if definition.variants[i].weight > 0]
        if not weighted:
            return None, "no_match"
        total = sum(definition.variants[i].weight for i in weighted)
        point = unit_hash(live.id, "variant", unit) * total
        for i in weighted:
            point -= definition.variants[i].weight
            if point < 0:
                return i, "matched"
        return weighted[-1], "matched"
    best, best_score = candidates[0], float("-inf")
    for i in candidates:
        score = _score(definition.variants[i].score, view)
        if score > best_score:
            best, best_score = i, score
    return best, "matched"


def _score(spec: str | None, view: VisitorView) -> float:
    if spec is None:
        return float("-inf")
    kind, _, name = spec.partition(":")
    source = {"computed": view.computed, "predicted": view.predicted, "trait": view.traits}[kind]
    value = source.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return float("-inf")
    return float(value)


def decide_placement(
    placement: str, candidates: Sequence[LiveExperience], view: VisitorView, unit: str, now: datetime
) -> PlacementDecision:
    """The first experience (by priority) whose audience holds decides the placement."""
    for live in candidates:
        if live.audience is not None and not matches(live.audience, view, now):
            continue
        definition = live.definition
        if view.profile_id is None and definition.fallback is not None:
            return PlacementDecision(placement, live, None, definition.fallback, False, "unknown_visitor")
        index, reason = choose(live, view, unit, now)
        if index is None:
            return PlacementDecision(placement, live, None, definition.default, False, reason)
        variant = definition.variants[index]
        if in_holdout(live.id, unit, definition.holdout_percent):
            return PlacementDecision(placement, live, variant.name, definition.default, True, "holdout")
        return PlacementDecision(placement, live, variant.name, variant.content, False, reason)
    return PlacementDecision(placement, None, None, None, False, "no_experience")


class Decider:
    """Decides for one server process: caches experiences and segment names between requests."""

    def __init__(self, engine: sa.Engine, settings: Settings, rules: IdentityRules | None = None) -> None:
        self.engine = engine
        self.rules = rules or IdentityRules.from_env()
        self.gap = timedelta(minutes=settings.session_gap_minutes)
        self._lock = threading.Lock()
        self._checked = 0.0
        self._stamp: tuple[Any, ...] | None = None
        self._by_placement: dict[str, list[LiveExperience]] = {}
        self._segment_names: dict[int, str] = {}
        self._weather: dict[tuple[str, str], tuple[float, Weather | None]] = {}
        self._reads = VisitorReads(engine.dialect)

    # -- caches -----------------------------------------------------------------------------------
    def _experiences(self, conn: sa.Connection) -> dict[str, list[LiveExperience]]:
        now = time.monotonic()
        if now - self._checked < CACHE_SECONDS and self._stamp is not None:
            return self._by_placement
        stamp = tuple(
            conn.execute(
                sa.select(
                    sa.func.count(), sa.func.max(experiences.c.updated_at), sa.func.sum(experiences.c.version)
                )
            ).one()
        ) + tuple(conn.execute(sa.select(sa.func.count(), sa.func.max(segments.c.id))).one())
        with self._lock:
            if stamp != self._stamp:
                self._load(conn)
                self._stamp = stamp
            self._checked = now
        return self._by_placement

    def _load(self, conn: sa.Connection) -> None:
        rows = conn.execute(
            sa.select(experiences.c.id, experiences.c.version, experiences.c.definition)
            .where(experiences.c.enabled.is_(True))
            .order_by(experiences.c.id)
        ).all()
        by_placement: dict[str, list[LiveExperience]] = {}
        for row in rows:
            try:
                live = compile_experience(row.id, row.version, row.definition)
            except ValueError:
                continue  # stored definitions are validated on write; one from an older version is skipped
            by_placement.setdefault(live.definition.placement, []).append(live)
        for group in by_placement.values():
            group.sort(key=lambda e: (-e.definition.priority, e.id))
        self._by_placement = by_placement
        self._segment_names = {r.id: r.name for r in conn.execute(sa.select(segments.c.id, segments.c.name))}

    def is_quick(self, placements: Sequence[str]) -> bool:
        """Whether deciding these placements reads only a few indexed rows (no experience in play
        has a history `event` condition, which loads the profile's events)."""
        by_placement = self._by_placement
        return self._stamp is not None and not any(
            e.needs_history for p in placements for e in by_placement.get(p, ())
        )

    def invalidate(self) -> None:
        """Re-read experiences at the next decision (after a change in this process)."""
        self._stamp = None

    def _weather_for(self, conn: sa.Connection) -> Callable[[list[str], str], Weather | None]:
        def find(regions: list[str], day: str) -> Weather | None:
            key = ("|".join(regions), day)
            hit = self._weather.get(key)
            if hit and hit[0] > time.monotonic():
                return hit[1]
            found = lookup(conn, regions, day)
            if len(self._weather) > 10_000:
                self._weather.clear()
            self._weather[key] = (time.monotonic() + 60, found)
            return found

        return find

    # -- one decision -----------------------------------------------------------------------------
    def decide(
        self, request: DecideRequest, *, now: datetime | None = None, reveal_traits: bool = False
    ) -> Decision:
        now = now or datetime.now(UTC)
        with self.engine.connect() as conn:
            by_placement = self._experiences(conn)
            wanted = [by_placement.get(p, []) for p in request.placements]
            needed = [e for group in wanted for e in group]
            view = self._view(conn, request, now, needed)
            unit = view.profile_id or request.user_id or request.anonymous_id or ""
            placements = [
                decide_placement(p, group, view, unit, now)
                for p, group in zip(request.placements, wanted, strict=True)
            ]
        traits = None
        if reveal_traits:
            traits = {name: view.traits.get(name) for name in request.traits}
        return Decision(request, now, view.profile_id, placements, traits)

    def _identifiers(self, request: DecideRequest) -> list[Identifier]:
        found = []
        for kind, raw in (("user_id", request.user_id), ("anonymous_id", request.anonymous_id)):
            if raw is not None and (ident := self.rules.normalise(kind, raw)) is not None:
                found.append(ident)
        return found

    def _view(
        self, conn: sa.Connection, request: DecideRequest, now: datetime, needed: Sequence[LiveExperience]
    ) -> VisitorView:
        idents = self._identifiers(request)
        reads = self._reads
        profile_id = reads.profile_of(conn, idents)
        traits: dict[str, Any] = {}
        computed: dict[str, Any] = {}
        predicted: dict[str, Any] = {}
        member_of: frozenset[str] = frozenset()
        first_seen = None
        recent: list[SessionEvent] = []
        if profile_id is not None:
            row = reads.profile.first(conn, {"pid": profile_id})
            if row is not None:
                traits, computed, predicted = row[0] or {}, row[1] or {}, row[2] or {}
                first_seen = row[3]
            names = self._segment_names
            member_of = frozenset(
                names[sid] for (sid,) in reads.memberships.rows(conn, {"pid": profile_id}) if sid in names
            )
            recent = reads.session_events(conn, profile_id, now - SESSION_LOOKBACK)
        recent += reads.unprocessed_events(conn, request, now - SESSION_LOOKBACK)
        session = current_session(recent, now, self.gap)
        context = live_context(
            request.context,
            now,
            known_visitor=profile_id is not None,
            weather=self._weather_for(conn) if any(e.needs_weather for e in needed) else None,
        )
        history: Callable[[], list[OracleEvent]] = lambda: []  # noqa: E731
        if profile_id is not None and any(e.needs_history for e in needed):
            history = _history_loader(conn, profile_id)
        return VisitorView(
            profile_id,
            traits,
            computed,
            predicted,
            member_of,
            session,
            session_facts(session, now, first_seen, context),
            context,
            history,
        )


_PROFILE_OF = sa.select(identities.c.profile_id).where(
    identities.c.type == sa.bindparam("type"), identities.c.value == sa.bindparam("value")
)


_PROFILE = sa.select(
    profiles.c.traits, profiles.c.computed, profiles.c.predicted, profiles.c.first_seen
).where(profiles.c.id == sa.bindparam("pid"))
_MEMBERSHIPS = sa.select(segment_memberships.c.segment_id).where(
    segment_memberships.c.profile_id == sa.bindparam("pid"), segment_memberships.c.exited_at.is_(None)
)
_SESSION_EVENTS = (
    sa.select(profile_events.c.type, profile_events.c.ts, events.c.payload)
    .join(events, events.c.id == profile_events.c.event_id)
    .where(
        profile_events.c.profile_id == sa.bindparam("pid"),
        profile_events.c.ts >= sa.bindparam("since"),
        activity(profile_events.c.type, profile_events.c.name),
    )
    .order_by(profile_events.c.ts.desc())
    .limit(SESSION_EVENTS)
)


class VisitorReads:
    """The indexed reads of one decision, as `FastSelect`s (compiled once for the engine)."""

    def __init__(self, dialect: sa.engine.Dialect) -> None:
        self._profile_of = FastSelect(_PROFILE_OF, dialect)
        self.profile = FastSelect(_PROFILE, dialect)
        self.memberships = FastSelect(_MEMBERSHIPS, dialect)
        self._session_events = FastSelect(_SESSION_EVENTS, dialect)
        self.tail = LogTail(dialect, TAIL_WINDOW)

    def profile_of(self, conn: sa.Connection, idents: Iterable[Identifier]) -> str | None:
        """The profile of the strongest identifier that has one (user id before anonymous id):
        one indexed lookup each, stopping at the first found."""
        for ident in idents:
            found = self._profile_of.first(conn, {"type": ident.type, "value": ident.value})
            if found and found[0]:
                return str(found[0])
        return None

    def session_events(self, conn: sa.Connection, profile_id: str, since: datetime) -> list[SessionEvent]:
        """The profile's processed events since `since` (newest `SESSION_EVENTS`), with their
        context from the log (profile_events keeps properties only)."""
        rows = self._session_events.rows(conn, {"pid": profile_id, "since": since})
        return [session_event(kind, ts, payload_of(payload)) for kind, ts, payload in rows]

    def unprocessed_events(
        self, conn: sa.Connection, request: DecideRequest, since: datetime
    ) -> list[SessionEvent]:
        """The visitor's events in the log that the processor has not reached yet (the live edge
        of the session: a page view sent a moment before the decision)."""
        return self.tail.events_for(conn, request.anonymous_id, request.user_id, since)


def _history_loader(conn: sa.Connection, profile_id: str) -> Callable[[], list[OracleEvent]]:
    loaded: list[OracleEvent] | None = None

    def load() -> list[OracleEvent]:
        nonlocal loaded
        if loaded is None:
            loaded = [
                OracleEvent(r.name, r.type, r.ts, payload_of(r.properties))
                for r in conn.execute(
                    sa.select(
                        profile_events.c.name,
                        profile_events.c.type,
                        profile_events.c.ts,
                        profile_events.c.properties,
                    ).where(profile_events.c.profile_id == profile_id)
                )
            ]
        return loaded

    return load
