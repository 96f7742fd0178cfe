"""Identity resolution and profile benchmark: how fast the log becomes profiles, and how fast they read.

Three measurements per engine (SQLite in a temporary directory, PostgreSQL in scratch databases
that are dropped at the end):

1. Processing throughput. The event log is pre-loaded with the demo shop of `--customers`
   customers (3,000 give ~53k events), written straight into `events` as the collector would
   write them (same normalisation, same INSERT, same order as `opencdp demo` sends them: per
   source, in batches of 100). Then `Processor.run_until_caught_up()` is timed: events/s through
   identity resolution and profile update, committed.
2. Profile lookup latency on that loaded database: `find_profile_id` + `get_profile` in-process
   for random user ids and e-mail addresses, then the same over HTTP against a real
   `opencdp serve` (`GET /api/profiles/lookup` and `GET /api/profiles/{id}`, one keep-alive
   connection, requests one after another).
3. End-to-end latency, accepted -> visible, on a fresh database per `--rate`: a real
   `opencdp serve` (processing in the server, its default) receives steady load, new demo events
   in batches of `--batch-size` on a fixed arrival schedule of `--rate` events/s for `--seconds`,
   from `--connections` keep-alive connections (so one slow response does not hold back the
   schedule). Whenever the prober is idle, the next acknowledged batch that carries an identify
   with a never-seen userId is sampled: from the moment its 200 arrives, a separate keep-alive
   connection polls `GET /api/profiles/lookup?type=user_id&value=...` every `--poll-ms` until it
   answers 200. One probe at a time, so no probe waits in a queue, and a random pause of up to
   `--probe-gap-ms` between probes, so the samples are not in phase with the processor's cycle.
   `--processing worker|both` also measures a server that only collects
   (OPENCDP_PROCESS_IN_SERVER=0) next to a separate `opencdp worker` process.

Everything is bounded: the pre-load by `--customers`, the load by `--seconds` and a fixed pool of
batches, every request and every probe by a timeout. Only 127.0.0.1 is ever contacted.

Usage:
    .venv/bin/python benchmarks/profiles.py [--engine sqlite|postgresql|both] [--customers N]
        [--lookups N] [--rate EVENTS_PER_S ...] [--seconds N] [--batch-size N] [--connections N]
        [--processing embedded|worker|both] [--poll-ms N] [--probe-gap-ms N]
        [--parts throughput,lookups,e2e] [--markdown]

The processing measurement also counts, as diagnostics, the SQL statements the processor sends
and how often it had to recompute a whole identity component because an edge arrived late.

Exit status: 0 when every measurement ran without errors (targets missed are reported, not fatal).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from harness.load import Batch, Client, Load, Prober, basic_auth, lookup_path
from harness.machine import (
    background_load,
    busy_between,
    cpu_model,
    machine_cpu_busy,
    measured_code,
    process_cpu_seconds,
)
from harness.report import latency_cell, ms, percentile
from harness.scratch import (
    Child,
    Scratch,
    create_admin_key,
    create_source,
    default_postgres_url,
    is_loopback,
    log_state,
    running_server,
    running_workers,
    scratch_database,
)
from opencdp import logs
from opencdp.access.keys import create_source as create_source_row
from opencdp.collect.messages import Envelope, Limits, normalise
from opencdp.demo.shop import ShopGenerator
from opencdp.identity.identifiers import IdentityRules
from opencdp.process import late_edges
from opencdp.process.processor import Processor
from opencdp.profiles.reader import find_profile_id, get_profile
from opencdp.store.database import open_database
from opencdp.store.dialect import insert_ignoring_duplicates
from opencdp.store.schema import events, identities, identity_conflicts, profiles

SOURCES = ("web", "app", "email")
DEMO_BATCH = 100  # what `opencdp demo` sends per request: decides the order of the pre-loaded log
TARGET_EVENTS_PER_S = 5_000
TARGET_LOOKUP_P99_MS = 5.0
TARGET_VISIBLE_P95_MS = 1_000.0  # accepted -> visible in the profile API

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


@contextlib.contextmanager
def scratch(engine: str, role: str, postgres_url: str) -> Iterator[Scratch]:
    """SQLite in a temporary directory; PostgreSQL in `opencdp_bench_profiles_{role}`, dropped after."""
    with scratch_database(
        engine, postgres_url, prefix=f"opencdp-bench-profiles-{role}-", name=f"opencdp_bench_profiles_{role}"
    ) as db:
        yield db


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class Metric:
    name: str
    value: str
    target: str = ""
    ok: bool | None = None  # None: no target for this engine


@dataclass
class EngineReport:
    engine: str
    metrics: list[Metric] = field(default_factory=list)

    def add(self, name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        self.metrics.append(Metric(name, value, target, ok))


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("met" if ok else "MISSED")


# --------------------------------------------------------------------------------------------
# 1. Processing throughput


def demo_order(customers: int, seed: int, batch_size: int) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The demo shop's events as (source, batch), in the order `opencdp demo` would send them."""
    pending: dict[str, list[dict[str, Any]]] = {}
    for event in ShopGenerator(customers=customers, seed=seed).events():
        batch = pending.setdefault(event.source, [])
        batch.append(event.message)
        if len(batch) >= batch_size:
            yield event.source, pending.pop(event.source)
    for source, batch in pending.items():
        if batch:
            yield source, batch


def preload(engine: sa.Engine, customers: int, seed: int) -> int:
    """Write the demo shop into the event log exactly as the collector would; returns the row count."""
    source_ids = {name: create_source_row(engine, f"demo-{name}")[0].id for name in SOURCES}
    insert = insert_ignoring_duplicates(engine.dialect.name, events, ["source_id", "message_id"])
    limits = Limits()
    rows: list[dict[str, Any]] = []

    def flush() -> None:
        if rows:
            with engine.begin() as conn:
                conn.execute(insert, rows)
            rows.clear()

    for source, batch in demo_order(customers, seed, DEMO_BATCH):
        envelope = Envelope(received_at=datetime.now(UTC))
        rows.extend(normalise(message, envelope, source_ids[source], limits) for message in batch)
        if len(rows) >= 5_000:
            flush()
    flush()
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one())


def derived_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:

        def count(stmt: Any) -> int:
            return int(conn.execute(stmt).scalar_one())

        live = profiles.c.merged_into.is_(None)
        return {
            "identities": count(sa.select(sa.func.count()).select_from(identities)),
            "live profiles": count(sa.select(sa.func.count()).select_from(profiles).where(live)),
            "merged profiles": count(sa.select(sa.func.count()).select_from(profiles).where(~live)),
            "refused links": count(sa.select(sa.func.count()).select_from(identity_conflicts)),
        }


@dataclass
class Work:
    statements: Counter[str] = field(default_factory=Counter)
    recomputes: int | None = None

    @property
    def statement_total(self) -> int:
        return sum(self.statements.values())


@contextlib.contextmanager
def count_work(engine: sa.Engine) -> Iterator[Work]:
    """Diagnostics for the timed run (cost: microseconds per statement): SQL statements sent, by
    kind, and how often the processor fell back to recomputing a whole component because an edge
    arrived out of order. The latter wraps `late_edges.recompute_component` (skipped if it is renamed)."""
    work = Work()

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        words = statement.split(None, 3)
        verb = words[0].upper()
        table = words[2] if verb in ("INSERT", "DELETE") and len(words) > 2 else ""
        if verb == "UPDATE" and len(words) > 1:
            table = words[1]
        work.statements[f"{verb} {table}".strip()] += 1

    original = getattr(late_edges, "recompute_component", None)
    if original is not None:
        work.recomputes = 0

        def counting(*args: Any, **kwargs: Any) -> Any:
            work.recomputes = (work.recomputes or 0) + 1
            return original(*args, **kwargs)

        late_edges.recompute_component = counting
    sa.event.listen(engine, "before_cursor_execute", on_execute)
    try:
        yield work
    finally:
        sa.event.remove(engine, "before_cursor_execute", on_execute)
        if original is not None:
            late_edges.recompute_component = original


def measure_processing(engine: sa.Engine, args: argparse.Namespace, report: EngineReport) -> None:
    began = time.perf_counter()
    rows = preload(engine, args.customers, args.seed)
    load_s = time.perf_counter() - began
    report.add(
        "log pre-loaded (direct INSERT)",
        f"{rows:,} events, {args.customers:,} customers, {load_s:.1f} s",
    )
    processor = Processor(engine, IdentityRules(), chunk_size=args.chunk_size)
    backlog = processor.backlog()
    with count_work(engine) as work:
        machine_before = machine_cpu_busy()
        cpu_before = time.process_time()
        began = time.perf_counter()
        processed = processor.run_until_caught_up()
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu_before
        machine_after = machine_cpu_busy()
    machine = ""
    if (busy := busy_between(machine_before, machine_after)) is not None:
        machine = f"; machine {100 * busy:.0f}% busy ({os.cpu_count()} cores)"
    if processed != backlog or processed != rows:
        raise RuntimeError(f"processed {processed} events, but the backlog was {backlog} and the log {rows}")
    rate = processed / elapsed
    report.add(
        "processing throughput",
        f"{rate:,.0f} events/s ({processed:,} in {elapsed:.1f} s, chunk {args.chunk_size}, "
        f"benchmark process CPU {100 * cpu / elapsed:.0f}% of 1 core{machine})",
        f">= {TARGET_EVENTS_PER_S:,} events/s",
        rate >= TARGET_EVENTS_PER_S,
    )
    statements = ", ".join(f"{n:,} {kind}" for kind, n in work.statements.most_common(3))
    report.add(
        "processing work",
        f"{work.statement_total:,} SQL executions ({work.statement_total / processed:.2f} per event; "
        f"most: {statements})"
        + (
            f"; {work.recomputes:,} component recomputes for late edges "
            f"({100 * work.recomputes / processed:.1f}% of events)"
            if work.recomputes is not None
            else ""
        ),
    )
    counts = derived_counts(engine)
    report.add("resolved", ", ".join(f"{v:,} {k}" for k, v in counts.items()))


# --------------------------------------------------------------------------------------------
# 2. Lookups


def lookup_sample(engine: sa.Engine, count: int, seed: int) -> dict[str, list[str]]:
    """`count` random user ids and as many random e-mail addresses that have a profile."""
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    with engine.connect() as conn:
        for kind in ("user_id", "email"):
            values = list(
                conn.execute(
                    sa.select(identities.c.value).where(
                        identities.c.type == kind, identities.c.profile_id.is_not(None)
                    )
                ).scalars()
            )
            if not values:
                raise RuntimeError(f"no {kind} identities to look up")
            out[kind] = rng.choices(values, k=count)
    return out


def lookup_target(engine: str, samples: list[float]) -> tuple[str, bool | None]:
    """The p99 target applies to SQLite (the embedded default); PostgreSQL is shown for comparison."""
    if engine != "sqlite":
        return f"(p99 <= {TARGET_LOOKUP_P99_MS:g} ms is the SQLite target)", None
    return f"p99 <= {TARGET_LOOKUP_P99_MS:g} ms", percentile(
        sorted(samples), 99
    ) * 1000 <= TARGET_LOOKUP_P99_MS


def measure_inprocess_lookups(
    engine: sa.Engine, sample: dict[str, list[str]], report: EngineReport
) -> list[str]:
    """find_profile_id + get_profile in this process; returns the profile ids found (for HTTP by id)."""
    rules = IdentityRules()
    for kind, values in sample.items():  # warm-up: statement caches, connection pool, page cache
        for value in values[:100]:
            get_profile(engine, find_profile_id(engine, rules, kind, value))
    every: list[float] = []
    found: list[str] = []
    for kind, values in sample.items():
        timings: list[float] = []
        for value in values:
            began = time.perf_counter()
            profile = get_profile(engine, find_profile_id(engine, rules, kind, value))
            timings.append(time.perf_counter() - began)
            found.append(profile["id"])
        every += timings
        target, ok = lookup_target(report.engine, timings)
        report.add(f"in-process lookup by {kind}", latency_cell(timings), target, ok)
    target, ok = lookup_target(report.engine, every)
    report.add("in-process lookup, all", latency_cell(every), target, ok)
    return found


def measure_http_lookups(
    db: Scratch, sample: dict[str, list[str]], profile_ids: list[str], report: EngineReport
) -> None:
    admin_key = create_admin_key(db.env)
    with running_server(db) as server:
        client = Client(server.port, f"Bearer {admin_key}")
        try:
            paths = {kind: [lookup_path(kind, v) for v in values] for kind, values in sample.items()}
            paths["id"] = [f"/api/profiles/{urllib.parse.quote(pid)}" for pid in profile_ids]
            for kind_paths in paths.values():  # warm-up
                for path in kind_paths[:100]:
                    client.request("GET", path)
            lookups: list[float] = []
            for kind, kind_paths in paths.items():
                timings: list[float] = []
                for path in kind_paths:
                    began = time.perf_counter()
                    status, body = client.request("GET", path)
                    timings.append(time.perf_counter() - began)
                    if status != 200:
                        raise RuntimeError(f"GET {path} answered {status}: {body[:200]!r}")
                if kind == "id":
                    report.add("HTTP GET /api/profiles/{id}", latency_cell(timings))
                else:
                    lookups += timings
                    report.add(f"HTTP GET /api/profiles/lookup by {kind}", latency_cell(timings))
            report.add("HTTP GET /api/profiles/lookup, all", latency_cell(lookups))
        finally:
            client.close()


# --------------------------------------------------------------------------------------------
# 3. Accepted -> visible


def plan_batches(total_events: int, batch_size: int, seed: int, auth: dict[str, str]) -> list[Batch]:
    """New demo events (a different seed than the pre-load) cut into per-source batches; each
    batch's probe is the first identify in it whose userId no earlier batch carried."""
    customers = total_events // 8 + 50  # ~17 events per customer: more than enough
    seen: set[str] = set()
    batches: list[Batch] = []
    sent = 0
    for source, messages in demo_order(customers, seed, batch_size):
        if sent >= total_events:
            break
        fresh = [
            m["userId"]
            for m in messages
            if m["type"] == "identify" and m.get("userId") and m["userId"] not in seen
        ]
        seen.update(m["userId"] for m in messages if m.get("userId"))
        body = orjson.dumps({"batch": messages})
        batches.append(Batch(body, len(messages), auth[source], fresh[0] if fresh else None))
        sent += len(messages)
    return batches


def measure_visibility(
    db: Scratch, args: argparse.Namespace, rate: float, mode: str, report: EngineReport
) -> None:
    """One e2e run. `mode` embedded: `opencdp serve` processes (the default); worker: the server
    only collects (OPENCDP_PROCESS_IN_SERVER=0) and a separate `opencdp worker` process processes."""
    auth = {name: basic_auth(create_source(db.env, f"demo-{name}")) for name in SOURCES}
    admin_key = create_admin_key(db.env)
    batches = plan_batches(int(rate * args.seconds), args.batch_size, args.seed + 1, auth)
    env = db.env if mode == "embedded" else db.with_env(OPENCDP_PROCESS_IN_SERVER="0")
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(running_server(db, env))
        children: list[Child] = [server]
        if mode == "worker":
            children += stack.enter_context(running_workers(db, 1, env))
        prober = Prober(server.port, admin_key, args.poll_ms / 1000, args.probe_gap_ms / 1000, args.seed)
        prober.start()
        load = Load(server.port, batches, args.seconds, args.connections, rate, on_ack=prober.on_ack)
        cpu_before = [process_cpu_seconds(c.pid) for c in children]
        machine_before = machine_cpu_busy()
        load.run()
        cpu_after = [process_cpu_seconds(c.pid) for c in children]
        machine_after = machine_cpu_busy()
        backlog_at_stop = log_state(db.url).unprocessed or 0
        prober.finish()
        drain_deadline = time.monotonic() + 60
        while (left := log_state(db.url).unprocessed) and time.monotonic() < drain_deadline:
            time.sleep(0.1)
    errors = load.errors + prober.errors
    if errors:
        raise RuntimeError(f"{len(errors)} error(s) during the load; first: {errors[0]}")
    elapsed = load.last_ack - load.start
    server_cpu = "".join(
        f"; {child.name} CPU {100 * (after - before) / elapsed:.0f}% of 1 core"
        for child, before, after in zip(children, cpu_before, cpu_after, strict=True)
        if before is not None and after is not None and elapsed > 0
    )
    if (busy := busy_between(machine_before, machine_after)) is not None:
        server_cpu += f"; machine {100 * busy:.0f}% busy ({os.cpu_count()} cores)"
    label = f"@ {rate:,.0f} events/s" + (", separate worker" if mode == "worker" else "")
    report.add(
        f"steady load {label}, fresh database",
        f"{load.acked_events:,} events in {len(load.completions):,} batches of {args.batch_size} "
        f"over {elapsed:.1f} s = {load.acked_events / elapsed:,.0f} events/s (asked {rate:,.0f}, "
        f"{args.connections} connections, at most {ms(load.max_late)} ms behind schedule); "
        f"POST {latency_cell(load.latencies())}{server_cpu}",
    )
    visible = prober.visible()
    missing = prober.missing()
    if not visible:
        raise RuntimeError("no sampled identify became visible")
    report.add(
        f"accepted -> visible {label}",
        f"{latency_cell(visible, 95)}, polled every {args.poll_ms:g} ms"
        + (f"; {missing} NOT visible within {prober.timeout_s:.0f} s" if missing else ""),
        f"p95 <= {TARGET_VISIBLE_P95_MS:,.0f} ms",
        not missing and percentile(visible, 95) * 1000 <= TARGET_VISIBLE_P95_MS,
    )
    report.add(
        f"processor backlog at end of load {label}",
        f"{backlog_at_stop:,} events (processed {(load.acked_events - backlog_at_stop) / elapsed:,.0f} "
        "events/s while loaded)" + (f"; {left:,} still unprocessed 60 s later" if left else ""),
    )


# --------------------------------------------------------------------------------------------
# Driver


def run_engine(engine_name: str, args: argparse.Namespace) -> EngineReport:
    report = EngineReport(engine_name)
    if {"throughput", "lookups"} & args.parts:
        with scratch(engine_name, "load", args.postgres_url) as db:
            engine = open_database(db.settings())
            try:
                measure_processing(engine, args, report)
                if "lookups" in args.parts:
                    sample = lookup_sample(engine, args.lookups, args.seed)
                    profile_ids = measure_inprocess_lookups(engine, sample, report)
            finally:
                engine.dispose()
            if "lookups" in args.parts:
                rng = random.Random(args.seed)
                unique = sorted(set(profile_ids))
                by_id = rng.sample(unique, k=min(len(unique), args.lookups))
                measure_http_lookups(db, sample, by_id, report)
    if "e2e" in args.parts:
        for mode in ("embedded", "worker"):
            if args.processing not in (mode, "both"):
                continue
            for rate in args.rate:
                with scratch(engine_name, "e2e", args.postgres_url) as db:
                    measure_visibility(db, args, rate, mode, report)
    return report


def report_table(report: EngineReport, title: str) -> Table:
    table = Table(title=f"{title}: {report.engine}", show_lines=False)
    table.add_column("measurement")
    table.add_column("result")
    table.add_column("target")
    table.add_column("")
    for m in report.metrics:
        style = "green" if m.ok else ("red" if m.ok is False else "")
        table.add_row(m.name, m.value, m.target, f"[{style}]{verdict(m.ok)}[/{style}]" if style else "")
    return table


def markdown(reports: list[EngineReport]) -> str:
    lines = ["| engine | measurement | result | target |", "|---|---|---|---|"]
    for r in reports:
        for m in r.metrics:
            target = f"{m.target} **{verdict(m.ok)}**" if m.ok is not None else m.target
            lines.append(f"| {r.engine} | {m.name} | {m.value} | {target} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--customers", type=int, default=3000, help="demo customers pre-loaded (3000)")
    parser.add_argument("--seed", type=int, default=42, help="demo shop seed (42)")
    parser.add_argument("--chunk-size", type=int, default=500, help="Processor chunk size (500)")
    parser.add_argument("--lookups", type=int, default=2000, help="lookups per kind (2000)")
    parser.add_argument(
        "--rate",
        type=float,
        action="append",
        help="e2e load in events/s; repeat for several runs (default: 1000 and 2000)",
    )
    parser.add_argument("--seconds", type=float, default=10, help="e2e load duration (10)")
    parser.add_argument("--batch-size", type=int, default=20, help="events per e2e POST (20)")
    parser.add_argument("--connections", type=int, default=4, help="e2e sender connections (4)")
    parser.add_argument(
        "--processing",
        choices=["embedded", "worker", "both"],
        default="embedded",
        help="e2e: processing inside `opencdp serve` (default), in a separate `opencdp worker`, or both",
    )
    parser.add_argument("--poll-ms", type=float, default=5, help="e2e lookup poll interval (5)")
    parser.add_argument(
        "--probe-gap-ms",
        type=float,
        default=300,
        help="e2e: random pause of up to this long between probes, so samples are not in phase "
        "with the processor (300)",
    )
    parser.add_argument(
        "--parts",
        default="throughput,lookups,e2e",
        help="comma separated subset of throughput,lookups,e2e (lookups implies throughput)",
    )
    parser.add_argument(
        "--postgres-url",
        default=default_postgres_url(),
        help="server for the scratch databases opencdp_bench_profiles_* (dropped afterwards)",
    )
    parser.add_argument("--markdown", action="store_true", help="also print the results as Markdown")
    args = parser.parse_args(argv)
    args.rate = args.rate or [1000.0, 2000.0]
    args.parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not args.parts or args.parts - {"throughput", "lookups", "e2e"}:
        parser.error("--parts takes a comma separated subset of throughput,lookups,e2e")
    if not 1 <= args.customers <= 30_000:
        parser.error("--customers must be between 1 and 30000 (keeps the run bounded)")
    if not 0 < args.seconds <= 120 or not all(0 < r <= 20_000 for r in args.rate) or len(args.rate) > 5:
        parser.error("--seconds must be in (0, 120], --rate in (0, 20000], at most 5 rates")
    if not 1 <= args.connections <= 32:
        parser.error("--connections must be between 1 and 32")
    if not 0 <= args.probe_gap_ms <= 5_000:
        parser.error("--probe-gap-ms must be between 0 and 5000")
    if not 1 <= args.lookups <= 50_000 or not 1 <= args.batch_size <= 500 or args.poll_ms <= 0:
        parser.error("--lookups in [1, 50000], --batch-size in [1, 500], --poll-ms > 0")
    if not is_loopback(args.postgres_url):
        parser.error("--postgres-url must point at the loopback interface")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C: servers are stopped, scratch databases dropped.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    # A shell starts background jobs with SIGINT ignored, and children inherit that: the servers
    # would then ignore the SIGINT that asks them to shut down gracefully. A handler is reset on exec.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    logs.configure("WARNING")  # the in-process processor logs every recomputed component at DEBUG
    engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    busy = background_load()
    header = (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} x {cpu_model()}, "
        f"{measured_code()}, CPU busy before the run: "
        + ("unknown" if busy is None else f"{100 * busy:.0f}%")
    )
    console.print(f"[dim]{header}[/dim]")
    if busy is not None and busy > 0.15:
        err_console.print(
            "[yellow]warning: other processes keep the CPUs busy; the results will be low and noisy[/yellow]"
        )
    reports: list[EngineReport] = []
    failed = False
    for engine_name in engines:
        began = time.perf_counter()
        try:
            report = run_engine(engine_name, args)
        except Exception as exc:
            err_console.print(f"[red]{engine_name}: benchmark failed: {exc}[/red]")
            failed = True
            continue
        console.print(f"[dim]{engine_name}: done in {time.perf_counter() - began:.0f} s[/dim]")
        console.print(report_table(report, "opencdp identity resolution and profiles"))
        reports.append(report)
    if args.markdown and reports:
        print(f"\n{header}\n")
        print(markdown(reports))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
