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
import base64
import contextlib
import http.client
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

HOST = "127.0.0.1"  # the only address this script ever sends load to
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: Upper bound on the rate the pre-generated pool must sustain; caps memory and request count.
POOL_EVENTS_PER_SECOND = 30_000
REQUEST_TIMEOUT_S = 30.0
HEALTH_TIMEOUT_S = 60.0

# Wide enough for the results table when stdout is a pipe (rich would assume 80 columns).
console = Console(width=None if sys.stdout.isatty() else 200)
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


# --------------------------------------------------------------------------------------------
# Realistic events


_PRODUCTS = [
    (f"sku-{n:05d}", name, category, price)
    for n, (name, category, price) in enumerate(
        [
            ("Trail Running Shoe", "Shoes", 129.95),
            ("Merino Wool Beanie", "Accessories", 24.5),
            ("Waterproof Shell Jacket", "Outerwear", 249.0),
            ("Insulated Bottle 750 ml", "Gear", 34.99),
            ("Cotton Crew T-Shirt", "Tops", 19.9),
            ("Hiking Socks (3 pack)", "Accessories", 17.0),
            ("Down Vest", "Outerwear", 159.0),
            ("Ultralight Daypack 20 L", "Bags", 89.0),
            ("Polarised Sunglasses", "Accessories", 64.0),
            ("Softshell Trousers", "Bottoms", 99.95),
        ],
        start=10_000,
    )
]
_USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
]
_LOCALES = [
    ("en-US", "America/New_York"),
    ("de-DE", "Europe/Berlin"),
    ("fr-FR", "Europe/Paris"),
    ("en-GB", "Europe/London"),
    ("nl-NL", "Europe/Amsterdam"),
]
_CURRENCIES = ["USD", "EUR", "GBP"]
_TRACK_EVENTS = ["Product Viewed", "Product Added", "Cart Viewed", "Checkout Started", "Order Completed"]
_LIBRARY = {"name": "analytics.js", "version": "5.2.1"}
_SITE = "https://shop.example.com"


def iso(moment: datetime) -> str:
    """The analytics.js timestamp format: milliseconds, `Z` for UTC."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventFactory:
    """Segment-spec track/page/identify calls of roughly 500-800 bytes, with unique messageIds.

    Events come from a pool of `visitors` returning browsers (about ten events each in a
    default run), 40% of them signed in, as on a real shop: the identity processor sees repeat
    visitors, not a brand-new person in every event.
    """

    def __init__(self, seed: int, visitors: int = 15_000) -> None:
        self.rng = random.Random(seed)
        self.now = datetime.now(UTC)
        self.visitors = visitors

    def _context(self, path: str, title: str) -> dict[str, Any]:
        rng = self.rng
        locale, timezone = rng.choice(_LOCALES)
        return {
            "library": _LIBRARY,
            "page": {
                "path": path,
                "url": _SITE + path,
                "title": title,
                "referrer": rng.choice(["https://www.google.com/", "https://www.bing.com/", ""]),
            },
            "userAgent": rng.choice(_USER_AGENTS),
            "ip": f"203.0.113.{rng.randrange(1, 255)}",
            "locale": locale,
            "timezone": timezone,
        }

    def event(self, offset_ms: int) -> dict[str, Any]:
        rng = self.rng
        visitor = rng.randrange(self.visitors)
        message: dict[str, Any] = {
            "messageId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "anonymousId": str(uuid.UUID(int=visitor * 0x9E3779B97F4A7C15 % 2**128, version=4)),
            "timestamp": iso(self.now - timedelta(milliseconds=offset_ms)),
        }
        if visitor % 5 < 2:  # signed in
            message["userId"] = f"user_{visitor}"
        product_id, product, category, price = rng.choice(_PRODUCTS)
        kind = rng.random()
        if kind < 0.65:
            quantity = rng.randrange(1, 4)
            message.update(
                type="track",
                event=rng.choice(_TRACK_EVENTS),
                properties={
                    "product_id": product_id,
                    "name": product,
                    "category": category,
                    "price": price,
                    "quantity": quantity,
                    "value": round(price * quantity, 2),
                    "currency": rng.choice(_CURRENCIES),
                },
                context=self._context(f"/products/{product_id}", f"{product} | Example Shop"),
            )
        elif kind < 0.9:
            path = f"/c/{category.lower()}"
            message.update(
                type="page",
                name=category,
                properties={
                    "path": path,
                    "url": _SITE + path,
                    "title": f"{category} | Example Shop",
                    "category": category,
                },
                context=self._context(path, f"{category} | Example Shop"),
            )
        else:
            user = message.setdefault("userId", f"user_{visitor}")  # signing in now
            message.update(
                type="identify",
                traits={
                    "email": f"{user}@example.org",
                    "firstName": "Alex",
                    "lastName": "Doe",
                    "plan": rng.choice(["free", "plus", "pro"]),
                    "createdAt": "2023-11-02T09:14:00Z",
                    "address": {"city": "Utrecht", "country": "NL"},
                },
                context=self._context("/account", "Your account | Example Shop"),
            )
        return message

    def batch_body(self, size: int) -> bytes:
        events = [self.event(offset_ms=self.rng.randrange(0, 5_000)) for _ in range(size)]
        return orjson.dumps({"batch": events, "sentAt": iso(self.now)})


def make_bodies(count: int, batch_size: int, seed: int = 1) -> list[bytes]:
    factory = EventFactory(seed)
    return [factory.batch_body(batch_size) for _ in range(count)]


# --------------------------------------------------------------------------------------------
# Databases and the server process


@dataclass
class Target:
    """One engine under test: the database URL to count rows in and the server's environment."""

    engine: str
    database_url: str
    env: dict[str, str]
    workdir: Path
    postgres_db: str | None = None


def _base_env(workdir: Path, server_env: dict[str, str]) -> dict[str, str]:
    """The caller's environment minus its OPENCDP_* settings, so only what we pass applies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCDP_")}
    env.update(OPENCDP_DATA_DIR=str(workdir), OPENCDP_LOG_LEVEL="WARNING")
    env.update(server_env)
    return env


@contextlib.contextmanager
def sqlite_target(server_env: dict[str, str]) -> Iterator[Target]:
    with tempfile.TemporaryDirectory(prefix="opencdp-bench-") as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'opencdp.db'}"
        env = _base_env(workdir, server_env)
        env["OPENCDP_DATABASE_URL"] = url
        yield Target("sqlite", url, env, workdir)


@contextlib.contextmanager
def postgres_target(admin_url: str, server_env: dict[str, str]) -> Iterator[Target]:
    name = f"opencdp_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        with tempfile.TemporaryDirectory(prefix="opencdp-bench-") as tmp:
            workdir = Path(tmp)
            env = _base_env(workdir, server_env)
            env["OPENCDP_DATABASE_URL"] = url
            yield Target("postgresql", url, env, workdir, postgres_db=name)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def opencdp_command() -> list[str]:
    """The `opencdp` console script of the running interpreter's environment."""
    script = Path(sys.executable).parent / "opencdp"
    return [str(script)] if script.exists() else [sys.executable, "-m", "opencdp"]


def create_source(target: Target) -> str:
    done = subprocess.run(
        [*opencdp_command(), "sources", "create", "bench"],
        env=target.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"`opencdp sources create` failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """`opencdp serve` as a child process; stderr goes to a file so a failure can be shown."""

    def __init__(self, target: Target) -> None:
        self.port = free_port()
        self.log_path = target.workdir / "server.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*opencdp_command(), "serve", "--host", HOST, "--port", str(self.port)],
            env=target.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self, timeout: float = HEALTH_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
                conn.request("GET", "/api/health")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
                conn.close()
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not answer /api/health within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT (uvicorn's graceful shutdown, which also closes the log writer), then force."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return self.process.returncode

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


# --------------------------------------------------------------------------------------------
# CPU accounting (Linux /proc; silently absent elsewhere)


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: str) -> tuple[str, float] | None:
    """(command name, CPU seconds used) of one process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.find("(") + 1 : text.rfind(")")]
    fields = text.rpartition(")")[2].split()
    return name, (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def machine_cpu_busy() -> tuple[float, float] | None:
    """(busy, total) CPU seconds over all cores since boot."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = values[3] + values[4]  # idle + iowait; guest time is already inside user
    return (sum(values) - idle) / _TICK, sum(values) / _TICK


def _serves_database(pid: str, database: str) -> bool:
    """A PostgreSQL backend of `database` ("postgres: user db host(port) state"), or one of the
    server's shared helpers (WAL writer, checkpointer, ...); not backends of other databases."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    words = title.split()
    if not words or words[0] != "postgres:":
        return False
    for i, word in enumerate(words[1:], start=1):  # the client address follows user and database
        if word == "[local]" or (word.endswith(")") and "(" in word):
            return words[i - 1] == database
    return True


@dataclass
class CpuSnapshot:
    """CPU seconds used so far by the server, PostgreSQL's processes, this client and the machine."""

    server: float
    postgres: float
    client: float
    machine: float

    @classmethod
    def take(cls, server_pid: int, postgres_db: str | None) -> CpuSnapshot | None:
        machine = machine_cpu_busy()
        server = _proc_stat(str(server_pid))
        if machine is None or server is None:
            return None
        postgres = 0.0
        if postgres_db:
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit() and _serves_database(entry.name, postgres_db):
                    postgres += (_proc_stat(entry.name) or ("", 0.0))[1]
        times = os.times()
        return cls(server[1], postgres, times.user + times.system, machine[0])


@dataclass
class CpuUse:
    """Average cores busy over the measured window; `other` is everything else on the machine."""

    server: float
    postgres: float
    client: float
    other: float

    @classmethod
    def between(cls, before: CpuSnapshot | None, after: CpuSnapshot | None, seconds: float) -> CpuUse | None:
        if before is None or after is None or seconds <= 0:
            return None
        server, postgres, client = (
            after.server - before.server,
            after.postgres - before.postgres,
            after.client - before.client,
        )
        other = max(0.0, after.machine - before.machine - server - postgres - client)
        return cls(server / seconds, postgres / seconds, client / seconds, other / seconds)

    def __str__(self) -> str:
        return f"{self.server:.2f} / {self.postgres:.2f} / {self.client:.2f} / {self.other:.2f}"


def background_load(seconds: float = 1.0) -> float | None:
    """Fraction of all cores busy while we are idle: anything else running skews the numbers."""
    before = machine_cpu_busy()
    time.sleep(seconds)
    after = machine_cpu_busy()
    if not before or not after or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return "unknown CPU"


# --------------------------------------------------------------------------------------------
# Load


@dataclass
class WorkerStats:
    completions: list[tuple[float, float]] = field(default_factory=list)  # (finished_at, latency_s)
    acked_events: int = 0
    errors: list[str] = field(default_factory=list)
    exhausted: bool = False


@dataclass
class Window:
    start: float
    measure_from: float
    end: float


def worker(
    port: int,
    auth: str,
    bodies: list[bytes],
    events_per_body: int,
    window: Window,
    stop: threading.Event,
    stats: WorkerStats,
) -> None:
    """One keep-alive connection sending its share of the pool until the window closes."""
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
    try:
        for body in bodies:
            if stop.is_set() or time.perf_counter() >= window.end:
                return
            started = time.perf_counter()
            try:
                conn.request("POST", "/v1/batch", body=body, headers=headers)
                response = conn.getresponse()
                reply = response.read()
            except (OSError, http.client.HTTPException) as exc:
                stats.errors.append(f"{type(exc).__name__}: {exc}")
                stop.set()
                return
            finished = time.perf_counter()
            if response.status != 200:
                stats.errors.append(f"HTTP {response.status}: {reply[:300].decode(errors='replace')}")
                stop.set()
                return
            stats.acked_events += events_per_body
            stats.completions.append((finished, finished - started))
        stats.exhausted = True
    finally:
        conn.close()


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


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(q / 100 * len(sorted_values) + 0.5))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def count_rows(database_url: str) -> tuple[int, int | None]:
    """Rows in the event log, and how many lie beyond the processors' checkpoint (if there is one)."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = int(conn.execute(sa.text("select count(*) from events")).scalar_one())
            if not sa.inspect(conn).has_table("processor_state"):
                return rows, None
            unprocessed = conn.execute(
                sa.text(
                    "select count(*) from events where id > "
                    "(select coalesce(min(last_event_id), 0) from processor_state)"
                )
            ).scalar_one()
            return rows, int(unprocessed)
    finally:
        engine.dispose()


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


def run_engine(target: Target, bodies: list[bytes], args: argparse.Namespace) -> Result:
    write_key = create_source(target)
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    server = Server(target)
    try:
        server.wait_healthy()
        console.print(f"[dim]{target.engine}: server pid {server.process.pid} on {HOST}:{server.port}[/dim]")
        shares = [bodies[i :: args.connections] for i in range(args.connections)]
        stop = threading.Event()
        stats = [WorkerStats() for _ in shares]
        start = time.perf_counter()
        window = Window(start, start + args.warmup, start + args.warmup + args.seconds)
        threads = [
            threading.Thread(
                target=worker,
                name=f"client-{i}",
                daemon=True,
                args=(server.port, auth, share, args.batch_size, window, stop, stats[i]),
            )
            for i, share in enumerate(shares)
        ]
        for thread in threads:
            thread.start()

        stop.wait(max(0.0, window.measure_from - time.perf_counter()))
        cpu_before = CpuSnapshot.take(server.process.pid, target.postgres_db)
        profiler = None
        if args.profile and not stop.is_set():
            args.profile.mkdir(parents=True, exist_ok=True)
            profiler = Profiler(server.process.pid, args.seconds, args.profile / f"{target.engine}.txt")
        stop.wait(max(0.0, window.end - time.perf_counter()))
        cpu_after = CpuSnapshot.take(server.process.pid, target.postgres_db)

        for thread in threads:
            thread.join(REQUEST_TIMEOUT_S + 5)
        if any(thread.is_alive() for thread in threads):
            stop.set()
            raise RuntimeError("client threads did not finish within the request timeout")
        rows, unprocessed = count_rows(target.database_url)  # before shutdown: 200 means committed
        if profiler:
            console.print(f"[bold]py-spy profile of the {target.engine} server[/bold]\n{profiler.finish()}")
    finally:
        exit_code = server.stop()
    if exit_code != 0:
        err_console.print(f"[yellow]{target.engine}: server exited with {exit_code}[/yellow]")
        err_console.print(server.log_tail(), markup=False)

    measured = sorted(
        latency
        for s in stats
        for finished, latency in s.completions
        if window.measure_from <= finished <= window.end
    )
    exhausted = any(s.exhausted for s in stats)
    last = max((finished for s in stats for finished, _ in s.completions), default=window.end)
    elapsed = (min(window.end, last) if exhausted else window.end) - window.measure_from
    return Result(
        engine=target.engine,
        connections=args.connections,
        batch_size=args.batch_size,
        requests=len(measured),
        events=len(measured) * args.batch_size,
        seconds=elapsed,
        p50_ms=percentile(measured, 50) * 1000,
        p99_ms=percentile(measured, 99) * 1000,
        acked_events=sum(s.acked_events for s in stats),
        rows=rows,
        cpu=CpuUse.between(cpu_before, cpu_after, window.end - window.measure_from),
        server_exit=exit_code,
        settings=settings_label(target.engine, args.server_env),
        unprocessed=unprocessed,
        errors=[e for s in stats for e in s.errors],
        exhausted=exhausted,
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
        f"{'yes' if r.durable else 'NO'} ({r.rows:,} / {r.acked_events:,})",
        "-" if r.cpu is None else str(r.cpu),
        "-" if r.unprocessed is None else f"{r.unprocessed:,}",
    ]


def results_table(results: list[Result]) -> Table:
    table = Table(title=f"opencdp ingest: POST /v1/batch, {results[0].seconds:.0f} s measured")
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in ("engine", "server settings") else "right")
    for r in results:
        table.add_row(*result_cells(r))
    return table


def markdown_table(results: list[Result]) -> str:
    """The same table as GitHub Markdown, for pasting into BENCHMARKS.md."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|---|" + "--:|" * (len(COLUMNS) - 2)]
    lines += ["| " + " | ".join(result_cells(r)) + " |" for r in results]
    return "\n".join(lines)


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
        default=os.environ.get("OPENCDP_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
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
    for item in args.server_env:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("OPENCDP_"):
            parser.error(f"--server-env takes OPENCDP_NAME=VALUE, got {item!r}")
        server_env[key] = value
    args.server_env = server_env
    return args


def git_revision() -> str:
    """The commit measured, with `-dirty` when the working tree has uncommitted changes."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if done.returncode == 0:
            return done.stdout.strip()
    return "unknown revision"


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
        target_cm = (
            sqlite_target(args.server_env)
            if engine == "sqlite"
            else postgres_target(args.postgres_url, args.server_env)
        )
        try:
            with target_cm as target:
                results.append(run_engine(target, bodies, args))
        except Exception as exc:
            err_console.print(f"[red]{engine}: benchmark failed: {exc}[/red]")
            return 1

    console.print(results_table(results))
    if args.markdown:
        print(markdown_table(results))
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
