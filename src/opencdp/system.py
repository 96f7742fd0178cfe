"""`OpenCDP`: the running system. It owns the database engine, the key ring and the log writer,
so the HTTP layer, the CLI and tests all start and stop the same parts the same way."""

from __future__ import annotations

import sqlalchemy as sa

from opencdp.access.keys import KeyRing
from opencdp.activation.worker import DeliveryLoop, DeliveryWorker
from opencdp.collect.messages import Limits
from opencdp.collect.writer import LogWriter
from opencdp.config import Settings
from opencdp.identity.identifiers import IdentityRules
from opencdp.log.append import LogAppender
from opencdp.log.intake import Intake, intake_path
from opencdp.privacy.suppression import Suppressor
from opencdp.process.loop import ProcessorLoop
from opencdp.process.processor import Processor
from opencdp.process.supervisor import ProcessorProcess
from opencdp.store.database import open_database
from opencdp.store.dialect import retry_pending_purge


class OpenCDP:
    def __init__(
        self,
        settings: Settings,
        engine: sa.Engine | None = None,
        process: bool | None = None,
        separate_process: bool = False,
        deliver: bool | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine or open_database(settings)
        self.keys = KeyRing(self.engine, settings.key_cache_seconds)
        self.limits = Limits(settings.max_event_bytes, settings.max_nesting_depth)
        self.processor = Processor(self.engine, IdentityRules.from_env(), settings.process_chunk_size)
        self.suppressor = Suppressor(self.engine, self.processor.rules)
        #: By default events are processed beside collection: in a child process for `opencdp
        #: serve` (`separate_process`), in a thread for embedded use and tests.
        #: `OPENCDP_PROCESS_IN_SERVER=0` leaves it to separate `opencdp worker` processes.
        processing = settings.process_in_server if process is None else process
        #: The outbox is sent beside processing: in the processor's child process for `serve`, in a
        #: thread otherwise. `OPENCDP_DELIVER_IN_SERVER=0` leaves it to `opencdp worker`.
        self.deliveries: DeliveryLoop | None = None
        delivering = settings.deliver_in_server if deliver is None else deliver
        if delivering and not (separate_process and processing):
            self.deliveries = DeliveryLoop(DeliveryWorker(self.engine, settings))
        self.loop: ProcessorLoop | ProcessorProcess | None = None
        if processing:
            self.loop = (
                ProcessorProcess(settings)
                if separate_process
                else ProcessorLoop(
                    self.processor,
                    refresh_seconds=settings.refresh_seconds,
                    on_progress=self.deliveries.notify if self.deliveries else None,
                )
            )
        self.appender = LogAppender(self.engine.dialect.name, self.suppressor)
        #: SQLite with the processor child: the collector commits to the intake (log/intake.py)
        path = intake_path(self.engine)
        self.intake = (
            Intake(path, settings.sqlite_synchronous)
            if path and settings.intake and separate_process and processing
            else None
        )
        self.writer = LogWriter(
            self.engine, self.appender, on_commit=self.loop.notify if self.loop else None, intake=self.intake
        )
        self._started = False

    def start(self) -> None:
        if not self._started:
            if self.intake is not None:  # after a crash: what was acknowledged is in the log first
                self._drain_intake()
            self.writer.start()
            if self.loop:
                self.loop.start()
            if self.deliveries:
                self.deliveries.start()
            self._started = True

    def stop(self) -> None:
        if self._started:
            self.writer.close()
            if self.intake is not None:  # what was acknowledged is in the log when `serve` ends
                self._drain_intake()
                self.intake.close()
            retry_pending_purge(self.engine)  # an erasure's checkpoint still owed
            if self.loop:
                self.loop.stop()
            if self.deliveries:
                self.deliveries.stop()
            self._started = False

    def _drain_intake(self) -> None:
        while self.processor.move_intake():
            pass
