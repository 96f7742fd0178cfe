"""A journey's definition: a JSON document validated into these models. Errors carry the path
(`steps.2.send.destination`) like the segment language's do.

    {"entry": {"event": "Checkout Started"},   # or {"segment": …}, {"computed": …}, {"schedule": …},
                                                # {"struggling": {"form_id": "signup"}}
     "exit_on": [{"event": "Order Completed"}], "goal": {"event": "Order Completed"},
     "reentry": {"after_days": 1},
     "steps": [
        {"id": "wait", "wait": {"hours": 2}},
        {"id": "mail", "send": {"destination": "email", "channel": "email",
                                 "content": {"subject": "Your cart", "coupon": "SAVE25"}}},
        {"id": "wait more", "wait": {"days": 2}},
        {"id": "ads", "tag": {"add": "abandoned_checkout"}}]}
"""

from __future__ import annotations

from datetime import time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from opencdp.segments.language import CriteriaError, PropertyCondition, parse_criteria

EXIT = "exit"
MAX_STEPS = 100
Scalar = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Duration(_Strict):
    minutes: float = Field(default=0, ge=0)
    hours: float = Field(default=0, ge=0)
    days: float = Field(default=0, ge=0)

    @property
    def seconds(self) -> float:
        return self.minutes * 60 + self.hours * 3600 + self.days * 86400

    @model_validator(mode="after")
    def _positive(self) -> Duration:
        if self.seconds <= 0:
            raise ValueError("give minutes, hours or days above 0")
        if self.seconds > 366 * 86400:
            raise ValueError("at most a year")
        return self


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)") from None
    return name


def _clock(text: str) -> str:
    try:
        time.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time of day like 09:00") from None
    return text


class EventMatch(_Strict):
    """An event by name, with conditions on its properties."""

    event: str = Field(min_length=1, max_length=200)
    where: list[PropertyCondition] = Field(default_factory=list, max_length=50)


class SegmentEntry(_Strict):
    segment: str = Field(min_length=1, max_length=200)
    on: Literal["entered", "exited"] = "entered"


class TraitEntry(_Strict):
    """A computed trait changes (to `to`, if given)."""

    computed: str = Field(min_length=1, max_length=200)
    to: Scalar | None = None


class Struggle(_Strict):
    form_id: str | None = Field(None, min_length=1, max_length=200)


class StrugglingEntry(_Strict):
    """A visitor starts struggling with a form (`personalise.forms.struggling`: errors on one field
    in a short time), decided when the `Form Field Errored` event that makes it so is processed;
    `form_id` narrows it to one form."""

    struggling: Struggle


class Schedule(_Strict):
    every: Literal["day", "week"]
    day: Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] | None = None
    at: str = "09:00"
    timezone: str = "UTC"

    _at = field_validator("at")(_clock)
    _tz = field_validator("timezone")(_zone)

    @model_validator(mode="after")
    def _day_for_weeks(self) -> Schedule:
        if self.every == "week" and self.day is None:
            raise ValueError("a weekly schedule needs a day")
        if self.every == "day" and self.day is not None:
            raise ValueError("a daily schedule takes no day")
        return self


class ScheduleEntry(_Strict):
    """Every member of `audience` (a segment) enters at each occurrence of the schedule."""

    schedule: Schedule
    audience: str = Field(min_length=1, max_length=200)


class Reentry(_Strict):
    after_days: float = Field(gt=0, le=3650)


class Cap(_Strict):
    max: int = Field(ge=1, le=1000)
    days: float = Field(gt=0, le=365)


class Caps(_Strict):
    """Sends a profile may get in a window, counted over all journeys: in all, and per channel."""

    per_profile: Cap | None = None
    per_channel: dict[str, Cap] = Field(default_factory=dict)


class QuietHours(_Strict):
    start: str
    end: str
    timezone: str = "UTC"

    _start = field_validator("start")(_clock)
    _end = field_validator("end")(_clock)
    _tz = field_validator("timezone")(_zone)


class _Step(_Strict):
    id: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")
    next: str | None = None  # default: the following step (or the end)


class WaitStep(_Step):
    wait: Duration


class WaitFor(_Strict):
    event: str = Field(min_length=1, max_length=200)
    where: list[PropertyCondition] = Field(default_factory=list, max_length=50)
    within: Duration
    then: str | None = None  # when it happens (default: the next step)
    timeout: str | None = None  # when it does not (default: the next step)


class WaitForStep(_Step):
    wait_for: WaitFor


class Branch(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    if_: Any = Field(alias="if")
    then: str
    else_: str = Field(alias="else")


class BranchStep(_Step):
    branch: Branch


class Send(_Strict):
    destination: str = Field(min_length=1, max_length=200)
    channel: str = Field(default="default", min_length=1, max_length=50)
    #: what the destination's templates see as `content` (subject, coupon, …)
    content: dict[str, Any] = Field(default_factory=dict)


class SendStep(_Step):
    send: Send


class SetTraitsStep(_Step):
    set_traits: dict[str, Scalar | None] = Field(min_length=1, max_length=50)


class TagChange(_Strict):
    add: str | None = Field(default=None, min_length=1, max_length=100)
    remove: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _one(self) -> TagChange:
        if (self.add is None) == (self.remove is None):
            raise ValueError("give exactly one of add or remove")
        return self


class TagStep(_Step):
    tag: TagChange


class ExitStep(_Step):
    exit: Literal[True]


def _kind_of(keys: tuple[str, ...]) -> Any:
    """Which model a document is, by the key that names what it does (so an error names the
    problem in that model instead of listing every alternative)."""

    def pick(value: Any) -> str | None:
        if isinstance(value, dict):
            return next((k for k in keys if k in value), None)
        return next((k for k in keys if hasattr(value, k)), None)

    return Discriminator(pick)


STEP_KINDS = ("wait", "wait_for", "branch", "send", "set_traits", "tag", "exit")
Step = Annotated[
    Annotated[WaitStep, Tag("wait")]
    | Annotated[WaitForStep, Tag("wait_for")]
    | Annotated[BranchStep, Tag("branch")]
    | Annotated[SendStep, Tag("send")]
    | Annotated[SetTraitsStep, Tag("set_traits")]
    | Annotated[TagStep, Tag("tag")]
    | Annotated[ExitStep, Tag("exit")],
    _kind_of(STEP_KINDS),
]
Entry = Annotated[
    Annotated[EventMatch, Tag("event")]
    | Annotated[SegmentEntry, Tag("segment")]
    | Annotated[TraitEntry, Tag("computed")]
    | Annotated[ScheduleEntry, Tag("schedule")]
    | Annotated[StrugglingEntry, Tag("struggling")],
    _kind_of(("schedule", "event", "segment", "computed", "struggling")),
]


class JourneyDefinition(_Strict):
    entry: Entry
    #: who may enter (segment criteria, checked at entry)
    criteria: Any = None
    reentry: Literal["once", "always"] | Reentry = "once"
    exit_on: list[EventMatch] = Field(default_factory=list, max_length=20)
    goal: EventMatch | None = None
    caps: Caps = Field(default_factory=Caps)
    quiet_hours: QuietHours | None = None
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)

    @model_validator(mode="after")
    def _targets(self) -> JourneyDefinition:
        ids = [s.id for s in self.steps]
        if len(set(ids)) != len(ids):
            raise ValueError("step ids must be unique")
        if EXIT in ids:
            raise ValueError(f"{EXIT!r} is reserved for leaving the journey; name the step otherwise")
        known = set(ids) | {EXIT}
        for step in self.steps:
            targets = [step.next]
            if isinstance(step, BranchStep):
                targets += [step.branch.then, step.branch.else_]
            if isinstance(step, WaitForStep):
                targets += [step.wait_for.then, step.wait_for.timeout]
            for target in targets:
                if target is not None and target not in known:
                    raise ValueError(f"step {step.id!r} goes to {target!r}, which is no step (or 'exit')")
        return self

    def step(self, step_id: str) -> Any:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def after(self, step: Any) -> str:
        """Where a step goes when it has no `next`: the following step, or the end (exit)."""
        if step.next is not None:
            return str(step.next)
        ids = [s.id for s in self.steps]
        i = ids.index(step.id)
        return ids[i + 1] if i + 1 < len(ids) else EXIT


_ENTRIES = ("event", "segment", "computed", "schedule")
_KIND_TAGS = set(STEP_KINDS) | set(_ENTRIES)


class JourneyDefinitionError(ValueError):
    """Problems with a journey's definition, each with its path."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{p['path'] or '(root)'}: {p['problem']}" for p in problems))
        self.problems = problems


def parse_definition(document: Any) -> JourneyDefinition:
    try:
        journey = JourneyDefinition.model_validate(document)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = [
                p
                for i, p in enumerate(error["loc"])
                if not (p in _KIND_TAGS and error["loc"][i + 1 :][:1] == (p,))
            ]
            path = ".".join(str(p) for p in loc)
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "union_tag_not_found":
                message = (
                    f"say what it does with one of: {', '.join(STEP_KINDS if 'steps' in path else _ENTRIES)}"
                )
            problems.append({"path": path, "problem": message})
        raise JourneyDefinitionError(problems) from None
    criteria = [("criteria", journey.criteria)] if journey.criteria is not None else []
    criteria += [
        (f"steps.{i}.branch.if", s.branch.if_)
        for i, s in enumerate(journey.steps)
        if isinstance(s, BranchStep)
    ]
    for where, document in criteria:
        try:
            parse_criteria(document)
        except CriteriaError as exc:
            raise JourneyDefinitionError(
                [{"path": f"{where}.{p['path']}".rstrip("."), "problem": p["problem"]} for p in exc.problems]
            ) from None
    return journey
