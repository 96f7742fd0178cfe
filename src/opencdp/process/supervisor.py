"""The processor in its own process, started and supervised by `opencdp serve`.

In one process the collector and the processor share one GIL, so on the embedded default every
millisecond of profile work was taken from collection (docs/architecture.md §13). A child process
gets its own interpreter and core; the server wakes it after each commit of the log writer
through a shared event, and restarts it (with a growing pause) if it dies.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from typing import Any

from opencdp import logs
from opencdp.config import Settings

log = logs.get("opencdp.supervisor")
_CONTEXT = multiprocessing.get_context("spawn")  # no inherited threads, locks or connections


def _run_child(settings: Settings, wake: Any, stop: Any) -> None:
    """The child's main: process the log until told to stop."""
    from opencdp.identity.identifiers import IdentityRules
    from opencdp.process.loop import ProcessorLoop
    from opencdp.process.processor import Processor
    from opencdp.store.database import open_database

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: `serve` stops us
    logs.configure(settings.log_level, settings.log_format)
    engine = open_database(settings)
    loop = ProcessorLoop(
        Processor(
            engine,
            IdentityRules.from_env(),
            chunk_size=settings.process_chunk_size,
            max_hold_seconds=settings.process_max_hold_seconds,
        ),
        refresh_seconds=settings.refresh_seconds,
        wake=wake,
        stop=stop,
    )
    try:
        loop.run()
    finally:
        engine.dispose()


class ProcessorProcess:
    """Starts the processor as a child process and keeps it running until `stop`."""

    def __init__(self, settings: Settings, max_pause_seconds: float = 30.0) -> None:
        self.settings = settings
        self.max_pause_seconds = max_pause_seconds
        self._wake = _CONTEXT.Event()
        self._stop = _CONTEXT.Event()
        self._child: Any = None
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()
        self.restarts = 0

    def notify(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="opencdp-supervisor", daemon=True)
        self._watcher.start()

    def alive(self) -> bool:
        return self._child is not None and self._child.is_alive()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the child to finish its chunk and exit; kill it if it does not within `timeout`."""
        self._stopping.set()
        self._stop.set()
        self._wake.set()
        child = self._child
        if child is not None:
            child.join(timeout)
            if child.is_alive():
                log.warning("processor did not stop in time; terminating it")
                child.terminate()
                child.join(5)
        if self._watcher is not None:
            self._watcher.join(5)

    def _spawn(self) -> None:
        self._child = _CONTEXT.Process(
            target=_run_child,
            args=(self.settings, self._wake, self._stop),
            name="opencdp-processor",
            daemon=True,
        )
        self._child.start()
        log.info("processor process started", pid=self._child.pid)

    def _watch(self) -> None:
        pause = 1.0
        while not self._stopping.is_set():
            child = self._child
            child.join(0.5)
            if child.is_alive() or self._stopping.is_set():
                continue
            log.error("processor process exited; restarting", exitcode=child.exitcode, pause_seconds=pause)
            if self._stopping.wait(pause):
                return
            pause = min(pause * 2, self.max_pause_seconds)
            self.restarts += 1
            self._spawn()
            started = time.monotonic()
            while not self._stopping.is_set() and self._child.is_alive() and time.monotonic() - started < 60:
                self._child.join(0.5)
            if self._child.is_alive():
                pause = 1.0  # it ran for a minute: the next failure starts the back-off afresh
