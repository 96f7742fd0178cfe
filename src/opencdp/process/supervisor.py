"""The processor in its own process, started and supervised by `opencdp serve`.

In one process the collector and the processor share one GIL, so on the embedded default every
millisecond of profile work was taken from collection (docs/architecture.md §13). A child process
gets its own interpreter and core; the server wakes it after each commit of the log writer and
restarts it (with a growing pause) if it dies.

The signals between them hold no lock a dying process could leave taken: a wake-up is a byte
written without blocking into a pipe (a full pipe already means "wake up"; a dead reader is
ignored), and "stop" is a flag in shared memory. (`multiprocessing.Event.set()` waits for every
process that waits on it to acknowledge, and hangs forever once one of them was killed: the log
writer would hang with it.)
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from typing import Any

from opencdp import heap, logs
from opencdp.config import Settings

log = logs.get("opencdp.supervisor")
_CONTEXT = multiprocessing.get_context("spawn")  # no inherited threads, locks or connections


class PipeWake:
    """The child's end of the wake-up pipe, as the `Signal` its processor loop waits on."""

    def __init__(self, reader: multiprocessing.connection.Connection) -> None:
        self._reader = reader
        os.set_blocking(reader.fileno(), False)

    def wait(self, timeout: float | None = None) -> bool:
        return self._reader.poll(timeout)

    def clear(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._reader.fileno(), 4096):
                pass

    def is_set(self) -> bool:
        return self._reader.poll(0)

    def set(self) -> None:  # the parent wakes the child; nothing in the child needs to
        pass


class SharedFlag:
    """A flag in shared memory (no lock): `stop`, read by the child's loop between chunks."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def set(self) -> None:
        self._value.value = 1

    def clear(self) -> None:
        self._value.value = 0

    def is_set(self) -> bool:
        return bool(self._value.value)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set() and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.05)
        return self.is_set()


def _run_child(settings: Settings, reader: multiprocessing.connection.Connection, stop_value: Any) -> None:
    """The child's main: process the log until told to stop."""
    from opencdp.identity.identifiers import IdentityRules
    from opencdp.process.loop import ProcessorLoop
    from opencdp.process.processor import Processor
    from opencdp.store.database import open_database

    # Ctrl-C and a service manager's SIGTERM reach the whole process group: `serve` stops us
    # through `stop` after its own shutdown (a signal here would look like a crash to restart).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stop = SharedFlag(stop_value)
    _stop_with_parent(stop)
    if settings.processor_niceness:  # when the cores are contended, answering requests goes first
        with contextlib.suppress(OSError):
            os.nice(settings.processor_niceness)
    logs.configure(settings.log_level, settings.log_format)
    engine = open_database(settings)
    deliveries = None
    if settings.deliver_in_server:
        from opencdp.activation.worker import DeliveryLoop, DeliveryWorker

        deliveries = DeliveryLoop(DeliveryWorker(engine, settings))
        deliveries.start()
    loop = ProcessorLoop(
        Processor(
            engine,
            IdentityRules.from_env(),
            chunk_size=settings.process_chunk_size,
            max_hold_seconds=settings.process_max_hold_seconds,
        ),
        refresh_seconds=settings.refresh_seconds,
        wake=PipeWake(reader),
        stop=stop,
        on_progress=deliveries.notify if deliveries is not None else None,
    )
    heap.settle()
    try:
        loop.run()
    finally:
        if deliveries is not None:
            deliveries.stop()
        engine.dispose()


def _stop_with_parent(stop: SharedFlag) -> None:
    """If `serve` dies without stopping us (SIGKILL), finish the chunk and exit: never an orphan."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        stop.set()

    threading.Thread(target=watch, name="opencdp-parent-watch", daemon=True).start()


class ProcessorProcess:
    """Starts the processor as a child process and keeps it running until `stop`."""

    def __init__(self, settings: Settings, max_pause_seconds: float = 30.0) -> None:
        self.settings = settings
        self.max_pause_seconds = max_pause_seconds
        self._stop_value = _CONTEXT.RawValue("b", 0)
        self._writer: multiprocessing.connection.Connection | None = None
        self._child: Any = None
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()
        self.restarts = 0

    def notify(self) -> None:
        """Wake the child (called by the log writer after each commit): never blocks."""
        writer = self._writer
        if writer is None:
            return
        with contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
            os.write(writer.fileno(), b"!")

    def start(self) -> None:
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="opencdp-supervisor", daemon=True)
        self._watcher.start()

    def alive(self) -> bool:
        return self._child is not None and self._child.is_alive()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the child to finish its chunk and exit; kill it if it does not within `timeout`."""
        self._stopping.set()
        self._stop_value.value = 1
        self.notify()
        child = self._child
        if child is not None:
            child.join(timeout)
            if child.is_alive():
                log.warning("processor did not stop in time; terminating it")
                child.terminate()
                child.join(5)
        if self._watcher is not None:
            self._watcher.join(5)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _spawn(self) -> None:
        reader, writer = _CONTEXT.Pipe(duplex=False)
        os.set_blocking(writer.fileno(), False)
        old, self._writer = self._writer, writer
        if old is not None:
            old.close()
        self._child = _CONTEXT.Process(
            target=_run_child,
            args=(self.settings, reader, self._stop_value),
            name="opencdp-processor",
            daemon=True,
        )
        self._child.start()
        reader.close()  # the child has its own copy
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
