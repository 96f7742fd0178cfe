"""`AccountsService`: what the hosted pages and the provider's endpoints share in one server
process — settings, password hasher, signing keys, the Authlib server, the sign-in throttle and
the log writer that turns what customers do into events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from opencdp.access.throttle import SignInThrottle
from opencdp.accounts.config import AccountSettings
from opencdp.accounts.events import AccountEvents, source_id
from opencdp.accounts.keys import SigningKeys
from opencdp.accounts.passwords import Passwords
from opencdp.accounts.provider import Provider
from opencdp.accounts.social import Discovery
from opencdp.system import OpenCDP


class AccountsService:
    def __init__(self, cdp: OpenCDP, settings: AccountSettings) -> None:
        self.cdp, self.settings, self.engine = cdp, settings, cdp.engine
        self.passwords = Passwords(slots=settings.hash_slots)
        self.keys = SigningKeys(cdp.engine, cdp.settings)
        self.provider = Provider(cdp.engine, self.keys, cdp.processor.rules, settings)
        self.throttle = SignInThrottle()
        #: wrong second-factor codes, apart from passwords: a right password never clears it
        self.code_throttle = SignInThrottle()
        #: the time second-factor codes are checked against (seconds since the epoch)
        self.clock: Callable[[], float] = time.time
        self._events: AccountEvents | None = None
        #: social logins' discovery documents and keys, cached for every provider
        self.social_discovery = Discovery()
        self._social_events: dict[str, AccountEvents] = {}

    @property
    def session_lifetime(self) -> timedelta:
        return timedelta(hours=self.settings.session_hours)

    def events(self) -> AccountEvents:
        if self._events is None:
            self._events = AccountEvents(source_id(self.engine))
        return self._events

    def social_events(self, provider: str) -> AccountEvents:
        """Events from the built-in source `social:<provider>`: the trait source of its claims."""
        if provider not in self._social_events:
            self._social_events[provider] = AccountEvents(source_id(self.engine, f"social:{provider}"))
        return self._social_events[provider]

    async def log(self, rows: list[dict[str, Any]]) -> None:
        """Hand the rows to the collector's log writer and wait until they are committed: a
        customer is told "done" only when the sign-up or consent is durable."""
        if rows:
            await asyncio.wrap_future(self.cdp.writer.submit(rows))
