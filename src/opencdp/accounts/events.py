"""What happens in accounts, as events in the log (source `opencdp-accounts`).

The accounts tables hold credentials and sessions; everything about the person reaches the
profile through these events and the collector's log writer, so identity resolution, segments,
journeys (a welcome series on `Signed Up`) and `rebuild` treat accounts like any source:

- `identify` with the account id as `userId` (and a name, when given, as traits) at sign-up;
- `identify` with the **verified** e-mail once the customer followed the link: only then may
  identity resolution link the account to an existing profile with that address (an unverified
  address would let anyone attach themselves to someone else's profile);
- `Signed Up`, `Signed In` (`method`), `Password Reset`;
- `Consent Updated`, one per purpose, in exactly the shape the admin API writes
  (`privacy/consent_events.py`): `context.consent.purposes`, which processing folds into the
  profile's consent and its history.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.collect.messages import Envelope, Limits, normalise
from opencdp.privacy.consent_events import system_source_id

SOURCE = "opencdp-accounts"


def source_id(engine: sa.Engine, name: str = SOURCE) -> int:
    """The built-in source `name` (`opencdp-accounts`, or `social:<provider>` for what a social
    login's provider says about the person)."""
    for attempt in range(2):
        try:
            with engine.begin() as conn:
                return system_source_id(conn, name)
        except sa.exc.IntegrityError:  # made at the same moment by another process
            if attempt:
                raise
    raise AssertionError("unreachable")


class AccountEvents:
    """Builds log rows for one account's actions (`rows` are handed to the log writer)."""

    def __init__(self, source: int) -> None:
        self.source = source

    def _row(self, message: dict[str, Any], now: datetime | None) -> dict[str, Any]:
        message.setdefault("messageId", f"acct-{uuid.uuid4()}")
        message.setdefault("context", {})["library"] = {"name": "opencdp-accounts"}
        return normalise(message, Envelope(now or datetime.now(UTC)), self.source, Limits())

    def message(self, message: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
        """A log row for a message built elsewhere (a social login's identify)."""
        return self._row(message, now)

    def identify(
        self, account_id: str, traits: dict[str, Any], now: datetime | None = None
    ) -> dict[str, Any]:
        return self._row({"type": "identify", "userId": account_id, "traits": traits}, now)

    def track(
        self, account_id: str, event: str, properties: dict[str, Any], now: datetime | None = None
    ) -> dict[str, Any]:
        return self._row(
            {"type": "track", "userId": account_id, "event": event, "properties": properties}, now
        )

    def consent(
        self, account_id: str, choices: dict[str, bool], version: str | None, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """One `Consent Updated` per purpose, as `privacy.consent_events.consent_event` writes it."""
        return [
            self._row(
                {
                    "type": "track",
                    "userId": account_id,
                    "event": "Consent Updated",
                    "messageId": f"consent-{uuid.uuid4()}",
                    "properties": {
                        "purpose": purpose,
                        "granted": granted,
                        "version": version,
                        "changed_by": f"account:{account_id}",
                    },
                    "context": {"consent": {"purposes": {purpose: {"granted": granted, "version": version}}}},
                },
                now,
            )
            for purpose, granted in sorted(choices.items())
        ]
