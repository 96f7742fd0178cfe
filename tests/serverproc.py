"""Start and stop a real `opencdp serve` process for tests that need a socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def worker_slice(first: int, last: int) -> range:
    """This pytest-xdist worker's share of the ports first..last (all of them without xdist), so
    that parallel workers never pick the same port from one OPENCDP_TEST_PORTS range."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    if not worker.startswith("gw") or count < 2:
        return range(first, last + 1)
    size = (last - first + 1) // count
    if size < 1:
        raise RuntimeError(f"OPENCDP_TEST_PORTS={first}-{last} is too small for {count} xdist workers")
    start = first + int(worker[2:]) % count * size
    return range(start, start + size)


def free_port() -> int:
    """A free loopback port; from OPENCDP_TEST_PORTS ("18300-18399") when set (shared machines),
    split between pytest-xdist workers."""
    first, _, last = os.environ.get("OPENCDP_TEST_PORTS", "0").partition("-")
    ports = range(0, 1) if first == "0" else worker_slice(int(first), int(last or first))
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError(f"no free port in OPENCDP_TEST_PORTS={os.environ['OPENCDP_TEST_PORTS']}")


def opencdp(*args: str, env: dict[str, str]) -> str:
    """Run the CLI as a user would; return stdout, fail loudly with stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "opencdp", *args], env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise AssertionError(f"opencdp {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


class PortTaken(Exception):
    """The server could not bind its port: someone took it after free_port() found it free."""


class Server:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Server:
        """Start and wait for /api/health. A port taken between free_port() and the server's bind
        (another process on the machine, another xdist worker) is retried on a new port."""
        for attempt in range(3):
            try:
                return self._start(timeout)
            except PortTaken:
                if attempt == 2:
                    raise
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> Server:
        log = self.log_path.open("ab")
        offset = log.tell()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opencdp", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()  # the child has its own copy
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                with self.log_path.open("rb") as written:
                    written.seek(offset)
                    output = written.read().decode(errors="replace")
                if "address already in use" in output.lower():
                    raise PortTaken(output)
                raise AssertionError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "/api/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server did not answer in {timeout}s:\n{self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing, as in a crash."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
