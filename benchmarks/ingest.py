"""Ingest benchmark: how many events per second a real `opencdp serve` makes durable.

Why this exists: the collector promises that every event it acknowledges with 200 is already
committed to the event log (group commit in one writer thread, see `opencdp.collect.writer`).
That promise costs fsyncs and CPU, so we measure it end to end, the way a Segment client
would hit it: real server process, real HTTP/1.1 keep-alive connections, `POST /v1/batch` with
Basic auth, realistic 100-event batches. Afterwards the script counts the rows in `events`
and checks that they equal the events acknowledged, so a fast number can never hide lost data.

What it does, per engine (SQLite in a temporary directory, PostgreSQL in a scratch database
that is dropped at the end):

1. creates the database and a source through the CLI (`opencdp sources create bench`);
2. starts `opencdp serve` on a free 127.0.0.1 port and waits for `/api/health`;
3. sends pre-serialised batches (client JSON cost is paid before the clock starts) from
   `--connections` threads, each with its own `http.client.HTTPConnection`, for a warm-up and
   then `--seconds` of measurement; only 200 responses count, anything else fails the run;
4. compares `select count(*) from events` with the number of events acknowledged;
5. stops the server with SIGINT (graceful shutdown) and cleans up.

The load is bounded in time (`--warmup` + `--seconds`, plus a per-request timeout) and in
count (the pool of pre-generated batches), and only ever targets 127.0.0.1.

Usage:
    .venv/bin/python benchmarks/ingest.py [--engine sqlite|postgresql|both] [--seconds N]
        [--connections N] [--batch-size 100] [--sqlite-synchronous FULL|NORMAL|EXTRA]
        [--server-env OPENCDP_NAME=VALUE ...] [--profile DIR] [--markdown]

The server runs with its defaults apart from what is passed explicitly; OPENCDP_* variables of
the calling shell are not inherited, so a stray setting cannot skew a run. If the events table
has a processor checkpoint (`processor_state`), the table also shows how many acknowledged
events the in-server processor had not reached when the load stopped.

Exit status: 0 when every request got 200 and the log holds exactly the acknowledged events.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from harness.events import make_bodies
from harness.load import Batch, Load, basic_auth
from harness.machine import CpuSnapshot, CpuUse, background_load, cpu_model, git_revision
from harness.report import acked_cell, markdown_table, percentile, rich_table, wide_console
from harness.scratch import (
    HOST,
    Scratch,
    Server,
    create_source,
    default_postgres_url,
    log_state,
    scratch_database,
    server_env_from,
)

#: Upper bound on the rate the pre-generated pool must sustain; caps memory and request count.
POOL_EVENTS_PER_SECOND = 30_000

console = wide_console(200)
err_console = Console(stderr=True)
COLUMNS = (
    "engine",
    "server settings",
    "connections",
    "batch size",
    "requests",
    "events accepted",
    "events/s",
    "p50 ms",
    "p99 ms",
    "rows in log == acknowledged",
    "CPU cores: server / postgres / client / other",
    "unprocessed at end",
)
#: More CPU than this used by unrelated processes during a run makes its numbers suspect.
MAX_OTHER_CORES = 0.15


@dataclass
class Result:
    engine: str
    connections: int
    batch_size: int
    requests: int
    events: int
    seconds: float
    p50_ms: float
    p99_ms: float
    acked_events: int
    rows: int
    cpu: CpuUse | None
    settings: str = ""
    unprocessed: int | None = None  # events the in-server processor had not reached yet
    server_exit: int | None = None
    errors: list[str] = field(default_factory=list)
    exhausted: bool = False

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def durable(self) -> bool:
        return self.rows == self.acked_events

    @property
    def ok(self) -> bool:
        return not self.errors and self.durable and self.acked_events > 0


class Profiler:
    """Optional `py-spy record` of the server over the measured window (perturbs the numbers)."""

    def __init__(self, pid: int, seconds: float, out: Path) -> None:
        self.out = out
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.process = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, round(seconds))),
                "--rate",
                "200",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def finish(self) -> str:
        try:
            _, err = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        if self.process.returncode != 0 or not self.out.exists():
            return f"py-spy failed ({self.process.returncode}): {err.decode(errors='replace').strip()[-500:]}"
        return summarise_profile(self.out)


def summarise_profile(path: Path, top: int = 15) -> str:
    """Top functions by own (leaf) samples and by inclusive samples, from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames[1:]):  # the first frame is the thread
            inclusive[frame] += count
    if not total:
        return "py-spy recorded no samples"
    lines = [f"{total} samples ({path})", "  own time:"]
    lines += [f"    {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines.append("  inclusive:")
    lines += [f"    {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines)


def run_engine(target: Scratch, bodies: list[bytes], args: argparse.Namespace) -> Result:
    auth = basic_auth(create_source(target.env))
    batches = [Batch(body, args.batch_size, auth) for body in bodies]
    server = Server(target.env, target.workdir)
    try:
        server.wait_healthy()
        console.print(f"[dim]{target.engine}: server pid {server.pid} on {HOST}:{server.port}[/dim]")
        load = Load(server.port, batches, args.warmup + args.seconds, args.connections).begin()
        measure_from = load.start + args.warmup
        load.sleep_until(measure_from)
        cpu_before = CpuSnapshot.take(server.pid, target.postgres_db)
        profiler = None
        if args.profile and not load.stop.is_set():
            args.profile.mkdir(parents=True, exist_ok=True)
            profiler = Profiler(server.pid, args.seconds, args.profile / f"{target.engine}.txt")
        load.sleep_until(load.end)
        cpu_after = CpuSnapshot.take(server.pid, target.postgres_db)
        load.join()
        state = log_state(target.url)  # before shutdown: 200 means committed
        if profiler:
            console.print(f"[bold]py-spy profile of the {target.engine} server[/bold]\n{profiler.finish()}")
    finally:
        exit_code = server.stop()
    if exit_code != 0:
        err_console.print(f"[yellow]{target.engine}: server exited with {exit_code}[/yellow]")
        err_console.print(server.log_tail(), markup=False)

    measured = load.latencies(measure_from, load.end)
    last = max((finished for finished, _ in load.completions), default=load.end)
    elapsed = (min(load.end, last) if load.exhausted else load.end) - measure_from
    return Result(
        engine=target.engine,
        connections=args.connections,
        batch_size=args.batch_size,
        requests=len(measured),
        events=len(measured) * args.batch_size,
        seconds=elapsed,
        p50_ms=percentile(measured, 50) * 1000,
        p99_ms=percentile(measured, 99) * 1000,
        acked_events=load.acked_events,
        rows=state.rows,
        cpu=CpuUse.between(cpu_before, cpu_after, load.end - measure_from),
        server_exit=exit_code,
        settings=settings_label(target.engine, args.server_env),
        unprocessed=state.unprocessed,
        errors=load.errors,
        exhausted=load.exhausted,
    )


# --------------------------------------------------------------------------------------------
# Report


def settings_label(engine: str, server_env: dict[str, str]) -> str:
    """The server settings that differ from a bare `opencdp serve` and matter for this engine."""
    shown = {k: v for k, v in server_env.items() if engine == "sqlite" or k != "OPENCDP_SQLITE_SYNCHRONOUS"}
    return " ".join(f"{k.removeprefix('OPENCDP_')}={v}" for k, v in shown.items()) or "defaults"


def result_cells(r: Result) -> list[str]:
    return [
        r.engine,
        r.settings,
        str(r.connections),
        str(r.batch_size),
        f"{r.requests:,}",
        f"{r.events:,}",
        f"{r.events_per_s:,.0f}",
        f"{r.p50_ms:.1f}",
        f"{r.p99_ms:.1f}",
        acked_cell(r.rows, r.acked_events),
        "-" if r.cpu is None else str(r.cpu),
        "-" if r.unprocessed is None else f"{r.unprocessed:,}",
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured duration (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured warm-up first (default 2)")
    parser.add_argument("--connections", type=int, default=8, help="concurrent keep-alive connections")
    parser.add_argument("--batch-size", type=int, default=100, help="events per POST /v1/batch")
    parser.add_argument(
        "--sqlite-synchronous",
        choices=["FULL", "NORMAL", "EXTRA"],
        default="FULL",
        help="passed to the server as OPENCDP_SQLITE_SYNCHRONOUS (default FULL)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more server settings, e.g. OPENCDP_PROCESS_IN_SERVER=0 (repeatable)",
    )
    parser.add_argument(
        "--postgres-url",
        default=default_postgres_url(),
        help="server to create the scratch database on (it is dropped afterwards)",
    )
    parser.add_argument(
        "--max-events",
        type=int,
        default=None,
        help=f"size of the pre-generated pool (default {POOL_EVENTS_PER_SECOND:,} "
        "events/s x (warmup + seconds)); the run stops early if it runs out",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="record the server with py-spy during the measured window into DIR "
        "(slows the server down: do not publish those numbers)",
    )
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.batch_size < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--connections and --batch-size must be >= 1, --seconds > 0, --warmup >= 0")
    if args.seconds + args.warmup > 600:
        parser.error("--warmup + --seconds is capped at 600 s")
    server_env = {"OPENCDP_SQLITE_SYNCHRONOUS": args.sqlite_synchronous}
    try:
        server_env.update(server_env_from(args.server_env))
    except ValueError as exc:
        parser.error(str(exc))
    args.server_env = server_env
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    max_events = args.max_events or int(POOL_EVENTS_PER_SECOND * (args.warmup + args.seconds))
    count = max(args.connections, -(-max_events // args.batch_size))

    began = time.perf_counter()
    bodies = make_bodies(count, args.batch_size)
    sizes = sorted(len(b) for b in bodies)
    median = sizes[len(sizes) // 2]
    console.print(
        f"[dim]pre-generated {count:,} batches x {args.batch_size} events "
        f"(median body {median / 1024:.0f} KiB, {median / args.batch_size:.0f} "
        f"bytes/event, {sum(sizes) / 2**20:.0f} MiB) in {time.perf_counter() - began:.1f} s; "
        f"{os.cpu_count()} x {cpu_model()}; opencdp at {git_revision()}[/dim]"
    )

    busy = background_load()
    if busy is not None and busy > 0.15:
        err_console.print(
            f"[yellow]warning: {100 * busy:.0f}% of the CPUs are busy before the run "
            "(other processes); the results will be low and noisy[/yellow]"
        )

    results: list[Result] = []
    for engine in engines:
        try:
            with scratch_database(engine, args.postgres_url, server_env=args.server_env) as target:
                results.append(run_engine(target, bodies, args))
        except Exception as exc:
            err_console.print(f"[red]{engine}: benchmark failed: {exc}[/red]")
            return 1

    rows = [result_cells(r) for r in results]
    title = f"opencdp ingest: POST /v1/batch, {results[0].seconds:.0f} s measured"
    console.print(rich_table(title, COLUMNS, rows, left=2))
    if args.markdown:
        print(markdown_table(COLUMNS, rows, left=2))
    failed = False
    for r in results:
        if r.errors:
            failed = True
            err_console.print(f"[red]{r.engine}: {len(r.errors)} failed request(s); first:[/red]")
            err_console.print(r.errors[0], markup=False)
        if not r.durable:
            failed = True
            err_console.print(
                f"[red]{r.engine}: the log holds {r.rows} events but {r.acked_events} were acknowledged[/red]"
            )
        if r.cpu is not None and r.cpu.other > MAX_OTHER_CORES:
            err_console.print(
                f"[yellow]{r.engine}: other processes used {r.cpu.other:.2f} cores during the "
                "measurement; rerun on a quiet machine[/yellow]"
            )
        if r.exhausted:
            err_console.print(
                f"[yellow]{r.engine}: the pre-generated pool ran out before the time was up; "
                "raise --max-events[/yellow]"
            )
        if r.acked_events == 0:
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
