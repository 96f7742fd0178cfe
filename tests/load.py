"""A bounded load for tests that run real processes: senders that post batches of mixed sizes to
one or more servers, and an importer that runs `opencdp import` in a loop. Every acknowledged
messageId is recorded so a test can check that each one was stored and processed exactly once."""

from __future__ import annotations

import base64
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

BATCH_SIZES = (1, 3, 20, 100, 250)


def basic_auth(write_key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


def shop_message(rng: random.Random, users: int) -> dict[str, Any]:
    """A web/app call of one of `users` customers, with anonymous devices that later log in."""
    n = rng.randrange(users)
    device = f"anon-{n}-{rng.randrange(3)}"
    kind = rng.random()
    message: dict[str, Any] = {"messageId": str(uuid.uuid4())}
    if kind < 0.4:
        message.update(type="page", anonymousId=device, name="Product", properties={"sku": rng.randrange(50)})
    elif kind < 0.6:
        message.update(
            type="identify",
            userId=f"user-{n}",
            anonymousId=device,
            traits={"email": f"u{n}@example.com", "plan": rng.choice(["free", "gold"])},
        )
    else:
        message.update(
            type="track",
            userId=f"user-{n}",
            event=rng.choice(["Product Viewed", "Order Completed"]),
            properties={"revenue": rng.randrange(1, 200)},
        )
    return message


class Senders:
    """Threads that post batches to the given servers until stopped, at most `rate` events/s each."""

    def __init__(
        self,
        urls: list[str],
        write_key: str,
        make: Callable[[random.Random], dict[str, Any]],
        threads_per_server: int = 2,
        rate: float = 400.0,
        seed: int = 1,
    ) -> None:
        self.acknowledged: set[str] = set()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(url, write_key, make, rate, seed * 100 + i), daemon=True)
            for i, url in enumerate(u for u in urls for _ in range(threads_per_server))
        ]

    def start(self) -> Senders:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(
        self,
        url: str,
        write_key: str,
        make: Callable[[random.Random], dict[str, Any]],
        rate: float,
        seed: int,
    ) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, headers=basic_auth(write_key), timeout=30) as http:
            while not self._stop.is_set():
                batch = [make(rng) for _ in range(rng.choice(BATCH_SIZES))]
                started = time.monotonic()
                try:
                    response = http.post("/v1/batch", json={"batch": batch})
                except httpx.HTTPError as exc:
                    self.failures.append(f"{url}: {exc!r}")
                    continue
                if response.status_code == 200:
                    with self._lock:
                        self.acknowledged.update(m["messageId"] for m in batch)
                else:
                    self.failures.append(f"{url}: {response.status_code} {response.text[:200]}")
                pause = len(batch) / rate - (time.monotonic() - started)
                if pause > 0:
                    self._stop.wait(pause)


class Importer(threading.Thread):
    """Runs `opencdp import` on fresh contact files in a loop until stopped."""

    def __init__(
        self, env: dict[str, str], folder: Path, rows: Callable[[int], list[str]], source: str = "crm"
    ) -> None:
        super().__init__(daemon=True)
        self.env, self.folder, self.rows, self.source = env, folder, rows, source
        self.runs = 0
        self.errors: list[str] = []
        self._stop_event = threading.Event()
        self.mapping = folder / "contacts.toml"
        self.mapping.write_text(
            'kind = "contacts"\nkey = "crm_id"\n[columns]\ncrm_id = { identifier = "crm_id" }\n'
            'email = { identifier = "email" }\nfirst_name = "string"\n'
        )

    def run(self) -> None:
        while not self._stop_event.is_set():
            data = self.folder / f"contacts-{self.runs}.csv"
            data.write_text(
                "crm_id,email,first_name\n" + "".join(line + "\n" for line in self.rows(self.runs))
            )
            command = ["import", str(data), "--source", self.source, "--mapping", str(self.mapping)]
            done = subprocess.run(
                [sys.executable, "-m", "opencdp", *command, "--no-progress"],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if done.returncode != 0:
                self.errors.append(done.stderr[-2000:])
            self.runs += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join(300)


def wait_until_processed(engine: Any, seconds: float = 120.0) -> None:
    """Until the processor's checkpoint has reached the newest event and no profile waits for its
    computed traits and memberships (PostgreSQL refreshes them in a second, parallel step)."""
    import sqlalchemy as sa

    from opencdp.process.derived import queued
    from opencdp.process.processor import PROCESSOR
    from opencdp.store.schema import events, processor_state

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            newest = conn.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0))).scalar_one()
            done = conn.execute(
                sa.select(processor_state.c.last_event_id).where(processor_state.c.name == PROCESSOR)
            ).scalar()
            waiting = queued(conn)
        if done is not None and done >= newest and not waiting:
            return
        time.sleep(0.2)
    raise AssertionError(f"processing did not catch up within {seconds:.0f} s")
