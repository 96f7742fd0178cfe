"""Running the processor continuously: in a thread (embedded use, tests), in a child process that
`opencdp serve` starts and supervises (`process.supervisor`), or as `opencdp worker`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from opencdp import logs
from opencdp.process.processor import Processor
from opencdp.store.dialect import retry_pending_purge

log = logs.get("opencdp.processor")
#: how often a caught-up processor tries a checkpoint an erasure still owes
PURGE_RETRY_SECONDS = 5.0


class Signal(Protocol):
    """What `threading.Event` and `multiprocessing.Event` have in common."""

    def set(self) -> None: ...
    def clear(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class ProcessorLoop:
    """Wakes when the log writer commits (or every `idle_seconds`) and processes until caught up.
    `on_progress` is called after each step that did work: the delivery loop beside it sends what
    the step put in the outbox now rather than at its next poll."""

    def __init__(
        self,
        processor: Processor,
        idle_seconds: float = 0.25,
        refresh_seconds: float = 3600.0,
        wake: Signal | None = None,
        stop: Signal | None = None,
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        self.processor = processor
        self.on_progress = on_progress
        self.refresh_seconds = refresh_seconds
        self._next_refresh = time.monotonic() + refresh_seconds
        self._next_purge_try = 0.0
        self.idle_seconds = idle_seconds
        self._wake: Signal = wake or threading.Event()
        self._stop: Signal = stop or threading.Event()
        self._thread: threading.Thread | None = None
        self._predicting: threading.Thread | None = None

    def notify(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="opencdp-processor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _predictions(self) -> None:
        """Due prediction models (refit monthly, rescored daily) run beside processing, in their
        own thread, so a long fit never holds events up."""
        if self._predicting is not None and self._predicting.is_alive():
            return
        from opencdp.predict.runner import run_due

        engine = self.processor.engine
        self._predicting = threading.Thread(
            target=run_due, args=(engine,), name="opencdp-predict", daemon=True
        )
        self._predicting.start()

    def _owed_purge(self) -> None:
        """Caught up: if an erasure's checkpoint could not complete under load, try it again
        (at most every `PURGE_RETRY_SECONDS`)."""
        now = time.monotonic()
        if now < self._next_purge_try:
            return
        self._next_purge_try = now + PURGE_RETRY_SECONDS
        if retry_pending_purge(self.processor.engine):
            log.info("the checkpoint an erasure owed is done: no old copy of its rows is left")

    def run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                while not self._stop.is_set() and self.processor.step():
                    if self.on_progress is not None:
                        self.on_progress()
                self._owed_purge()
                if self.refresh_seconds > 0 and time.monotonic() >= self._next_refresh:
                    from opencdp.process.schedule import refresh_all

                    self._next_refresh = time.monotonic() + self.refresh_seconds
                    log.info("scheduled refresh", profiles=refresh_all(self.processor.engine))
                    self._predictions()
            except Exception:
                log.exception("processing failed; retrying")
                time.sleep(1.0)
                continue
            self._wake.wait(self.idle_seconds)
