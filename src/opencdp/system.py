"""`OpenCDP`: the running system. It owns the database engine, the key ring and the log writer,
so the HTTP layer, the CLI and tests all start and stop the same parts the same way."""

from __future__ import annotations

import sqlalchemy as sa

from opencdp.access.keys import KeyRing
from opencdp.collect.messages import Limits
from opencdp.collect.writer import LogWriter
from opencdp.config import Settings
from opencdp.store.database import open_database


class OpenCDP:
    def __init__(self, settings: Settings, engine: sa.Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or open_database(settings)
        self.keys = KeyRing(self.engine, settings.key_cache_seconds)
        self.limits = Limits(settings.max_event_bytes, settings.max_nesting_depth)
        self.writer = LogWriter(self.engine)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self.writer.start()
            self._started = True

    def stop(self) -> None:
        if self._started:
            self.writer.close()
            self._started = False
