"""Scratch databases and the `opencdp` processes that run on them: the CLI, `serve`, `worker`.

A benchmark gets a fresh database per run (SQLite in a temporary directory; PostgreSQL in a
scratch database that is dropped afterwards), runs the CLI as a user would, and starts real
`opencdp serve` / `opencdp worker` processes with an environment that holds only what the
benchmark passes: OPENCDP_* variables of the calling shell are not inherited, so a stray setting
cannot skew a run.
"""

from __future__ import annotations

import bisect
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from opencdp.config import Settings
from opencdp.log.intake import MARK as INTAKE_MARK
from opencdp.log.intake import IntakeReader, intake_path, moved_through

HOST = "127.0.0.1"  # the only address the benchmarks ever talk to
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
HEALTH_TIMEOUT_S = 60.0
#: "FIRST-LAST": take server ports from this range instead of any free port (shared machines).
PORTS_VARIABLE = "OPENCDP_BENCH_PORTS"


def default_postgres_url() -> str:
    return os.environ.get("OPENCDP_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def is_loopback(url: str) -> bool:
    return sa.make_url(url).host in (None, "127.0.0.1", "localhost", "::1")


@dataclass
class Scratch:
    """One scratch database: its URL, a working directory, and the environment a CLI or server
    process needs for it (`env`; `server_env` are the benchmark's own settings inside it)."""

    engine: str
    url: str
    workdir: Path
    env: dict[str, str]
    postgres_db: str | None = None

    def settings(self) -> Settings:
        return Settings(data_dir=self.workdir, database_url=self.url)

    def with_env(self, **overrides: str) -> dict[str, str]:
        return {**self.env, **overrides}


def server_env_from(items: list[str]) -> dict[str, str]:
    """`--server-env OPENCDP_NAME=VALUE` options as a dict; ValueError names a malformed one."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("OPENCDP_"):
            raise ValueError(f"--server-env takes OPENCDP_NAME=VALUE, got {item!r}")
        env[key] = value
    return env


def base_env(workdir: Path, url: str, server_env: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment minus its OPENCDP_* settings, so only what we pass applies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCDP_")}
    env.update(OPENCDP_DATA_DIR=str(workdir), OPENCDP_DATABASE_URL=url, OPENCDP_LOG_LEVEL="WARNING")
    env.update(server_env or {})
    return env


@contextlib.contextmanager
def scratch_database(
    engine: str,
    postgres_url: str | None = None,
    *,
    prefix: str = "opencdp-bench-",
    name: str | None = None,
    server_env: dict[str, str] | None = None,
    keep: Path | None = None,
) -> Iterator[Scratch]:
    """A fresh database for one run, removed afterwards. PostgreSQL: `name` (dropped first if it
    exists, e.g. left by an interrupted run) or a random `opencdp_bench_…` name. With `keep`, the
    working directory (and the SQLite database in it) is `keep` and nothing is removed."""
    with contextlib.ExitStack() as stack:
        if keep is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
        else:
            workdir = keep
            workdir.mkdir(parents=True, exist_ok=True)
        if engine == "sqlite":
            url = f"sqlite:///{workdir / 'opencdp.db'}"
            yield Scratch(engine, url, workdir, base_env(workdir, url, server_env))
            return
        admin_url = postgres_url or default_postgres_url()
        db_name = name or f"opencdp_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
        stack.callback(admin.dispose)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{db_name}"'))
        try:
            url = sa.make_url(admin_url).set(database=db_name).render_as_string(hide_password=False)
            yield Scratch(engine, url, workdir, base_env(workdir, url, server_env), postgres_db=db_name)
        finally:
            if keep is None:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))


def opencdp_command() -> list[str]:
    """The `opencdp` console script of the running interpreter's environment."""
    script = Path(sys.executable).parent / "opencdp"
    return [str(script)] if script.exists() else [sys.executable, "-m", "opencdp"]


def cli(env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 600) -> str:
    """Run the `opencdp` CLI as a user would; its stdout (fails loudly with stderr)."""
    done = subprocess.run(
        [*opencdp_command(), *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"`opencdp {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def create_source(env: dict[str, str], name: str = "bench") -> str:
    """`opencdp sources create NAME`: the new source's write key."""
    return cli(env, "sources", "create", name).strip().splitlines()[0]


def create_admin_key(env: dict[str, str], name: str = "bench") -> str:
    """`opencdp keys create --role admin`: a key for the admin API (profile lookups)."""
    return cli(env, "keys", "create", "--role", "admin", "--name", name).strip().splitlines()[0]


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A free loopback port; from the range in OPENCDP_BENCH_PORTS ("18300-18399") when set."""
    wanted = os.environ.get(PORTS_VARIABLE, "")
    if wanted:
        first, _, last = wanted.partition("-")
        for port in range(int(first), int(last or first) + 1):
            if _port_is_free(port):
                return port
        raise RuntimeError(f"no free port in {PORTS_VARIABLE}={wanted}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Child:
    """An `opencdp` child process; its output goes to a log file so a failure can be shown."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = args[0]
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [*opencdp_command(), *args], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT (uvicorn's graceful shutdown, which also closes the log writer; the worker's
        clean exit), then SIGTERM, then SIGKILL."""
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            if self.process.poll() is not None:
                break
            self.process.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(wait)
        self._log.close()
        return self.process.returncode

    def log_tail(self, lines: int = 30) -> str:
        if not self._log.closed:
            self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Server(Child):
    """`opencdp serve` on a free loopback port, or on `port` (chosen beforehand with `free_port`
    when a setting must name the server's own URL, e.g. OPENCDP_ACCOUNTS_ISSUER)."""

    def __init__(self, env: dict[str, str], workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        super().__init__(
            ["serve", "--host", HOST, "--port", str(self.port)], env, workdir / f"serve-{self.port}.log"
        )

    def wait_healthy(self, timeout: float = HEALTH_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
                try:
                    conn.request("GET", "/api/health")
                    if conn.getresponse().status == 200:
                        return
                finally:
                    conn.close()
            time.sleep(0.1)
        raise RuntimeError(f"server did not answer /api/health within {timeout:.0f} s:\n{self.log_tail()}")


def report_exit(label: str, child: Child, code: int | None) -> None:
    """Show a child's log when it did not exit cleanly (stderr: it is not part of the results)."""
    if code not in (0, None):
        print(f"{label}: opencdp {child.name} exited with {code}\n{child.log_tail()}", file=sys.stderr)


@contextlib.contextmanager
def running_server(
    db: Scratch, env: dict[str, str] | None = None, port: int | None = None
) -> Iterator[Server]:
    """`opencdp serve` on `db`, healthy on entry, stopped gracefully on exit."""
    server = Server(env or db.env, db.workdir, port)
    try:
        server.wait_healthy()
        yield server
    finally:
        report_exit(db.engine, server, server.stop())


@contextlib.contextmanager
def running_workers(db: Scratch, count: int = 1, env: dict[str, str] | None = None) -> Iterator[list[Child]]:
    """`count` `opencdp worker` processes on `db`, stopped on exit."""
    workers: list[Child] = []
    try:
        for n in range(count):
            workers.append(Child(["worker"], env or db.env, db.workdir / f"worker-{n}.log"))
        yield workers
    finally:
        for worker in workers:
            report_exit(db.engine, worker, worker.stop())


# --------------------------------------------------------------------------------------------
# The event log as the benchmarks check it


@dataclass
class LogState:
    rows: int  # events in the log
    checkpoint: int | None  # the processors' checkpoint; None without a `processor_state` table
    unprocessed: int | None  # events beyond the checkpoint


class LogWatcher:
    """Reads the log's size and the processor's backlog from its own connection pool, cheaply
    enough to sample several times a second during a run."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)
        self.intake = IntakeReader(path) if (path := intake_path(self.engine)) else None

    def rows(self) -> int:
        return self.state().rows

    def _intake_ids(self) -> tuple[list[int], str]:
        """The ids waiting in the log's intake (SQLite under `serve`), read before the log: a row
        moved in between is then in the log that is read next, and left out here by the mark."""
        ids = self.intake.rows("SELECT id FROM intake ORDER BY id", ()) if self.intake else None
        return ([row[0] for row in ids] if ids else []), (self.intake.instance if self.intake else "")

    def state(self, processor: str | None = None) -> LogState:
        """With `processor`, that processor's checkpoint (e.g. 'profiles'); otherwise the lowest of
        all, 0 when none has started. Events acknowledged into the log's intake count as logged
        and unprocessed."""
        waiting_ids, instance = self._intake_ids()
        with self.engine.connect() as conn:
            rows = int(conn.execute(sa.text("select count(*) from events")).scalar_one())
            if waiting_ids:
                query = f"select value from settings where name = '{INTAKE_MARK}'"
                mark = conn.execute(sa.text(query)).scalar()
                moved = moved_through(mark, instance)
                waiting = len(waiting_ids) - bisect.bisect_right(waiting_ids, moved)
                rows += waiting
            else:
                waiting = 0
            if not sa.inspect(conn).has_table("processor_state"):
                return LogState(rows, None, None)
            query = "select coalesce(min(last_event_id), 0) from processor_state"
            params = {}
            if processor is not None:
                query += " where name = :name"
                params["name"] = processor
            checkpoint = int(conn.execute(sa.text(query), params).scalar_one())
            behind = conn.execute(
                sa.text("select count(*) from events where id > :checkpoint"), {"checkpoint": checkpoint}
            ).scalar_one()
            return LogState(rows, checkpoint, int(behind) + waiting)

    def close(self) -> None:
        self.engine.dispose()
        if self.intake is not None:
            self.intake.close()


def log_state(url: str, processor: str | None = None) -> LogState:
    watcher = LogWatcher(url)
    try:
        return watcher.state(processor)
    finally:
        watcher.close()


def wait_processed(url: str, timeout: float = 300.0, poll: float = 0.25) -> LogState:
    """Until every processor has reached the newest event (a backlog left by one phase of a
    benchmark must not compete with the next); TimeoutError after `timeout` seconds."""
    watcher = LogWatcher(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            state = watcher.state()
            if not state.unprocessed:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"{state.unprocessed:,} events still unprocessed after {timeout:.0f} s")
            time.sleep(poll)
    finally:
        watcher.close()


def secondary_indexes(conn: sa.Connection) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of the non-constraint indexes of profiles and profile_events."""
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            " AND tbl_name IN ('profiles', 'profile_events') ORDER BY name"
        )
    else:
        rows = conn.exec_driver_sql(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('profiles', 'profile_events')"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = indexname) ORDER BY indexname"
        )
    return [(r[0], r[1]) for r in rows]
