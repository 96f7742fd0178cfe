"""Activation: how fast the outbox reaches a local webhook receiver, and how late.

Per engine, on a fresh database:

1. **deliveries/s**: `--events` events forwarded by a rule are processed (not timed), then one
   delivery worker (`DeliveryWorker`, what `serve` and `opencdp worker` run) sends them all to the
   receiver (`benchmarks/receiver.py`, its own process): one request per delivery, then again with
   the destination batching 100 per request. Every key must arrive.
2. **event → destination latency**: a real `opencdp serve` at its defaults (processor and
   delivery worker in its child process) gets `--rate` events/s for `--seconds` s through the
   Segment HTTP API; the latency of each event is from the moment its request was acknowledged
   to the moment the receiver got it.
3. **audience sync**: `--audience` profiles in a segment; time from creating the sync (the
   backfill) until the receiver has every member (batches of 500).

    .venv/bin/python benchmarks/deliveries.py --engine sqlite --markdown
    .venv/bin/python benchmarks/deliveries.py --engine both --events 20000 --audience 100000
"""

from __future__ import annotations

import argparse
import http.client
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from harness.load import basic_auth
from harness.machine import background_load, cpu_model, measured_code
from harness.report import latency_cell, markdown_table, rich_table, wide_console
from harness.scratch import (
    Scratch,
    create_source,
    default_postgres_url,
    free_port,
    running_server,
    scratch_database,
)
from opencdp.activation.audiences import create_sync
from opencdp.activation.destinations import DestinationSpec, create
from opencdp.activation.forwarding import create_rule
from opencdp.activation.worker import DeliveryWorker
from opencdp.collect.messages import Envelope, Limits, normalise
from opencdp.identity.graph import profile_id_for
from opencdp.identity.identifiers import Identifier, IdentityRules
from opencdp.journeys import store as journeys
from opencdp.log.append import LogAppender
from opencdp.process.processor import Processor
from opencdp.segments.store import save as save_segment
from opencdp.store.database import open_database

#: connections the latency run sends on
SENDERS = 4


class ReceiverProcess:
    def __init__(self) -> None:
        self.port = free_port()
        script = Path(__file__).with_name("receiver.py")
        self.process = subprocess.Popen([sys.executable, str(script), str(self.port)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                self.stats()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the receiver did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def stats(self) -> list[tuple[str, str | None, float]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/stats")
            return [tuple(x) for x in orjson.loads(conn.getresponse().read())]  # type: ignore[misc]
        finally:
            conn.close()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def log_events(engine: Any, count: int, users: int, prefix: str) -> None:
    """Write `count` track events straight into the log, as the collector would."""
    with engine.begin() as conn:
        from opencdp.store.schema import sources

        sid = conn.execute(sources.select().where(sources.c.name == "bench")).first()
        if sid is None:
            sid_value = conn.execute(
                sources.insert().values(
                    name="bench", write_key_hash="b" * 64, enabled=True, created_at=datetime.now(UTC)
                )
            ).inserted_primary_key[0]
        else:
            sid_value = sid.id
    appender = LogAppender.for_engine(engine, IdentityRules())
    envelope = Envelope(datetime.now(UTC))
    for start in range(0, count, 2000):
        rows = [
            normalise(
                {
                    "type": "identify" if prefix == "member" else "track",
                    "event": "Order Completed",
                    "userId": f"{prefix}-{i % users}",
                    "messageId": f"{prefix}-{i}",
                    "traits": {"email": f"{prefix}-{i % users}@example.com"},
                    "properties": {"total": i % 300},
                },
                envelope,
                sid_value,
                Limits(),
            )
            for i in range(start, min(count, start + 2000))
        ]
        appender.append_committed(engine, rows)


def throughput(db: Scratch, receiver: ReceiverProcess, events: int, batch: int) -> tuple[float, int]:
    settings = db.settings()
    engine = open_database(settings)
    with engine.begin() as conn:
        dest = create(
            conn,
            settings,
            DestinationSpec(
                f"hook-{batch}",
                "webhook",
                {"url": receiver.url, "batch_size": batch, "concurrency": 16},
                secret="k",
            ),
        )
        create_rule(conn, f"all-{batch}", dest, {})
    log_events(engine, events, 1000, f"b{batch}")
    Processor(engine, chunk_size=1000).run_until_caught_up()
    receiver.stats()
    began = time.perf_counter()
    DeliveryWorker(engine, settings).run_until_idle()
    seconds = time.perf_counter() - began
    arrived = {key for key, _, _ in receiver.stats()}
    engine.dispose()
    return events / seconds, len(arrived)


def latency(
    db: Scratch, receiver: ReceiverProcess, rate: int, seconds: float
) -> tuple[list[float], list[float], int, int, float]:
    """Half the events are forwarded, the other half enter a journey whose first step sends: the
    latencies of both, from acknowledgement to arrival."""
    settings = db.settings()
    engine = open_database(settings)
    with engine.begin() as conn:
        dest = create(
            conn, settings, DestinationSpec("live", "webhook", {"url": receiver.url, "concurrency": 16})
        )
        create_rule(conn, "live", dest, {"events": ["Live"]})
        journey = journeys.save(
            conn,
            "live journey",
            {
                "entry": {"event": "Journey Start"},
                "reentry": "always",
                "steps": [{"id": "send", "send": {"destination": "live", "content": {"hello": True}}}],
            },
        )
        journeys.set_status(conn, journey["id"], "active")
    engine.dispose()
    key = create_source(db.env, "live")
    acked: dict[str, float] = {}
    with running_server(db) as server:
        receiver.stats()
        headers = {"Authorization": basic_auth(key), "Content-Type": "application/json"}
        began = time.monotonic()

        def send(lane: int) -> None:
            """One of SENDERS connections, each sending every SENDERS-th event on the schedule
            (one connection alone could not keep the rate while a request waits for its commit)."""
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            n = lane
            while (due := began + n / rate) - began < seconds:
                if (pause := due - time.monotonic()) > 0:
                    time.sleep(pause)
                if n % 2:
                    mid = f"live-{n}"
                    event = {"type": "track", "event": "Live", "userId": f"u{n % 500}", "messageId": mid}
                else:  # a new person each time, found again by their profile id
                    mid = profile_id_for(Identifier("user_id", f"journey-{n}"))
                    event = {"type": "track", "event": "Journey Start", "userId": f"journey-{n}"}
                conn.request("POST", "/v1/track", orjson.dumps(event), headers)
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    acked[mid] = time.time()
                n += SENDERS
            conn.close()

        lanes = [threading.Thread(target=send, args=(lane,)) for lane in range(SENDERS)]
        for lane in lanes:
            lane.start()
        for lane in lanes:
            lane.join()
        offered = len(acked) / (time.monotonic() - began)
        arrivals: dict[str, float] = {}
        deadline = time.monotonic() + 60
        while len(arrivals) < len(acked) and time.monotonic() < deadline:
            for _, mid, at in receiver.stats():
                if mid is not None:
                    arrivals.setdefault(mid, at)
            time.sleep(0.2)
    forwarded = [arrivals[m] - acked[m] for m in acked if m in arrivals and m.startswith("live-")]
    journeyed = [arrivals[m] - acked[m] for m in acked if m in arrivals and not m.startswith("live-")]
    return forwarded, journeyed, len(acked), len(arrivals), offered


def audience(db: Scratch, receiver: ReceiverProcess, members: int) -> tuple[float, int]:
    settings = db.settings()
    engine = open_database(settings)
    log_events(engine, members, members, "member")
    Processor(engine, chunk_size=1000).run_until_caught_up()
    save_segment(engine, "everyone with email", {"trait": "email", "op": "exists"})
    with engine.begin() as conn:
        dest = create(
            conn,
            settings,
            DestinationSpec(
                "audience",
                "webhook",
                {
                    "url": receiver.url,
                    "batch_size": 500,
                    "concurrency": 4,
                    "body": {
                        "idempotency_key": "{{ idempotency_key }}",
                        "op": "{{ action }}",
                        "email": "{{ profile.traits.email | hash_email }}",
                    },
                },
            ),
        )
    receiver.stats()
    began = time.perf_counter()
    with engine.begin() as conn:
        create_sync(conn, "everyone with email", dest)
    worker = DeliveryWorker(engine, settings)
    worker.run_until_idle()
    seconds = time.perf_counter() - began
    arrived = {key for key, _, _ in receiver.stats()}
    engine.dispose()
    return seconds, len(arrived)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--postgres-url", default=default_postgres_url())
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=200, help="events/s for the latency run")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--audience", type=int, default=100_000)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    busy = background_load()
    engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    rows: list[list[str]] = []
    receiver = ReceiverProcess()
    try:
        for engine in engines:
            for batch in (1, 100):
                with scratch_database(engine, args.postgres_url) as db:
                    per_second, arrived = throughput(db, receiver, args.events, batch)
                    rows.append(
                        [
                            engine,
                            f"forwarding, {'1 per request' if batch == 1 else f'{batch} per request'}",
                            f"{per_second:,.0f} deliveries/s",
                            f"{arrived:,} / {args.events:,}",
                        ]
                    )
            with scratch_database(engine, args.postgres_url) as db:
                forwarded, journeyed, acked, arrived, offered = latency(db, receiver, args.rate, args.seconds)
                what = f"event → destination via serve ({offered:,.0f} events/s acknowledged)"
                rows.append(
                    [engine, f"{what}, forwarding", latency_cell(forwarded, 95), f"{arrived:,} / {acked:,}"]
                )
                rows.append([engine, f"{what}, journey send step", latency_cell(journeyed, 95), ""])
            if args.audience:
                with scratch_database(engine, args.postgres_url) as db:
                    seconds, arrived = audience(db, receiver, args.audience)
                    rows.append(
                        [
                            engine,
                            f"audience sync of {args.audience:,} members",
                            f"{seconds:.1f} s ({args.audience / seconds:,.0f}/s)",
                            f"{arrived:,} / {args.audience:,}",
                        ]
                    )
    finally:
        receiver.stop()
    columns = ["engine", "what", "result", "arrived"]
    console = wide_console()
    console.print(rich_table(f"Deliveries — {cpu_model()}, {measured_code()}", columns, rows, left=2))
    if busy is not None and busy > 0.1:
        console.print(f"[yellow]warning: the machine was {busy:.0%} busy before the run[/]")
    if args.markdown:
        print(markdown_table(columns, rows, left=2))


if __name__ == "__main__":
    main()
