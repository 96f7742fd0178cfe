"""Load over keep-alive HTTP/1.1: batches sent at a fixed rate or flat out from N connections,
and probes that measure how long an acknowledged event takes to become visible in a profile.

Everything is bounded: by time, by the pre-generated batches, by a timeout per request and per
probe. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import base64
import http.client
import queue
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.scratch import HOST

REQUEST_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 15.0


def basic_auth(write_key: str) -> str:
    """The Authorization header of a Segment client: the write key as Basic user name."""
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


class Client:
    """One HTTP/1.1 keep-alive connection to the server."""

    def __init__(self, port: int, authorization: str = "", timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
        self.authorization = authorization

    def request(
        self, method: str, path: str, body: bytes | None = None, authorization: str | None = None
    ) -> tuple[int, bytes]:
        headers = {"Authorization": authorization or self.authorization}
        if body is not None:
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()


class RawConnection:
    """A keep-alive HTTP/1.1 connection that sends prepared requests and reads answers with a
    Content-Length: a load generator on the measured machine should take as little of it as it
    can, and `http.client` parses every answer's headers through the `email` package (about a fifth
    of a core at 1,000 requests/s)."""

    def __init__(self, port: int, timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = b""

    @staticmethod
    def prepare(method: str, path: str, body: bytes, headers: dict[str, str], host: str = HOST) -> bytes:
        """One request's bytes, ready to send (`host`: the Host header, "127.0.0.1:PORT" as a
        browser sends it when the server's own URL matters)."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def request(self, prepared: bytes) -> tuple[int, bytes]:
        """Send a prepared request; the answer's status and body."""
        status, _, body = self.exchange(prepared)
        return status, body

    def exchange(self, prepared: bytes) -> tuple[int, bytes, bytes]:
        """Send a prepared request; the answer's status, its header block (the raw bytes after
        the status line, for `header_values`) and its body."""
        self.sock.sendall(prepared)
        data = self.pending
        while (end := data.find(b"\r\n\r\n")) < 0:
            data += self._recv()
        head = data[:end].lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            raise http.client.HTTPException("an answer without Content-Length")
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop >= 0 else len(head)])
        need = end + 4 + length
        while len(data) < need:
            data += self._recv()
        self.pending = data[need:]
        return int(data[9:12]), data[:end], data[end + 4 : need]

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self.sock.close()


def header_values(head: bytes, name: str) -> list[str]:
    """The values of one header (case-insensitive) in a header block from `RawConnection.exchange`."""
    wanted = name.lower().encode() + b":"
    return [
        line[len(wanted) :].strip().decode("latin-1")
        for line in head.split(b"\r\n")[1:]
        if line[: len(wanted)].lower() == wanted
    ]


def lookup_path(kind: str, value: str) -> str:
    return "/api/profiles/lookup?" + urllib.parse.urlencode({"type": kind, "value": value})


@dataclass
class Batch:
    """One pre-serialised `POST /v1/batch` body."""

    body: bytes
    events: int
    authorization: str
    probe_user_id: str | None = None  # an identify in it with a userId no earlier batch carried


@dataclass
class Load:
    """Sends `batches` in order from `connections` keep-alive connections for `seconds`.

    With `rate` (events/s), batch i is due when the events before it have been sent at that rate,
    so one slow response does not hold back the schedule; without, every connection sends its next
    batch as soon as the previous one is answered (flat out). Only 200s count; any other answer or
    a connection error stops the load and is kept in `errors`. `on_ack(batch, acked_at)` runs in
    the sending thread after each 200. With `rate` and `from_due`, a latency counts from when the
    batch was due rather than from when it was sent (open loop: a sender held up by a slow answer
    does not hide the wait of the batches behind it).
    """

    port: int
    batches: list[Batch]
    seconds: float
    connections: int = 8
    rate: float | None = None
    on_ack: Callable[[Batch, float], None] | None = None
    path: str = "/v1/batch"
    from_due: bool = False

    start: float = 0.0
    end: float = 0.0
    completions: list[tuple[float, float]] = field(default_factory=list)  # (finished_at, latency_s)
    acked_events: int = 0
    last_ack: float = 0.0
    max_late: float = 0.0  # with a rate: how far behind its schedule a batch was sent
    errors: list[str] = field(default_factory=list)
    exhausted: bool = False  # the batches ran out before the time was up
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0
        self._offsets: list[float] = []
        if self.rate:
            total = 0
            for batch in self.batches:
                self._offsets.append(total / self.rate)
                total += batch.events
        self._threads: list[threading.Thread] = []

    def begin(self, delay: float = 0.05) -> Load:
        """Start the sender threads; the clock starts `delay` from now."""
        self._threads = [
            threading.Thread(target=self._worker, name=f"sender-{n}", daemon=True)
            for n in range(self.connections)
        ]
        self.start = time.perf_counter() + delay
        self.end = self.start + self.seconds
        for thread in self._threads:
            thread.start()
        return self

    def join(self) -> None:
        """Wait for the senders (each finishes its request in flight, bounded by the timeout)."""
        for thread in self._threads:
            thread.join(max(0.0, self.end - time.perf_counter()) + REQUEST_TIMEOUT_S + 10)
        if any(thread.is_alive() for thread in self._threads):
            self.stop.set()
            self.errors.append("sender threads did not finish within the request timeout")

    def run(self) -> Load:
        self.begin()
        self.join()
        return self

    def sleep_until(self, moment: float) -> None:
        """Sleep until `moment` (perf_counter), or until the load stops early."""
        self.stop.wait(max(0.0, moment - time.perf_counter()))

    def _take(self) -> int | None:
        with self._lock:
            n = self._next
            if self.stop.is_set():
                return None
            if n >= len(self.batches):
                self.exhausted = True
                return None
            if (self._offsets[n] if self.rate else time.perf_counter() - self.start) >= self.seconds:
                return None
            self._next += 1
            return n

    def _fail(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)
        self.stop.set()

    def _worker(self) -> None:
        client = Client(self.port)
        try:
            time.sleep(max(0.0, self.start - time.perf_counter()))
            while (n := self._take()) is not None:
                batch = self.batches[n]
                due = self.start + self._offsets[n] if self.rate else time.perf_counter()
                time.sleep(max(0.0, due - time.perf_counter()))
                began = time.perf_counter()
                try:
                    status, reply = client.request("POST", self.path, batch.body, batch.authorization)
                except (OSError, http.client.HTTPException) as exc:
                    self._fail(f"POST {self.path}: {type(exc).__name__}: {exc}")
                    return
                acked = time.perf_counter()
                if status != 200:
                    self._fail(f"POST {self.path} answered {status}: {reply[:300].decode(errors='replace')}")
                    return
                if self.on_ack is not None:
                    self.on_ack(batch, acked)
                with self._lock:
                    self.completions.append((acked, acked - (due if self.from_due else began)))
                    self.acked_events += batch.events
                    self.last_ack = max(self.last_ack, acked)
                    self.max_late = max(self.max_late, began - due)
        finally:
            client.close()

    def latencies(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        """Sorted request latencies of the requests answered within [since, until]."""
        return sorted(latency for finished, latency in self.completions if since <= finished <= until)

    def latencies_due(self, since: float, until: float) -> list[float]:
        """With `rate` and `from_due`: sorted latencies of the batches due within [since, until),
        however late they were answered (an overloaded server cannot shrink its sample)."""
        if not (self.rate and self.from_due):
            raise ValueError("latencies_due needs a Load with a rate and from_due")
        return sorted(
            latency for finished, latency in self.completions if since <= finished - latency < until
        )


# --------------------------------------------------------------------------------------------
# Accepted -> visible


@dataclass
class Probe:
    user_id: str
    acked_at: float
    visible_after: float | None = None  # seconds; None: not visible within the probe timeout
    polls: int = 0


class Prober(threading.Thread):
    """Polls `GET /api/profiles/lookup?type=user_id&value=…` for one sampled userId at a time on
    its own keep-alive connection, from the moment its batch was acknowledged until it answers 200.

    One probe at a time, so no probe waits in a queue, and a random pause of up to `max_gap_s`
    between probes, so the samples are not in phase with the processor's cycle.
    """

    def __init__(
        self,
        port: int,
        admin_key: str,
        poll_s: float,
        max_gap_s: float,
        seed: int,
        timeout_s: float = PROBE_TIMEOUT_S,
    ) -> None:
        super().__init__(name="prober", daemon=True)
        self.client = Client(port, f"Bearer {admin_key}")
        self.poll_s = poll_s
        self.max_gap_s = max_gap_s
        self.timeout_s = timeout_s
        self.rng = random.Random(seed)
        self._lock = threading.Lock()
        self._busy = False
        self.inbox: queue.Queue[Probe | None] = queue.Queue()
        self.done: list[Probe] = []
        self.errors: list[str] = []

    def offer(self, probe: Probe) -> bool:
        """Take a probe if idle (a queued probe would add its wait to its latency)."""
        with self._lock:
            if self._busy:
                return False
            self._busy = True
        self.inbox.put(probe)
        return True

    def on_ack(self, batch: Batch, acked_at: float) -> None:
        """For `Load.on_ack`: offer the batch's probe userId, if it has one."""
        if batch.probe_user_id:
            self.offer(Probe(batch.probe_user_id, acked_at))

    def finish(self, timeout: float | None = None) -> None:
        self.inbox.put(None)
        self.join(self.timeout_s + REQUEST_TIMEOUT_S if timeout is None else timeout)

    def run(self) -> None:
        try:
            while (probe := self.inbox.get()) is not None:
                self._probe(probe)
                # A probe ends right after the processor made its event visible. Taking the next
                # one at once would sample events in phase with the processor's cycle (with a
                # worker that polls every 0.25 s: always just after a pass, the worst moment).
                time.sleep(self.rng.uniform(0, self.max_gap_s))
                with self._lock:
                    self._busy = False
        except (OSError, http.client.HTTPException) as exc:
            self.errors.append(f"prober: {type(exc).__name__}: {exc}")
            with self._lock:
                self._busy = True  # refuse further probes
        finally:
            self.client.close()

    def _probe(self, probe: Probe) -> None:
        path = lookup_path("user_id", probe.user_id)
        deadline = probe.acked_at + self.timeout_s
        next_poll = time.perf_counter()
        while True:
            status, body = self.client.request("GET", path)
            now = time.perf_counter()
            probe.polls += 1
            if status == 200:
                probe.visible_after = now - probe.acked_at
                break
            if status != 404:
                self.errors.append(f"lookup answered {status}: {body[:200]!r}")
                break
            if now >= deadline:
                break
            next_poll += self.poll_s
            time.sleep(max(0.0, next_poll - time.perf_counter()))
        self.done.append(probe)

    def visible(self) -> list[float]:
        """Sorted accepted -> visible seconds of the probes that became visible."""
        return sorted(p.visible_after for p in self.done if p.visible_after is not None)

    def missing(self) -> int:
        return sum(1 for p in self.done if p.visible_after is None)
