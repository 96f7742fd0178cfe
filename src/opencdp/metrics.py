"""The process's metrics, for Prometheus: counters and histograms recorded where things happen,
and gauges read from the database at scrape time.

Counters live in this process (collection, HTTP latency, processing throughput) and are the
standard client library's. Processing runs in other processes too (a child of `opencdp serve`,
separate `opencdp worker`s), so the library's multiprocess mode is used whenever
`PROMETHEUS_MULTIPROC_DIR` is set: every process writes its counters to files there and the
server's `/metrics` adds them up. `opencdp serve` sets it (a private temporary directory unless
the operator chose one) before any metric exists, and its children inherit it. The library picks
its mode when it is first imported, so it is imported here lazily, on the first metric.

Lag and health are not counters of any process: `DatabaseCollector` reads them from the database
on every scrape (`health.processing_lag`), so they are true whichever process does the processing.
Labels are bounded: source names (no personal data), a fixed set of reasons, route templates.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Why collected events were not stored (the `reason` label of opencdp_events_rejected_total).
REJECT_REASONS = ("invalid", "too_large", "unauthorized", "rate_limited", "unavailable", "suppressed")
#: The `source` label of requests refused before their source was known (no or unknown write key).
UNKNOWN_SOURCE = "(unknown)"
#: The `route` label of requests that matched no route (404s): raw paths would be unbounded.
UNMATCHED_ROUTE = "(unmatched)"


class _Metrics:
    """Every metric this process records, created on first use (see the module docstring)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

        disable_created_metrics()  # as in multiprocess mode, which has no `_created` series
        path = multiprocess_dir()
        if path is not None:  # set, but only `serve` creates it: a CLI import must not fail on it
            path.mkdir(parents=True, exist_ok=True)
        self.registry = CollectorRegistry()
        self.accepted = Counter(
            "opencdp_events_accepted",
            "Events stored in the event log, by source (duplicates of stored events included)",
            ["source"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "opencdp_events_rejected",
            "Events not stored, by source and reason; a request refused before its body was read "
            "(unauthorized, rate_limited) counts as one",
            ["source", "reason"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "opencdp_http_request_duration_seconds",
            "HTTP request latency, by route template, method and status class",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.stage_seconds = Counter(
            "opencdp_processor_stage_seconds",
            "Time the processor spent in each stage (identity, profiles, traits, segments, …)",
            ["stage"],
            registry=self.registry,
        )
        self.processed = Counter(
            "opencdp_processor_events", "Events the processor applied", registry=self.registry
        )
        self.admission_wait = Histogram(
            "opencdp_customer_face_wait_seconds",
            "How long customer-face requests (sign-in pages, OpenID endpoints) waited for a turn",
            registry=self.registry,
        )
        self.admission_refused = Counter(
            "opencdp_customer_face_refused",
            "Customer-face requests answered 503 because too many were waiting (accounts/admission.py)",
            registry=self.registry,
        )


@functools.cache
def _metrics() -> _Metrics:
    return _Metrics()


# --- Recording (cheap; safe from any thread) --------------------------------------------------


def record_accepted(source: str, events: int) -> None:
    if events > 0:
        _metrics().accepted.labels(source).inc(events)


def record_rejected(source: str | None, reason: str, events: int = 1) -> None:
    if reason not in REJECT_REASONS:
        raise ValueError(f"unknown reject reason {reason!r}")
    if events > 0:
        _metrics().rejected.labels(source or UNKNOWN_SOURCE, reason).inc(events)


def record_request(route: str, method: str, status: int, seconds: float) -> None:
    _metrics().request_seconds.labels(route, method, f"{status // 100}xx").observe(seconds)


def record_stage(stage: str, seconds: float) -> None:
    """The processor spent `seconds` in `stage` (a fixed name: identity, profiles, segments, …)."""
    _metrics().stage_seconds.labels(stage).inc(max(seconds, 0.0))


def record_processed(events: int) -> None:
    """The processor applied `events` more events (call once per committed chunk)."""
    if events > 0:
        _metrics().processed.inc(events)


def record_admission_wait(seconds: float) -> None:
    _metrics().admission_wait.observe(max(seconds, 0.0))


def record_admission_refused() -> None:
    _metrics().admission_refused.inc()


# --- Multiprocess mode -------------------------------------------------------------------------


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def prepare_multiprocess_dir() -> tuple[Path, bool]:
    """For `opencdp serve`, before any metric exists: use the operator's PROMETHEUS_MULTIPROC_DIR or
    create a private one, empty it (counters restart with the server) and export it to children.
    Returns the directory and whether it was created here (then the caller removes it at exit)."""
    chosen = multiprocess_dir()
    if chosen is None:
        path, created = Path(tempfile.mkdtemp(prefix="opencdp-metrics-")), True
    else:
        path, created = chosen, False
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
    return path, created


def remove_multiprocess_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# --- What a scrape sees ------------------------------------------------------------------------


class DatabaseCollector:
    """Gauges read from the database at scrape time: processing lag, checkpoint, failed
    definitions; plus this process's log writer queue when there is one."""

    def __init__(self, engine: sa.Engine, writer: Any = None) -> None:
        self.engine = engine
        self.writer = writer  # a `collect.writer.LogWriter`, or None (a worker)

    def describe(self) -> list[Metric]:
        return []  # names are not registered: they cannot clash with the counters

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        from opencdp import health
        from opencdp.store import failures

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        try:
            with self.engine.connect() as conn:
                lag = health.processing_lag(conn)
                failed = len(failures.failures(conn))
                outbox = health.outbox_summary(conn)
        except sa.exc.SQLAlchemyError:
            yield gauge("opencdp_database_up", "Whether the database answered this scrape", 0)
        else:
            health.throughput_for(self.engine).sample(lag["checkpoint"])
            yield gauge("opencdp_database_up", "Whether the database answered this scrape", 1)
            yield gauge(
                "opencdp_processor_lag_events",
                "Events in the log not processed yet (counted up to 1,000,000)",
                lag["events_waiting"],
            )
            yield gauge(
                "opencdp_processor_lag_seconds",
                "How long the oldest unprocessed event has waited",
                lag["lag_seconds"],
            )
            yield gauge(
                "opencdp_processor_profiles_waiting",
                "Profiles whose computed traits and memberships wait for a refresh (PostgreSQL)",
                lag["profiles_waiting"],
            )
            yield gauge(
                "opencdp_processor_checkpoint",
                "Id of the last event processed (use deriv() for a rate whatever process processes)",
                lag["checkpoint"],
            )
            yield gauge(
                "opencdp_deliveries_waiting",
                "Deliveries in the outbox not sent yet",
                outbox["deliveries_waiting"],
            )
            yield gauge(
                "opencdp_deliveries_oldest_waiting_seconds",
                "How long the oldest unsent delivery has waited",
                outbox["oldest_waiting_seconds"],
            )
            yield gauge("opencdp_dead_letters", "Deliveries that will not be retried", outbox["dead_letters"])
            yield gauge(
                "opencdp_destinations_circuit_open",
                "Destinations left alone after failing repeatedly",
                len(outbox["circuits_open"]),
            )
            yield gauge(
                "opencdp_definitions_failed",
                "Segments and computed traits that fail to evaluate and are skipped",
                failed,
            )
        if self.writer is not None:
            yield gauge(
                "opencdp_log_writer_queue_depth",
                "Requests waiting for the event log writer of this process",
                self.writer.queue_depth(),
            )


def registry(engine: sa.Engine, writer: Any = None) -> CollectorRegistry:
    """One registry for a scrape: the counters of this process (or, in multiprocess mode, of every
    process writing to PROMETHEUS_MULTIPROC_DIR) and the database gauges."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    scrape = CollectorRegistry()
    path = multiprocess_dir()
    if path is not None:
        _metrics()  # so this process's counters exist (as files) before the first event
        MultiProcessCollector(scrape, path=str(path))
    else:
        scrape.register(_metrics().registry)
    scrape.register(DatabaseCollector(engine, writer))
    return scrape


def exposition(engine: sa.Engine, writer: Any = None) -> tuple[bytes, str]:
    """The body and content type of a scrape (Prometheus text format)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(registry(engine, writer)), CONTENT_TYPE_LATEST


def serve_http(engine: sa.Engine, port: int, addr: str = "127.0.0.1") -> None:
    """Expose /metrics of this process on its own port (for `opencdp worker --metrics-port`)."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=addr, registry=registry(engine))
