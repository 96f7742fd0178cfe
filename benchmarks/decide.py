"""Decide latency: how fast `POST /v1/decide` answers at a fixed arrival rate, and where it breaks.

On a fresh database (SQLite by default): `--profiles` customers, each with 40 traits and a few
orders and product views, go through the log and the processor; 10 segments over those traits;
20 experiences on 4 placements whose audiences mix segments, traits, computed traits, this
session's events and the page's context. Then a real `opencdp serve` at its defaults (processor in
its child process) is sent decisions for random customers, each asking for all 4 placements (so
every experience can be evaluated) with a public decide-only key, at a fixed arrival rate (open
loop: a request late because the server was slow counts its wait) from `--connections` keep-alive
connections, for `--seconds` after 2 s of warm-up. Latency is the client's round trip from the
moment the request was due. Every answer must be 200 with a decision per placement; the logged
`Experience Viewed` events are counted afterwards.

    .venv/bin/python benchmarks/decide.py --markdown                       # 250 … 4,000 /s, SQLite
    .venv/bin/python benchmarks/decide.py --rates 1000 --seconds 30
    .venv/bin/python benchmarks/decide.py --in-process                     # the engine alone
"""

from __future__ import annotations

import argparse
import http.client
import random
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from harness.load import RawConnection
from harness.machine import CpuSnapshot, CpuUse, background_load, cpu_model, measured_code
from harness.report import markdown_table, percentile, rich_table, wide_console
from harness.scratch import Scratch, cli, default_postgres_url, running_server, scratch_database
from opencdp.collect.messages import Envelope, Limits, normalise
from opencdp.config import Settings
from opencdp.identity.identifiers import IdentityRules
from opencdp.log.append import LogAppender
from opencdp.personalise.decide import Decider, parse_decide_request
from opencdp.personalise.experiences import parse_experience
from opencdp.privacy.consent_events import system_source_id
from opencdp.privacy.suppression import Suppressor
from opencdp.process.processor import Processor
from opencdp.segments import store as segment_store
from opencdp.store.database import open_database
from opencdp.store.schema import events, experiences

PLACEMENTS = ["home-hero", "product-banner", "checkout-help", "footer-offer"]
CATEGORIES = ["shoes", "bags", "coats", "hats", "toys"]
COUNTRIES = ["DE", "FR", "GB", "US", "JP"]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _customer_messages(n: int, rng: random.Random, now: datetime) -> list[dict[str, Any]]:
    uid = f"c{n}"
    traits: dict[str, Any] = {f"t{k:02d}": rng.randint(0, 99) for k in range(30)}
    traits.update({f"s{k}": rng.choice(["a", "b", "c"]) for k in range(8)})
    traits.update(country=rng.choice(COUNTRIES), plan=rng.choice(["gold", "silver", "bronze"]))
    out: list[dict[str, Any]] = [
        {
            "type": "identify",
            "userId": uid,
            "anonymousId": f"anon-{n}",
            "traits": traits,
            "timestamp": _iso(now - timedelta(days=rng.randint(30, 300))),
        }
    ]
    for _ in range(rng.randint(0, 3)):
        out.append(
            {
                "type": "track",
                "userId": uid,
                "event": "Order Completed",
                "properties": {"total": rng.randint(10, 300), "category": rng.choice(CATEGORIES)},
                "timestamp": _iso(now - timedelta(days=rng.randint(1, 200))),
            }
        )
    # a live session for half of them: product views in the last minutes
    if rng.random() < 0.5:
        for m in range(rng.randint(1, 5)):
            out.append(
                {
                    "type": "track",
                    "anonymousId": f"anon-{n}",
                    "userId": uid,
                    "event": "Product Viewed",
                    "properties": {"category": rng.choice(CATEGORIES)},
                    "context": {"campaign": {"source": rng.choice(["newsletter", "ads", "social"])}},
                    "timestamp": _iso(now - timedelta(minutes=10 - m)),
                }
            )
    for k, message in enumerate(out):
        message["messageId"] = f"{uid}-{k}"
    return out


SEGMENTS = {
    **{f"t{k:02d} high": {"trait": f"t{k:02d}", "op": "gte", "value": 70} for k in range(6)},
    "gold": {"trait": "plan", "op": "eq", "value": "gold"},
    "germany": {"trait": "country", "op": "eq", "value": "DE"},
    "big spenders": {"computed": "total_revenue", "op": "gte", "value": 300},
    "repeat buyers": {"event": "Order Completed", "count": {"op": "gte", "value": 2}},
}


def _experiences() -> list[dict[str, Any]]:
    docs = []
    for e in range(20):
        placement = PLACEMENTS[e % 4]
        category = CATEGORIES[e % 5]
        variants = [
            {
                "name": f"{category} lovers",
                "audience": {
                    "and": [
                        {"segment": list(SEGMENTS)[e % 10]},
                        {
                            "session_event": "Product Viewed",
                            "where": [{"property": "category", "op": "eq", "value": category}],
                            "count": {"op": "gte", "value": 2},
                        },
                    ]
                },
                "content": {"html": f"<h2>{category} for you</h2>"},
            },
            {
                "name": "big cart",
                "audience": {
                    "or": [
                        {"context": "cart.value", "op": "gt", "value": 100 + 10 * e},
                        {"trait": f"t{e:02d}", "op": "lt", "value": 20},
                    ]
                },
                "content": {"html": "<p>Free shipping</p>"},
            },
            {
                "name": "holiday",
                "audience": {
                    "and": [{"context": "holiday", "op": "eq", "value": True}, {"not": {"segment": "gold"}}]
                },
                "content": {"html": "<p>Happy holidays</p>"},
            },
        ]
        docs.append(
            {
                "name": f"experience {e:02d}",
                "placement": placement,
                "priority": 20 - e,
                "audience": {"context": "country", "op": "eq", "value": COUNTRIES[e % 5]}
                if e % 3 == 0
                else None,
                "variants": variants,
                "holdout_percent": 10,
                "fallback": {"html": "<p>Welcome</p>"} if e % 4 == 0 else None,
            }
        )
    return [{k: v for k, v in d.items() if v is not None} for d in docs]


def prepare(db: Scratch, profiles: int, seed: int) -> None:
    """Customers through the log and the processor, segments and experiences (not timed)."""
    engine = open_database(db.settings())
    rng = random.Random(seed)
    now = datetime.now(UTC)
    appender = LogAppender(engine.dialect.name, Suppressor(engine, IdentityRules()))
    with engine.begin() as conn:
        source_id = system_source_id(conn, "bench-decide")
    limits = Limits()
    batch: list[dict[str, Any]] = []
    for n in range(profiles):
        batch += [normalise(m, Envelope(now), source_id, limits) for m in _customer_messages(n, rng, now)]
        if len(batch) >= 5000 or n == profiles - 1:
            appender.append_committed(engine, batch)
            batch = []
    for name, criteria in SEGMENTS.items():
        segment_store.save(engine, name, criteria)
    Processor(engine, IdentityRules(), chunk_size=1000).run_until_caught_up()
    with engine.begin() as conn:
        for document in _experiences():
            definition = parse_experience(document)
            conn.execute(
                experiences.insert().values(
                    name=definition.name,
                    placement=definition.placement,
                    definition=document,
                    enabled=True,
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
    engine.dispose()


def _bodies(profiles: int, count: int, seed: int, views_per_visit: int = 1) -> list[bytes]:
    """`count` requests: visits of random customers, each `views_per_visit` page views (each asking
    for all placements) spread over the run, on varying pages and carts."""
    rng = random.Random(seed)
    visitors = [rng.randrange(profiles) for _ in range(-(-count // views_per_visit))]
    order = [n for n in visitors for _ in range(views_per_visit)][:count]
    rng.shuffle(order)
    out = []
    for n in order:
        out.append(
            orjson.dumps(
                {
                    "userId": f"c{n}",
                    "anonymousId": f"anon-{n}",
                    "placements": PLACEMENTS,
                    "context": {
                        "page": {
                            "url": f"https://shop.example/{rng.choice(CATEGORIES)}?utm_source=newsletter"
                        },
                        "locale": f"en-{rng.choice(COUNTRIES)}",
                        "timezone": "Europe/Berlin",
                        "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
                        "cart": {"value": rng.randint(0, 400), "currency": "EUR"},
                    },
                }
            )
        )
    return out


def open_loop(
    port: int, key: str, bodies: list[bytes], rate: float, seconds: float, connections: int
) -> dict[str, Any]:
    """Send `rate` requests/s for `seconds` (after 2 s of warm-up) from `connections` threads, each
    request due at its slot; latencies from due time to the end of the answer."""
    warmup = 2.0
    total = int(rate * (warmup + seconds))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    prepared = [RawConnection.prepare("POST", "/v1/decide", body, headers) for body in bodies]
    start = time.perf_counter() + 0.2
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(offset: int) -> None:
        conn = RawConnection(port)
        mine: list[float] = []
        for i in range(offset, total, connections):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                status, payload = conn.request(prepared[i % len(prepared)])
            except (OSError, http.client.HTTPException, ValueError) as exc:
                with lock:
                    errors.append(type(exc).__name__)
                conn.close()
                conn = RawConnection(port)
                continue
            done = time.perf_counter()
            if status != 200 or len(orjson.loads(payload)["decisions"]) != len(PLACEMENTS):
                with lock:
                    errors.append(f"{status}: {payload[:200]!r}")
                continue
            if due - start >= warmup:
                mine.append(done - due)
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    return {"latencies": latencies, "errors": errors}


def _wait_processed(url: str, timeout: float = 300.0) -> None:
    """Until the processor's checkpoint is the newest event (no backlog competes with the next run)."""
    engine = sa.create_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                newest = conn.execute(sa.select(sa.func.max(events.c.id))).scalar() or 0
                done = conn.execute(
                    sa.text("select last_event_id from processor_state where name = 'profiles'")
                ).scalar()
            if done is not None and done >= newest:
                return
            time.sleep(0.5)
    finally:
        engine.dispose()


def run_server(engine_name: str, args: argparse.Namespace) -> list[list[str]]:
    rows: list[list[str]] = []
    with scratch_database(engine_name, args.postgres_url, prefix="opencdp-decide-") as db:
        began = time.perf_counter()
        prepare(db, args.profiles, args.seed)
        print(
            f"{engine_name}: {args.profiles:,} customers prepared in {time.perf_counter() - began:.0f} s",
            flush=True,
        )
        key = cli(db.env, "keys", "create", "--role", "decide", "--name", "bench").strip().splitlines()[0]
        with running_server(db) as server:
            _wait_processed(db.url)
            for rate in args.rates:
                # new visitors for each rate: no exposure is remembered from the previous one
                count = int(rate * (args.seconds + 2)) + 100
                bodies = _bodies(args.profiles, count, args.seed + rate, args.views_per_visit)
                load = background_load()
                before, clock = CpuSnapshot.take(server.pid, db.postgres_db), time.perf_counter()
                result = open_loop(server.port, key, bodies, rate, args.seconds, args.connections)
                used = CpuUse.between(
                    before, CpuSnapshot.take(server.pid, db.postgres_db), time.perf_counter() - clock
                )
                lat = result["latencies"]
                row = [
                    engine_name,
                    f"{rate:,}",
                    f"{len(lat):,}",
                    f"{len(lat) / args.seconds:,.0f}",
                    f"{1000 * percentile(lat, 50):.2f}" if lat else "",
                    f"{1000 * percentile(lat, 95):.2f}" if lat else "",
                    f"{1000 * percentile(lat, 99):.2f}" if lat else "",
                    f"{1000 * lat[-1]:.1f}" if lat else "",
                    str(len(result["errors"])),
                    str(used or ""),
                    "" if load is None else f"{load:.2f}",
                ]
                rows.append(row)
                print(" | ".join(row), flush=True)
                if result["errors"]:
                    print("first errors:", result["errors"][:3], file=sys.stderr)
                if lat and percentile(lat, 99) > 0.020:
                    print(f"p99 above 20 ms at {rate:,}/s", flush=True)
                if result["errors"] or (lat and percentile(lat, 50) > 1.0):
                    print(f"overloaded at {rate:,}/s: stopping the ramp", flush=True)
                    break
                _wait_processed(db.url)  # the processor has caught up on the logged exposures
        engine = sa.create_engine(db.url)
        with engine.connect() as conn:
            logged = conn.execute(
                sa.select(sa.func.count()).select_from(events).where(events.c.event == "Experience Viewed")
            ).scalar_one()
        engine.dispose()
        print(f"{engine_name}: {logged:,} Experience Viewed events in the log", flush=True)
    return rows


def run_in_process(engine_name: str, args: argparse.Namespace) -> list[list[str]]:
    """The engine alone (no HTTP, no logging), one thread: where the server's time goes."""
    with scratch_database(engine_name, args.postgres_url, prefix="opencdp-decide-") as db:
        prepare(db, args.profiles, args.seed)
        engine = open_database(db.settings(), run_migrations=False)
        decider = Decider(engine, Settings(data_dir=db.workdir, database_url=db.url))
        requests = [
            parse_decide_request(orjson.loads(b)) for b in _bodies(args.profiles, 5000, args.seed + 1)
        ]
        for r in requests[:200]:
            decider.decide(r)
        times = []
        for r in requests:
            t = time.perf_counter()
            decider.decide(r)
            times.append(time.perf_counter() - t)
        times.sort()
        engine.dispose()
        return [
            [
                engine_name,
                "in process, 1 thread",
                f"{len(times):,}",
                f"{len(times) / sum(times):,.0f}",
                f"{1000 * percentile(times, 50):.2f}",
                f"{1000 * percentile(times, 95):.2f}",
                f"{1000 * percentile(times, 99):.2f}",
                f"{1000 * times[-1]:.1f}",
                "0",
                "",
                "",
            ]
        ]


COLUMNS = [
    "engine",
    "rate /s",
    "decisions",
    "answered /s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "max ms",
    "errors",
    "CPU cores: server / postgres / client / other",
    "other load before (cores)",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--rates", type=int, nargs="+", default=[250, 500, 1000, 1500, 2000, 3000, 4000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--views-per-visit",
        type=int,
        default=1,
        help="page views per visit (1: every request a new visitor, all of its exposures logged)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--in-process", action="store_true", help="time the engine alone, without HTTP")
    parser.add_argument("--postgres-url", default=default_postgres_url())
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    if not 100 <= args.profiles <= 1_000_000 or not 1 <= args.connections <= 256:
        parser.error("--profiles in [100, 1000000], --connections in [1, 256]")
    print(f"{cpu_model()}, cores: {__import__('os').cpu_count()}; code {measured_code()}", flush=True)
    rows: list[list[str]] = []
    for engine_name in ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]:
        rows += run_in_process(engine_name, args) if args.in_process else run_server(engine_name, args)
    if args.markdown:
        print(markdown_table(COLUMNS, rows, left=1))
    else:
        wide_console().print(rich_table("Decide latency", COLUMNS, rows))
    return 0 if all(r[8] == "0" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
