"""CPU accounting from Linux /proc (silently absent elsewhere) and a description of what is measured."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import opencdp

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_stat(pid: int | str) -> tuple[str, float] | None:
    """(command name, CPU seconds used) of one process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.find("(") + 1 : text.rfind(")")]
    fields = text.rpartition(")")[2].split()
    return name, (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def process_cpu_seconds(pid: int) -> float | None:
    stat = proc_stat(pid)
    return None if stat is None else stat[1]


def machine_cpu_busy() -> tuple[float, float] | None:
    """(busy, total) CPU seconds over all cores since boot."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = values[3] + values[4]  # idle + iowait; guest time is already inside user
    return (sum(values) - idle) / _TICK, sum(values) / _TICK


def busy_between(before: tuple[float, float] | None, after: tuple[float, float] | None) -> float | None:
    """Fraction of all cores busy between two `machine_cpu_busy()` readings."""
    if not before or not after or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def background_load(seconds: float = 1.0) -> float | None:
    """Fraction of all cores busy while we are idle: anything else running skews the numbers."""
    before = machine_cpu_busy()
    time.sleep(seconds)
    return busy_between(before, machine_cpu_busy())


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return "unknown CPU"


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


def measured_code() -> str:
    """Which opencdp is measured: the repository's commit, or the directory it is imported from
    when that is not this repository (e.g. via PYTHONPATH)."""
    package = Path(opencdp.__file__).resolve().parent
    repo_src = Path(__file__).resolve().parents[2] / "src" / "opencdp"
    if package != repo_src:
        return f"opencdp from {package}"
    return f"opencdp at {git_revision()}"


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
    """CPU seconds used so far by the server processes, PostgreSQL's, this client and the machine."""

    server: float
    postgres: float
    client: float
    machine: float

    @classmethod
    def take(cls, server_pids: int | list[int], postgres_db: str | None) -> CpuSnapshot | None:
        """`server_pids`: every opencdp process under test (`serve` and any `worker`), summed."""
        pids = [server_pids] if isinstance(server_pids, int) else server_pids
        machine = machine_cpu_busy()
        stats = [proc_stat(pid) for pid in pids]
        if machine is None or any(s is None for s in stats):
            return None
        postgres = 0.0
        if postgres_db:
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit() and _serves_database(entry.name, postgres_db):
                    postgres += (proc_stat(entry.name) or ("", 0.0))[1]
        times = os.times()
        server = sum(s[1] for s in stats if s is not None)
        return cls(server, postgres, times.user + times.system, machine[0])


@dataclass
class CpuUse:
    """Average cores busy over a window; `other` is everything else on the machine."""

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
