"""How the running system is doing, for `/api/health`: is anything that should work not working?

Every check is cheap (a few indexed reads) so that load balancers and monitors may poll it.
`ok` means collection and processing work; `degraded` comes with the reasons: the event log
cannot be written (disk full, database locked), processing is behind by more than
`health_max_lag_seconds` (stalled, failing or overloaded), a segment or computed trait fails to
evaluate (skipped, see `store.failures`), or the disk holding the embedded database is nearly full.
"""

from __future__ import annotations

import shutil
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.log.intake import backlog as intake_backlog
from opencdp.process.derived import queued
from opencdp.process.processor import read_checkpoint
from opencdp.store import failures
from opencdp.store.schema import events

#: Below this much free space on the embedded database's disk, writes are about to fail.
MIN_FREE_BYTES = 256 * 1024 * 1024
#: Counting the backlog stops here: beyond it the exact number does not matter for health.
BACKLOG_COUNT_CAP = 1_000_000


@dataclass
class Report:
    database: str
    reasons: list[str] = field(default_factory=list)
    processing: dict[str, Any] = field(default_factory=dict)
    failed_definitions: list[dict[str, Any]] = field(default_factory=list)
    activation: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "degraded" if self.reasons else "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "database": self.database,
            "reasons": self.reasons,
            "processing": self.processing,
            "failed_definitions": self.failed_definitions,
            "activation": self.activation,
        }


def processing_lag(conn: sa.Connection, now: datetime | None = None) -> dict[str, Any]:
    """Events waiting for the processor, and how long the oldest of them has waited."""
    checkpoint = read_checkpoint(conn)
    waiting = sa.select(events.c.id).where(events.c.id > checkpoint).limit(BACKLOG_COUNT_CAP)
    count = conn.execute(sa.select(sa.func.count()).select_from(waiting.subquery())).scalar_one()
    oldest = conn.execute(
        sa.select(events.c.received_at).where(events.c.id > checkpoint).order_by(events.c.id).limit(1)
    ).scalar()
    waiting_in_intake, oldest_in_intake = intake_backlog(conn.engine)  # SQLite under `serve`
    if oldest_in_intake is not None and (oldest is None or oldest_in_intake < oldest):
        oldest = oldest_in_intake
    lag = ((now or datetime.now(UTC)) - oldest).total_seconds() if oldest is not None else 0.0
    return {
        "events_waiting": int(count) + waiting_in_intake,
        "lag_seconds": round(max(lag, 0.0), 3),
        "checkpoint": checkpoint,
        # PostgreSQL: touched profiles whose computed traits and memberships a worker will refresh
        "profiles_waiting": queued(conn),
    }


class Throughput:
    """The processing rate, from the checkpoint's movement between samples (health checks,
    scrapes, or `opencdp status`'s own two reads) over the last `window` seconds.

    The checkpoint is the one fact every processor writes wherever it runs, so this is true for
    a processor in any process; nothing is stored for it. It counts log positions (event ids), which
    on PostgreSQL may skip a few numbers (rejected duplicates): an estimate, not an audit."""

    def __init__(self, window: float = 60.0, min_span: float = 1.0) -> None:
        self.window = window
        self.min_span = min_span
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def sample(self, checkpoint: int, now: float | None = None) -> float | None:
        """Record the checkpoint seen now; the rate in events per second (None: too few samples)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._samples and checkpoint < self._samples[-1][1]:
                self._samples.clear()  # a rebuild started over
            self._samples.append((now, checkpoint))
            while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
                self._samples.popleft()
            (start, first), (end, last) = self._samples[0], self._samples[-1]
        if end <= start or end - start < self.min_span:
            return None
        return round((last - first) / (end - start), 1)


_throughputs: weakref.WeakKeyDictionary[sa.Engine, Throughput] = weakref.WeakKeyDictionary()


def throughput_for(engine: sa.Engine) -> Throughput:
    """The sampler shared by this process's health checks and scrapes of `engine`."""
    return _throughputs.setdefault(engine, Throughput())


def check(cdp: Any) -> Report:
    """The health of `cdp` (an `OpenCDP`): typed loosely to keep this module below `system`."""
    report = Report(cdp.engine.dialect.name)
    failure = cdp.writer.failure()
    if failure:
        report.reasons.append(f"the event log cannot be written: {failure}")
    hint = "" if cdp.loop else "; are `opencdp worker` processes running?"
    return check_store(report, cdp.engine, cdp.settings, hint)


def outbox_summary(conn: sa.Connection) -> dict[str, Any]:
    from opencdp.activation.outbox import summary

    return summary(conn)


def check_store(report: Report, engine: sa.Engine, settings: Any, lag_hint: str = "") -> Report:
    """The checks that need only the database (and its disk): `check` and `opencdp status`."""
    try:
        with engine.connect() as conn:
            report.processing = processing_lag(conn)
            failed = list(failures.failures(conn).values())
            # informative, never "degraded": a receiver's outage is not opencdp's
            report.activation = outbox_summary(conn)
    except sa.exc.SQLAlchemyError as exc:
        report.reasons.append(f"the database cannot be read: {type(exc).__name__}")
        return report
    report.processing["events_per_second"] = throughput_for(engine).sample(report.processing["checkpoint"])
    if failed:
        names = ", ".join(f"{failures.LABELS[f.kind]} {f.name!r}" for f in failed)
        report.reasons.append(f"{len(failed)} definition(s) failed to evaluate and are skipped: {names}")
        report.failed_definitions = [
            {"kind": f.kind, "name": f.name, "failed_at": f.failed_at} for f in failed
        ]
    lag = report.processing["lag_seconds"]
    if lag > settings.health_max_lag_seconds:
        report.reasons.append(
            f"processing is {lag:,.0f} s behind ({report.processing['events_waiting']:,} events waiting)"
            + lag_hint
        )
    if settings.is_sqlite:
        free = shutil.disk_usage(settings.data_dir).free
        if free < MIN_FREE_BYTES:
            report.reasons.append(f"low disk space: {free // (1024 * 1024)} MiB free for the database")
    return report
