"""The preference centre's model: what a customer sees of their own settings (consent per purpose,
interests, preferred channel) and the events a change becomes.

Nothing here writes a profile: every change is a message through the collector's log writer from
the built-in source `zero-party` (what customers say themselves), so processing applies it, the
360° view shows where it came from, `rebuild` reproduces it, and consent is recorded exactly as a
site's `context.consent` would record it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.accounts.surveys import Survey
from opencdp.collect.messages import Envelope, Limits, normalise
from opencdp.config import DEFAULT_PREFERENCE_INTERESTS
from opencdp.privacy.consent import list_purposes
from opencdp.privacy.consent_events import addressed_to, consent_message, system_source_id
from opencdp.store.schema import profiles

#: The built-in source of what customers tell the brand themselves; traits it sets show this source.
ZERO_PARTY = "zero-party"
#: Who changed consent, in the `Consent Updated` event's `changed_by`.
ACTOR = "customer:preference-centre"
CHANNELS = ("email", "sms", "push", "post", "none")


@dataclass(frozen=True)
class PreferenceOptions:
    """What the centre offers: the interests to tick and the channels to choose from."""

    interests: tuple[str, ...] = DEFAULT_PREFERENCE_INTERESTS
    channels: tuple[str, ...] = CHANNELS


@dataclass
class Preferences:
    """A customer's settings as the centre shows them. `consent`: every defined purpose with
    True (granted), False (withdrawn) or None (never asked: opt-in, so not consented)."""

    consent: dict[str, bool | None]
    descriptions: dict[str, str]
    interests: list[str] = field(default_factory=list)
    preferred_channel: str | None = None


def current_preferences(conn: sa.Connection, engine: sa.Engine, profile_id: str) -> Preferences:
    row = conn.execute(
        sa.select(profiles.c.consent, profiles.c.traits).where(profiles.c.id == profile_id)
    ).one()
    given = row.consent or {}
    traits = row.traits or {}
    purposes = list_purposes(engine)
    interests = traits.get("interests")
    channel = traits.get("preferred_channel")
    return Preferences(
        consent={p["name"]: given.get(p["name"]) for p in purposes},
        descriptions={p["name"]: p["description"] for p in purposes},
        interests=[i for i in interests if isinstance(i, str)] if isinstance(interests, list) else [],
        preferred_channel=channel if isinstance(channel, str) else None,
    )


class PreferenceError(ValueError):
    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name
        self.problem = problem


def wanted_from_form(
    form: dict[str, list[str]], shown: Preferences, options: PreferenceOptions
) -> tuple[dict[str, bool], list[str], str | None]:
    """What the submitted form asks for: consent for every purpose shown (an unticked box is a
    withdrawal), the interests ticked (only offered ones) and the channel chosen."""
    ticked = set(form.get("consent", []))
    unknown = ticked - set(shown.consent)
    if unknown:
        raise PreferenceError("consent", f"unknown purpose {sorted(unknown)[0]!r}")
    interests = form.get("interests", [])
    if bad := [i for i in interests if i not in options.interests and i not in shown.interests]:
        raise PreferenceError("interests", f"unknown interest {bad[0]!r}")
    channels = [c for c in form.get("preferred_channel", []) if c]
    if len(channels) > 1 or (channels and channels[0] not in options.channels):
        raise PreferenceError("preferred_channel", f"choose one of {', '.join(options.channels)}")
    return {p: p in ticked for p in shown.consent}, sorted(set(interests)), channels[0] if channels else None


def _row(conn: sa.Connection, profile_id: str, message: dict[str, Any], now: datetime) -> dict[str, Any]:
    addressed_to(conn, profile_id, message)
    message.setdefault("timestamp", now.isoformat())
    return normalise(message, Envelope(now), system_source_id(conn, ZERO_PARTY), Limits())


def preference_events(
    engine: sa.Engine,
    profile_id: str,
    shown: Preferences,
    consent: dict[str, bool],
    interests: list[str],
    channel: str | None,
) -> list[dict[str, Any]]:
    """Log rows for what changed against what the customer was shown: a `Consent Updated` per
    purpose whose answer differs (a never-asked purpose left unticked is recorded as withdrawn:
    the customer saw it and said no), and one identify with the changed traits."""
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for purpose, granted in sorted(consent.items()):
            if shown.consent.get(purpose) is not granted:
                rows.append(_row(conn, profile_id, consent_message(purpose, granted, None, ACTOR), now))
        traits: dict[str, Any] = {}
        if interests != sorted(shown.interests):
            traits["interests"] = interests
        if channel is not None and channel != shown.preferred_channel:
            traits["preferred_channel"] = channel
        if traits:
            message = {"type": "identify", "messageId": f"prefs-{uuid.uuid4()}", "traits": traits}
            rows.append(_row(conn, profile_id, message, now))
    return rows


def survey_events(
    engine: sa.Engine, profile_id: str, survey: Survey, answers: dict[str, Any]
) -> list[dict[str, Any]]:
    """An identify setting the answers as traits, and a `Survey Answered` event with the survey's
    name and the answers by question key (for segments and journeys on the answer itself)."""
    now = datetime.now(UTC)
    by_key = {q.key: answers[q.trait] for q in survey.questions if q.trait in answers}
    with engine.begin() as conn:
        return [
            _row(
                conn,
                profile_id,
                {"type": "identify", "messageId": f"survey-{uuid.uuid4()}", "traits": answers},
                now,
            ),
            _row(
                conn,
                profile_id,
                {
                    "type": "track",
                    "event": "Survey Answered",
                    "messageId": f"survey-{uuid.uuid4()}",
                    "properties": {"survey": survey.name, **by_key},
                },
                now,
            ),
        ]
