"""Channel preference: which channel each person answers on, and how long they have been ignoring one.

Not a learned model but a score with the `Job` interface, so it is stored, refit and rebuilt like the
others. Per profile and channel it counts the messages received, the responses (opens, clicks,
replies, taps; on web and app, where nobody sends a message, the visits: sessions of page or screen
views), the messages that got a response, the last response and `ignored_last`: how many of the
newest messages on the channel came after the last response. A response answers the newest message
received before it on its channel, so an open and a click of one e-mail answer it once and the rate
never passes 1. The preferred channel is the one with the best response rate smoothed towards the
rate of everyone (a Beta prior of `prior_strength` pseudo-messages), so one answer to one message
does not beat 40 of 60; it needs at least `min_responded` answered messages, and a tie is no
preference.

Everything is one SQL statement with window functions, grouped by (profile, channel) and streamed
in profile order: the database does the per-event work, Python sees one row per profile and channel.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.predict.model import Fitted, TooThin
from opencdp.store.dialect import epoch_seconds
from opencdp.store.schema import profile_events

KIND = "channels"
TRAITS = ["preferred_channel", "channels", "email_ignored_last"]

#: Per channel: the events that are a message to the person (`received`, in order of preference:
#: a profile's messages are counted from the first of these names it has, so a sender that reports
#: both "Sent" and "Delivered" is not counted twice), the events that answer one (`response`), and
#: the person's own visits (`visit` track events and `visit_types` calls, counted as sessions).
#: Names follow the Segment spec where it has them: e-mail (Email Delivered, Email Opened, Email Link
#: Clicked), mobile (Push Notification Received / Tapped, Application Opened); SMS and calls by analogy.
DEFAULT_CHANNELS: dict[str, dict[str, list[str]]] = {
    "email": {
        "received": ["Email Delivered", "Email Sent"],
        "response": ["Email Opened", "Email Link Clicked", "Email Replied"],
    },
    "sms": {
        "received": ["SMS Delivered", "SMS Sent"],
        "response": ["SMS Replied", "SMS Link Clicked"],
    },
    "push": {
        "received": ["Push Notification Received"],
        "response": ["Push Notification Tapped", "Push Notification Opened"],
    },
    "web": {"visit_types": ["page"]},
    "app": {"visit_types": ["screen"], "visit": ["Application Opened"]},
    "call_centre": {
        "received": ["Call Attempted"],
        "response": ["Call Answered", "Call Completed"],
    },
}
ROLES = ("received", "response", "visit", "visit_types")
DEFAULTS: dict[str, Any] = {
    "session_minutes": 30,  # page or screen views closer than this are one visit
    "prior_strength": 10.0,  # pseudo-messages of the prior: how much evidence outweighs the average
    "prior_mean": None,  # None: the response rate of everyone, measured at fit
    "fallback_prior_mean": 0.2,  # when nobody has received anything yet
    "min_responded": 1,  # a channel is preferred only where the person has answered at least this often
}


def channel_config(options: Mapping[str, Any]) -> dict[str, dict[str, list[str]]]:
    """The defaults with `options["channels"]` laid over them: a channel given replaces its roles
    one by one (`{"sms": {"received": ["Text Sent"]}}`), null removes a whole channel, and an unknown
    name adds one. Refuses shapes that would silently count nothing."""
    config = {name: {role: list(v) for role, v in roles.items()} for name, roles in DEFAULT_CHANNELS.items()}
    overrides = options.get("channels") or {}
    if not isinstance(overrides, Mapping):
        raise ValueError("options.channels must be an object of channel → {role: [event names]}")
    for name, roles in overrides.items():
        if roles is None:
            config.pop(name, None)
            continue
        if not isinstance(roles, Mapping) or set(roles) - set(ROLES):
            raise ValueError(f"options.channels.{name} must be an object with keys among {', '.join(ROLES)}")
        for role, names in roles.items():
            if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
                raise ValueError(f"options.channels.{name}.{role} must be a list of event names")
        config.setdefault(name, {}).update({role: list(names) for role, names in roles.items()})
    seen: dict[tuple[str, str], str] = {}
    for name, roles in config.items():
        for role, names in roles.items():
            kind = "call" if role == "visit_types" else "event"
            for event in names:
                if (kind, event) in seen:
                    raise ValueError(f"{kind} {event!r} is mapped twice ({seen[kind, event]} and {name})")
                seen[kind, event] = name
    return config


def _flag(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.case((condition, 1), else_=0)


def channel_rows(
    config: dict[str, dict[str, list[str]]], at: datetime, session_minutes: float
) -> sa.Select[Any]:
    """One row per (profile, channel) with data up to `at`, in profile order: received, responses,
    responded, last_response_at, ignored_last."""
    pe = profile_events
    channel_of: dict[str, str] = {}
    role_of: dict[str, str] = {}
    priority_of: dict[str, int] = {}
    call_channel: dict[str, str] = {}
    for name, roles in config.items():
        for role in ("received", "response", "visit"):
            for rank, event in enumerate(roles.get(role, [])):
                channel_of[event], role_of[event] = name, role
                priority_of[event] = rank
        for call in roles.get("visit_types", []):
            call_channel[call] = name
    is_track = pe.c.type == "track"
    names = sorted(channel_of)
    calls = sorted(call_channel)
    # Level 1: each relevant event with its channel, role and (for messages) the rank of its name.
    mapped = (
        sa.select(
            pe.c.profile_id,
            pe.c.event_id,
            pe.c.ts,
            sa.case(
                (is_track, sa.case(channel_of, value=pe.c.name) if names else sa.null()),
                else_=sa.case(call_channel, value=pe.c.type) if calls else sa.null(),
            ).label("channel"),
            sa.case(
                (is_track, sa.case(role_of, value=pe.c.name) if names else sa.null()), else_="visit"
            ).label("role"),
            sa.case(
                (is_track, sa.case(priority_of, value=pe.c.name, else_=0) if names else 0), else_=0
            ).label("rank"),
        )
        .where(pe.c.ts <= at)
        .where(sa.or_(sa.and_(is_track, pe.c.name.in_(names)), pe.c.type.in_(calls)))
        .subquery("mapped")
    )
    # Level 2: the message name this profile reports on this channel (the first in the list it has).
    ranked = sa.select(
        mapped,
        sa.func.min(sa.case((mapped.c.role == "received", mapped.c.rank)))
        .over(partition_by=[mapped.c.profile_id, mapped.c.channel])
        .label("message_rank"),
    ).subquery("ranked")
    # Level 3: `message_no`: how many messages had arrived (this one included) when the event
    # happened; a response answers message `message_no`. `previous`: the last visit before a visit.
    is_message = sa.and_(ranked.c.role == "received", ranked.c.rank == ranked.c.message_rank)
    order = [ranked.c.ts, ranked.c.event_id]
    numbered = sa.select(
        ranked,
        _flag(is_message).label("is_message"),
        sa.func.sum(_flag(is_message))
        .over(partition_by=[ranked.c.profile_id, ranked.c.channel], order_by=order, rows=(None, 0))
        .label("message_no"),
        sa.func.lag(ranked.c.ts)
        .over(partition_by=[ranked.c.profile_id, ranked.c.channel, ranked.c.role], order_by=order)
        .label("previous"),
    ).subquery("numbered")
    n = numbered.c
    is_response = n.role == "response"
    new_visit = sa.and_(
        n.role == "visit",
        sa.or_(n.previous.is_(None), epoch_seconds(n.ts) - epoch_seconds(n.previous) > session_minutes * 60),
    )
    received = sa.func.sum(n.is_message)
    return (
        sa.select(
            n.profile_id,
            n.channel,
            received.label("received"),
            (sa.func.sum(_flag(is_response)) + sa.func.sum(_flag(new_visit))).label("responses"),
            sa.func.count(sa.distinct(sa.case((sa.and_(is_response, n.message_no > 0), n.message_no)))).label(
                "responded"
            ),
            sa.func.max(sa.case((n.role != "received", n.ts))).label("last_response_at"),
            (received - sa.func.coalesce(sa.func.max(sa.case((is_response, n.message_no))), 0)).label(
                "ignored_last"
            ),
        )
        .group_by(n.profile_id, n.channel)
        .order_by(n.profile_id, n.channel)
    )


def _check(settings: Mapping[str, Any]) -> None:
    def number(key: str) -> float:
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"options.{key} must be a number")
        return float(value)

    if number("session_minutes") <= 0 or number("prior_strength") < 0 or number("min_responded") < 0:
        raise ValueError(
            "options.session_minutes must be positive, prior_strength and min_responded not negative"
        )
    for key in ("prior_mean", "fallback_prior_mean"):
        if settings[key] is not None and not 0 < number(key) < 1:
            raise ValueError(f"options.{key} must be between 0 and 1")


def _prior(params: Mapping[str, Any]) -> tuple[float, float]:
    strength = float(params["prior_strength"])
    mean = float(params["prior_mean"])
    return mean * strength, (1.0 - mean) * strength


def preferred(channels: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any]) -> str | None:
    """The channel with the best smoothed response rate among those the person has answered on;
    None when there is none or the best two are level."""
    alpha, beta = _prior(params)
    rates = sorted(
        (
            ((c["responded"] + alpha) / (c["received"] + alpha + beta), name)
            for name, c in channels.items()
            if c["received"] > 0 and c["responded"] >= int(params["min_responded"])
        ),
        reverse=True,
    )
    if not rates or (len(rates) > 1 and abs(rates[0][0] - rates[1][0]) < 1e-12):
        return None
    return rates[0][1]


def _iso(moment: Any) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, str):  # an aggregate over a CASE can come back untyped on SQLite
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return str(moment.astimezone(UTC).isoformat().replace("+00:00", "Z"))


def _profiles(
    engine: sa.Engine, params: Mapping[str, Any], at: datetime
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(profile_id, {channel: counters}) for every profile with data, streamed in profile order."""
    query = channel_rows(params["channels"], at, float(params["session_minutes"]))
    current: str | None = None
    channels: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=5000).execute(query)
        for row in rows:
            if row.profile_id != current:
                if current is not None:
                    yield current, channels
                current, channels = row.profile_id, {}
            received, responded = int(row.received or 0), int(row.responded or 0)
            channels[row.channel] = {
                "received": received,
                "responses": int(row.responses or 0),
                "responded": responded,
                "response_rate": round(responded / received, 4) if received else None,
                "last_response_at": _iso(row.last_response_at),
                "ignored_last": int(row.ignored_last or 0),
            }
    if current is not None:
        yield current, channels


def _traits(channels: dict[str, dict[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
    order = list(params["order"])  # the mapping's own key order is not kept by JSONB
    ordered = {name: channels[name] for name in sorted(channels, key=order.index)}
    return {
        "preferred_channel": preferred(ordered, params),
        "channels": ordered,
        "email_ignored_last": int(ordered.get("email", {}).get("ignored_last", 0)),
    }


class ChannelPreference:
    """The `channels` job: fit measures everyone's response rate (the prior) and counts; score
    writes each profile's channels and preferred channel as of `at`."""

    kind = KIND

    def fit(self, engine: sa.Engine, until: datetime, options: dict[str, Any]) -> Fitted:
        settings = {key: options.get(key, default) for key, default in DEFAULTS.items()}
        _check(settings)
        config = channel_config(options)
        params: dict[str, Any] = {"channels": config, "order": list(config), **settings}
        totals = channel_rows(params["channels"], until, float(params["session_minutes"])).subquery()
        with engine.connect() as conn:
            per_channel = {
                row.channel: row
                for row in conn.execute(
                    sa.select(
                        totals.c.channel,
                        sa.func.count().label("profiles"),
                        sa.func.sum(totals.c.received).label("received"),
                        sa.func.sum(totals.c.responded).label("responded"),
                    ).group_by(totals.c.channel)
                )
            }
        if not per_channel:
            events = ", ".join(
                n for roles in params["channels"].values() for n in roles.get("received", [])[:1]
            )
            raise TooThin(
                f"no channel events up to {until.isoformat()} (e.g. {events}, page or screen calls)"
            )
        received = sum(int(r.received or 0) for r in per_channel.values())
        responded = sum(int(r.responded or 0) for r in per_channel.values())
        if params["prior_mean"] is None:
            measured = responded / received if received else float(params["fallback_prior_mean"])
            params["prior_mean"] = round(min(max(measured, 0.01), 0.99), 6)
        preferred_counts = dict.fromkeys(params["channels"], 0)
        profiles = without = 0
        for _, traits in self.score_from(engine, params, until):
            profiles += 1
            if traits["preferred_channel"] is None:
                without += 1
            else:
                preferred_counts[traits["preferred_channel"]] += 1
        quality = {
            "profiles": profiles,
            "profiles_with_data": {name: int(r.profiles) for name, r in per_channel.items()},
            "received": {name: int(r.received or 0) for name, r in per_channel.items()},
            "responded": {name: int(r.responded or 0) for name, r in per_channel.items()},
            "preferred": preferred_counts,
            "no_preference": without,
            "prior_mean": params["prior_mean"],
        }
        return Fitted(
            kind=KIND,
            name=str(options.get("name", KIND)),
            trained_at=datetime.now(UTC),
            window={"train_until": until.isoformat()},
            features=list(params["order"]),
            params=params,
            quality=quality,
            traits=list(TRAITS),
            options=dict(options),
        )

    def score(self, engine: sa.Engine, fitted: Fitted, at: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
        return self.score_from(engine, fitted.params, at)

    def score_from(
        self, engine: sa.Engine, params: Mapping[str, Any], at: datetime
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        for profile_id, channels in _profiles(engine, params, at):
            yield profile_id, _traits(channels, params)


JOBS = {KIND: ChannelPreference()}
