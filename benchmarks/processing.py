"""Processing alone: how fast the event log becomes identities, profiles, computed traits and
memberships, with 1, 2, … worker processes, and where the time goes.

Per engine, on a fresh database (SQLite in a temporary directory; a scratch PostgreSQL database,
dropped afterwards), the demo shop's log is written directly (the collector's normalisation and
INSERT, the order `opencdp demo` sends it: `profiles.preload`). Then, for each `--workers N`:
derived state is reset, N processes each run the worker loop (`Processor.step`, what
`opencdp worker` runs) until the log is processed and no profile waits for its refresh, and the
wall time from start to caught up is taken. Every run compares the live profiles (ids,
merged_into, traits, event_counts, computed) and the segment memberships with the first run's:
they must be equal whatever the number of workers. Each worker reports its CPU time and the
seconds it spent per processing stage (the counters behind `opencdp_processor_stage_seconds`).

SQLite allows one writer at a time: several workers there only take turns, so the default is one
worker on SQLite and 1 and 2 on PostgreSQL.

    .venv/bin/python benchmarks/processing.py --engine both --customers 2000 --markdown
    .venv/bin/python benchmarks/processing.py --engine postgresql --workers 1 2 --chunk-size 1000
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from harness.machine import background_load, cpu_model, measured_code
from harness.report import markdown_table, rich_table, wide_console
from harness.scratch import default_postgres_url, is_loopback, scratch_database
from opencdp.config import Settings
from opencdp.identity.identifiers import IdentityRules
from opencdp.process.derived import queued
from opencdp.process.processor import Processor, reset_derived_state
from opencdp.store.database import open_database
from profiles import preload

STAGES = ("read", "wait", "identity", "write", "derived", "commit")


def _settings(url: str, workdir: Path) -> Settings:
    return Settings(data_dir=workdir, database_url=url)


def _caught_up(processor: Processor) -> bool:
    with processor.engine.connect() as conn:
        return processor.backlog() == 0 and queued(conn) == 0


def _worker(url: str, workdir: str, chunk_size: int, start: Any, out: Any) -> None:
    """One worker process: the worker loop until everything is processed; its CPU and stages."""
    from opencdp import metrics

    engine = open_database(_settings(url, Path(workdir)), run_migrations=False)
    processor = Processor(engine, IdentityRules(), chunk_size=chunk_size)
    start.wait()
    cpu = time.process_time()
    idle_checks = 0
    while idle_checks < 2:
        if processor.step():
            idle_checks = 0
        elif _caught_up(processor):
            idle_checks += 1
        else:
            time.sleep(0.005)  # another worker holds the identity step or the last partitions
    cpu = time.process_time() - cpu
    stages = {stage: metrics._metrics().stage_seconds.labels(stage)._value.get() for stage in STAGES}
    engine.dispose()
    out.put({"cpu": cpu, "stages": stages, "finished": time.perf_counter()})


#: computed traits relative to the moment they are computed (windows, days since): they may differ
#: between two runs a minute apart, so the comparison leaves them out
TIME_RELATIVE = ("_30_days", "_365_days", "rfm_", "engagement_score")


def _timeless(computed: dict[str, Any] | str | None) -> dict[str, Any] | None:
    if computed is None:
        return None
    if isinstance(computed, str):  # SQLite returns JSON text to a textual query
        computed = orjson.loads(computed)
        assert isinstance(computed, dict)
    return {k: v for k, v in computed.items() if not any(part in k for part in TIME_RELATIVE)}


def digest(engine: sa.Engine) -> str:
    """What must not depend on the number of workers: live profiles (with their computed traits,
    but for the time-relative ones) and current segment memberships (the history of entries and
    exits depends on when each refresh ran)."""
    h = hashlib.sha256()
    with engine.connect() as conn:
        for row in conn.execute(
            sa.text("select id, merged_into, traits, event_counts, computed from profiles order by id")
        ):
            computed = _timeless(row.computed) if row.merged_into is None else None
            h.update(
                orjson.dumps(
                    [row.id, row.merged_into, row.traits, row.event_counts, computed],
                    option=orjson.OPT_SORT_KEYS,
                    default=str,
                )
            )
        for row in conn.execute(
            sa.text(
                "select segment_id, profile_id from segment_memberships where exited_at is null order by 1, 2"
            )
        ):
            h.update(repr(tuple(row)).encode())
    return h.hexdigest()[:12]


def run(engine_name: str, args: argparse.Namespace) -> list[list[str]]:
    rows: list[list[str]] = []
    with scratch_database(engine_name, args.postgres_url, prefix="opencdp-processing-") as db:
        engine = open_database(_settings(db.url, db.workdir))
        began = time.perf_counter()
        events = preload(engine, args.customers, args.seed)
        print(
            f"{engine_name}: log pre-loaded: {events:,} events in {time.perf_counter() - began:.1f} s",
            flush=True,
        )
        _install_segments(engine)
        reference = None
        context = multiprocessing.get_context("spawn")
        for workers in args.workers or ([1] if engine_name == "sqlite" else [1, 2]):
            reset_derived_state(engine)
            load = background_load()
            start, out = context.Event(), context.Queue()
            children = [
                context.Process(target=_worker, args=(db.url, str(db.workdir), args.chunk_size, start, out))
                for _ in range(workers)
            ]
            for child in children:
                child.start()
            time.sleep(3.0)  # every worker has imported and connected
            began = time.perf_counter()
            start.set()
            results = [out.get(timeout=1800) for _ in children]
            elapsed = time.perf_counter() - began
            for child in children:
                child.join(30)
            result = digest(engine)
            reference = reference or result
            cpu = sum(r["cpu"] for r in results)
            stages = {s: sum(r["stages"][s] for r in results) for s in STAGES}
            total = sum(stages.values()) or 1.0
            where = ", ".join(f"{s} {100 * v / total:.0f}%" for s, v in stages.items() if v >= 0.005 * total)
            rows.append(
                [
                    engine_name,
                    str(workers),
                    f"{events:,}",
                    f"{elapsed:.1f}",
                    f"{events / elapsed:,.0f}",
                    f"{events / elapsed / workers:,.0f}",
                    f"{cpu:.1f}",
                    where,
                    "yes" if result == reference else f"NO ({result} != {reference})",
                    "" if load is None else f"{load:.2f}",
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
        engine.dispose()
    return rows


def _install_segments(engine: sa.Engine) -> None:
    """Two segments so that memberships are part of the work (the demo defines none); neither is
    relative to today, so that runs a minute apart must agree."""
    from opencdp.segments import store

    store.save(engine, "big spenders", {"computed": "total_revenue", "op": "gte", "value": 200})
    store.save(engine, "repeat buyers", {"event": "Order Completed", "count": {"op": "gte", "value": 2}})


COLUMNS = [
    "engine",
    "workers",
    "events",
    "seconds",
    "events/s",
    "events/s per worker",
    "worker CPU s (sum)",
    "where the time goes (stages, all workers)",
    "same result as first run",
    "other load before (cores)",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--customers", type=int, default=2000, help="demo customers (2000: ~35k events)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="*", help="worker counts to run (default: 1; 1 2 on PG)")
    parser.add_argument("--postgres-url", default=default_postgres_url())
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.customers <= 50_000 or any(not 1 <= w <= 8 for w in args.workers or []):
        parser.error("--customers in [1, 50000], --workers in [1, 8]")
    if not is_loopback(args.postgres_url):
        parser.error("--postgres-url must point at the loopback interface")
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each worker counts its own stages
    print(f"{cpu_model()}, {os.cpu_count()} cores; code {measured_code()}", flush=True)
    rows: list[list[str]] = []
    for engine_name in ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]:
        rows += run(engine_name, args)
    if args.markdown:
        print(markdown_table(COLUMNS, rows, left=1))
    else:
        wide_console().print(rich_table("Processing alone", COLUMNS, rows))
    return 0 if all(r[8] == "yes" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
