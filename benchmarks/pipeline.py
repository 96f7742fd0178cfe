"""Sustained pipeline benchmark: how many events/s `opencdp serve` accepts while processing keeps up.

The question (issue): "`opencdp serve` at defaults on SQLite, sustained for 60 s: events/s accepted
while processing keeps up (backlog when the load stops drains within 2 s; accepted -> visible in
the profile p95 <= 2 s)". Ingest alone (benchmarks/ingest.py) says how fast events become durable;
this says how fast they become profiles, over a long enough run that a growing backlog shows.

Per engine, on a fresh database (SQLite in a temporary directory; a scratch PostgreSQL database,
dropped afterwards):

1. a source and an admin key are created with the CLI; batches of `--batch-size` realistic shop
   events are pre-generated (benchmarks/harness/events.py); the last event of every batch is a
   *probe*: an identify of a userId nobody used before;
2. `opencdp serve` starts with its defaults (processing inside the server), or with `--workers N`
   as a collector only (OPENCDP_PROCESS_IN_SERVER=0) next to N `opencdp worker` processes;
3. load for `--seconds` (default 60) from `--connections` keep-alive connections, flat out or at
   `--rate` events/s. Meanwhile the processor's backlog (events in the log beyond the 'profiles'
   checkpoint in `processor_state`) is sampled every `--sample-ms`, and a prober takes one
   acknowledged probe at a time and polls `GET /api/profiles/lookup?type=user_id&value=…` from
   the moment its batch was acknowledged until it answers 200 (accepted -> visible);
   Before the clock starts, one warm-up batch is sent and processed, so that a worker's start-up
   is not measured (its events are left out of the counts below);
4. when the load stops, the time until the backlog is 0 (drain), then rows in the log must equal
   the events acknowledged;
5. the processes stop and the live profiles (ids, merged_into, traits, event_counts) are compared
   with a from-scratch single-process `opencdp rebuild` of the same log (in place: the database is
   a scratch copy).

"Keeps up" means: drained within 2 s, probe p95 <= 2 s, and every probe became visible.

Usage:
    .venv/bin/python benchmarks/pipeline.py [--engine sqlite|postgresql|both] [--seconds 60]
        [--rate EVENTS_PER_S] [--connections 8] [--batch-size 100] [--workers N]
        [--server-env OPENCDP_NAME=VALUE ...] [--no-rebuild-check] [--markdown]

Bounded in time (load, drain timeout, probe timeout, request timeout) and in count (the pool of
pre-generated batches); only 127.0.0.1 is contacted. Exit status: 0 when every request got 200,
the log holds exactly the acknowledged events and the profiles equal the rebuild (a target that is
missed is reported, not fatal).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from rich.console import Console

from harness.events import EventFactory
from harness.load import Batch, Client, Load, Prober, basic_auth
from harness.machine import CpuSnapshot, CpuUse, background_load, cpu_model, measured_code
from harness.report import acked_cell, markdown_table, percentile, rich_table, wide_console
from harness.scratch import (
    LogWatcher,
    Scratch,
    cli,
    create_admin_key,
    create_source,
    default_postgres_url,
    is_loopback,
    running_server,
    running_workers,
    scratch_database,
    server_env_from,
)
from opencdp.process.processor import PROCESSOR
from opencdp.store.schema import profiles

TARGET_DRAIN_S = 2.0
TARGET_VISIBLE_P95_S = 2.0
#: Pool size when flat out: more than any engine reaches today, capped to bound memory.
FLAT_OUT_POOL_EVENTS_PER_S = 5_000

console = wide_console(220)
err_console = Console(stderr=True)
COLUMNS = (
    "engine",
    "processing",
    "load",
    "seconds",
    "events accepted",
    "events/s",
    "POST p50 / p99 ms",
    "backlog max",
    "backlog at stop",
    "drain s",
    "visible p50 ms",
    "visible p95 ms",
    "rows in log == acknowledged",
    "profiles == rebuild",
    "CPU cores: opencdp / postgres / client / other",
    "keeps up",
)


class BacklogSampler(threading.Thread):
    """Samples the processor's backlog on its own connection until stopped."""

    def __init__(self, watcher: LogWatcher, interval_s: float) -> None:
        super().__init__(name="backlog", daemon=True)
        self.watcher = watcher
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []  # (perf_counter, unprocessed)
        self.errors: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.samples.append((time.perf_counter(), self.watcher.state(PROCESSOR).unprocessed or 0))
            except sa.exc.SQLAlchemyError as exc:  # e.g. SQLite busy for longer than its timeout
                self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(30)

    def peak(self) -> int:
        return max((n for _, n in self.samples), default=0)


@dataclass
class Result:
    engine: str
    processing: str
    load: str
    seconds: float
    acked_events: int
    post_latencies: list[float]
    backlog_max: int
    backlog_at_stop: int
    drain_s: float | None  # None: not drained within the timeout
    visible: list[float]
    probes_missing: int
    rows: int
    rebuild_diff: int | None  # profiles that differ from the rebuild; None: not checked
    cpu: CpuUse | None
    errors: list[str] = field(default_factory=list)
    exhausted: bool = False

    @property
    def durable(self) -> bool:
        return self.rows == self.acked_events

    @property
    def keeps_up(self) -> bool:
        return (
            self.drain_s is not None
            and self.drain_s <= TARGET_DRAIN_S
            and bool(self.visible)
            and not self.probes_missing
            and percentile(self.visible, 95) <= TARGET_VISIBLE_P95_S
        )

    def cells(self) -> list[str]:
        posts = self.post_latencies
        visible_p50 = f"{percentile(self.visible, 50) * 1000:,.0f}" if self.visible else "-"
        visible_p95 = f"{percentile(self.visible, 95) * 1000:,.0f}" if self.visible else "-"
        if self.probes_missing:
            visible_p95 += f" ({self.probes_missing} never)"
        return [
            self.engine,
            self.processing,
            self.load,
            f"{self.seconds:.0f}",
            f"{self.acked_events:,}",
            f"{self.acked_events / self.seconds:,.0f}" if self.seconds else "-",
            f"{percentile(posts, 50) * 1000:.0f} / {percentile(posts, 99) * 1000:.0f}" if posts else "-",
            f"{self.backlog_max:,}",
            f"{self.backlog_at_stop:,}",
            "NOT drained" if self.drain_s is None else f"{self.drain_s:.2f}",
            f"{visible_p50} (n={len(self.visible)})",
            visible_p95,
            acked_cell(self.rows, self.acked_events),
            "-"
            if self.rebuild_diff is None
            else ("yes" if self.rebuild_diff == 0 else f"NO ({self.rebuild_diff:,} differ)"),
            "-" if self.cpu is None else str(self.cpu),
            "yes" if self.keeps_up else "no",
        ]


def make_batches(count: int, batch_size: int, seed: int, authorization: str) -> list[Batch]:
    """`count` batches, each ending with a probe identify of a fresh userId."""
    factory = EventFactory(seed)
    run = uuid.uuid4().hex[:8]
    batches = []
    for n in range(count):
        user_id = f"probe-{run}-{n:07d}"
        batches.append(Batch(factory.batch_body(batch_size, user_id), batch_size, authorization, user_id))
    return batches


def profiles_snapshot(url: str) -> dict[str, tuple[Any, ...]]:
    """Every profile by id: what it merged into, its traits and its event counters."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(profiles.c.id, profiles.c.merged_into, profiles.c.traits, profiles.c.event_counts)
            )
            return {r.id: (r.merged_into, r.traits, r.event_counts) for r in rows}
    finally:
        engine.dispose()


def rebuild_difference(db: Scratch) -> int:
    """How many profiles differ (or exist on one side only) between the live result and a
    from-scratch, single-process `opencdp rebuild` of the same log. Run with no server or worker."""
    live = profiles_snapshot(db.url)
    began = time.perf_counter()
    cli(db.env, "rebuild", "--yes", timeout=1800)
    console.print(f"[dim]{db.engine}: rebuild of the log took {time.perf_counter() - began:.1f} s[/dim]")
    rebuilt = profiles_snapshot(db.url)
    return sum(1 for pid in live.keys() | rebuilt.keys() if live.get(pid) != rebuilt.get(pid))


def wait_for_drain(watcher: LogWatcher, since: float, timeout: float) -> float | None:
    """Seconds from `since` (perf_counter) until the processor's backlog is 0; None if it is not
    0 within `timeout`."""
    while time.perf_counter() - since < timeout:
        if not watcher.state(PROCESSOR).unprocessed:
            return time.perf_counter() - since
        time.sleep(0.02)
    return None


def warm_up(port: int, batch: Batch, watcher: LogWatcher, timeout: float = 120.0) -> int:
    """One batch, then wait until it is processed: the processing side (a worker takes seconds to
    import and connect) is running before the clock starts. Returns the events sent."""
    client = Client(port)
    try:
        status, reply = client.request("POST", "/v1/batch", batch.body, batch.authorization)
    finally:
        client.close()
    if status != 200:
        raise RuntimeError(f"warm-up batch answered {status}: {reply[:300]!r}")
    if wait_for_drain(watcher, time.perf_counter(), timeout) is None:
        raise RuntimeError(f"the warm-up batch was not processed within {timeout:.0f} s")
    return batch.events


def run_engine(db: Scratch, args: argparse.Namespace) -> Result:
    authorization = basic_auth(create_source(db.env))
    admin_key = create_admin_key(db.env)
    pool_events = args.max_events or int((args.rate or FLAT_OUT_POOL_EVENTS_PER_S) * args.seconds * 1.05)
    began = time.perf_counter()
    batches = make_batches(
        max(args.connections, -(-pool_events // args.batch_size)), args.batch_size, 1, authorization
    )
    console.print(
        f"[dim]{db.engine}: pre-generated {len(batches):,} batches x {args.batch_size} events in "
        f"{time.perf_counter() - began:.1f} s[/dim]"
    )
    watcher = LogWatcher(db.url)
    try:
        with running_server(db) as server, running_workers(db, args.workers) as workers:
            pids = [server.pid, *(w.pid for w in workers)]
            warm_up_events = warm_up(server.port, batches.pop(), watcher)
            prober = Prober(server.port, admin_key, args.poll_ms / 1000, args.probe_gap_ms / 1000, args.seed)
            prober.start()
            sampler = BacklogSampler(watcher, args.sample_ms / 1000)
            sampler.start()
            load = Load(
                server.port, batches, args.seconds, args.connections, args.rate, on_ack=prober.on_ack
            ).begin()
            load.sleep_until(load.start)
            cpu_before = CpuSnapshot.take(pids, db.postgres_db)
            load.join()
            stopped = time.perf_counter()
            cpu_after = CpuSnapshot.take(pids, db.postgres_db)
            backlog_at_stop = watcher.state(PROCESSOR).unprocessed or 0
            drain_s = wait_for_drain(watcher, stopped, args.drain_timeout)
            sampler.stop()
            prober.finish()
            rows = watcher.rows() - warm_up_events
    finally:
        watcher.close()
    elapsed = (load.last_ack or stopped) - load.start
    rebuild_diff = None if args.no_rebuild_check else rebuild_difference(db)
    if args.workers:
        processing = f"{args.workers} worker{'s' if args.workers > 1 else ''}, PROCESS_IN_SERVER=0"
    else:
        processing = "in server"
    extra = " ".join(f"{k.removeprefix('OPENCDP_')}={v}" for k, v in args.server_env.items())
    return Result(
        engine=db.engine,
        processing=f"{processing} {extra}".strip(),
        load=(f"{args.rate:,.0f}/s" if args.rate else "flat out")
        + f", {args.connections} conn x {args.batch_size}",
        seconds=elapsed,
        acked_events=load.acked_events,
        post_latencies=load.latencies(),
        backlog_max=max(sampler.peak(), backlog_at_stop),
        backlog_at_stop=backlog_at_stop,
        drain_s=drain_s,
        visible=prober.visible(),
        probes_missing=prober.missing(),
        rows=rows,
        rebuild_diff=rebuild_diff,
        cpu=CpuUse.between(cpu_before, cpu_after, stopped - load.start),
        errors=load.errors + prober.errors + sampler.errors,
        exhausted=load.exhausted,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of the load (60)")
    parser.add_argument("--rate", type=float, default=None, help="events/s to send (default: flat out)")
    parser.add_argument("--connections", type=int, default=8, help="concurrent keep-alive connections (8)")
    parser.add_argument("--batch-size", type=int, default=100, help="events per POST /v1/batch (100)")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="run the server with OPENCDP_PROCESS_IN_SERVER=0 and this many `opencdp worker` "
        "processes (meant for PostgreSQL; default 0: processing in the server)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="server and worker settings beyond the defaults (repeatable)",
    )
    parser.add_argument("--sample-ms", type=float, default=250, help="backlog sampling interval (250)")
    parser.add_argument("--poll-ms", type=float, default=5, help="probe lookup poll interval (5)")
    parser.add_argument(
        "--probe-gap-ms", type=float, default=300, help="random pause of up to this between probes (300)"
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=60, help="give up waiting for the backlog after (60 s)"
    )
    parser.add_argument(
        "--max-events",
        type=int,
        default=None,
        help=f"pre-generated pool (default: rate x seconds, or {FLAT_OUT_POOL_EVENTS_PER_S:,}/s x "
        "seconds flat out); the load stops early if it runs out",
    )
    parser.add_argument("--seed", type=int, default=7, help="prober's random gaps (7)")
    parser.add_argument(
        "--no-rebuild-check", action="store_true", help="skip comparing the profiles with a rebuild"
    )
    parser.add_argument(
        "--postgres-url",
        default=default_postgres_url(),
        help="server to create the scratch database on (it is dropped afterwards)",
    )
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 600 or (args.rate is not None and not 0 < args.rate <= 50_000):
        parser.error("--seconds must be in (0, 600], --rate in (0, 50000]")
    if not 1 <= args.connections <= 64 or not 1 <= args.batch_size <= 500 or not 0 <= args.workers <= 8:
        parser.error("--connections in [1, 64], --batch-size in [1, 500], --workers in [0, 8]")
    if args.sample_ms <= 0 or args.poll_ms <= 0 or args.drain_timeout <= 0 or args.probe_gap_ms < 0:
        parser.error("--sample-ms, --poll-ms and --drain-timeout must be > 0, --probe-gap-ms >= 0")
    if not is_loopback(args.postgres_url):
        parser.error("--postgres-url must point at the loopback interface")
    server_env: dict[str, str] = {}
    try:
        server_env.update(server_env_from(args.server_env))
    except ValueError as exc:
        parser.error(str(exc))
    args.server_env = server_env
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C: servers are stopped, scratch databases dropped;
    # and children of a background job must not inherit an ignored SIGINT (graceful shutdown).
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    busy = background_load()
    header = (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} x {cpu_model()}, {measured_code()}, "
        "CPU busy before the run: " + ("unknown" if busy is None else f"{100 * busy:.0f}%")
    )
    console.print(f"[dim]{header}[/dim]")
    if busy is not None and busy > 0.15:
        err_console.print("[yellow]warning: other processes keep the CPUs busy; results will be low[/yellow]")
    env = dict(args.server_env)
    if args.workers:
        env["OPENCDP_PROCESS_IN_SERVER"] = "0"
    results: list[Result] = []
    engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    for engine in engines:
        try:
            with scratch_database(
                engine, args.postgres_url, prefix="opencdp-bench-pipeline-", server_env=env
            ) as db:
                results.append(run_engine(db, args))
        except Exception as exc:
            err_console.print(f"[red]{engine}: benchmark failed: {exc}[/red]")
            return 1
    rows = [r.cells() for r in results]
    title = "opencdp pipeline: sustained load, processing kept up?"
    console.print(rich_table(title, COLUMNS, rows, left=3))
    console.print(
        f"[dim]keeps up: backlog drained within {TARGET_DRAIN_S:g} s of the load stopping and "
        f"accepted -> visible p95 <= {TARGET_VISIBLE_P95_S:g} s[/dim]"
    )
    if args.markdown:
        print(f"\n{header}\n")
        print(markdown_table(COLUMNS, rows, left=3))
    failed = False
    for r in results:
        if r.errors:
            failed = True
            err_console.print(f"[red]{r.engine}: {len(r.errors)} error(s); first:[/red]")
            err_console.print(r.errors[0], markup=False)
        if not r.durable or r.acked_events == 0:
            failed = True
            err_console.print(f"[red]{r.engine}: log holds {r.rows:,}, acknowledged {r.acked_events:,}[/red]")
        if r.rebuild_diff:
            failed = True
            err_console.print(f"[red]{r.engine}: {r.rebuild_diff:,} profiles differ from a rebuild[/red]")
        if r.exhausted:
            err_console.print(
                f"[yellow]{r.engine}: the batch pool ran out early; raise --max-events[/yellow]"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
