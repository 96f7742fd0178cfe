"""Segments and computed traits at scale: preview counts and a full refresh over millions of events.

Per engine (SQLite in a temporary directory or `--keep DIR`; PostgreSQL in a scratch database
`opencdp_bench_segments` that is dropped at the end unless `--keep` is given):

1. A fresh database, migrated with `open_database`, is filled with synthetic data written straight
   into the derived tables that segments and computed traits read: `profiles` (`--profiles`, all
   NOT NULL columns filled like the processor fills them), `profile_events` (`--events`) and one
   `sources` row. The raw event log (`events`) stays empty: nothing here reads it.
   The data is seeded and realistic: 25% anonymous visitors without traits, 1.5% profiles merged
   into another one, known customers with email, first_name, a skewed country (DE 35%, FR 14%,
   NL 10%, GB 10%, AT 8%, US 8%, ...), newsletter, plan; events over the last 365 days before a
   fixed NOW (page views, "Product Viewed", "Product Added", "Order Completed" with category from
   8 skewed categories and revenue, "Email Opened"/"Email Link Clicked" for newsletter
   subscribers), a log-normal number of events per profile (heavy users with thousands), each
   customer active over their own period (some still active, some churned) with a favourite
   category. Events get their `event_id` in time order, as the log would give them.
   Bulk load: the secondary indexes of the two tables are dropped, rows are inserted in large
   batches (SQLite: executemany with journal and sync off during the load; PostgreSQL: COPY), and
   the indexes are re-created from their own stored definitions (so they are exactly the
   migrated ones). Then ANALYZE (PostgreSQL: VACUUM (ANALYZE), what autovacuum would have done).
2. `segments.queries.preview(engine, criteria, sample_size=0, now=NOW)` for four segments: one
   cold run (fresh connection; the OS file cache is not dropped) and `--runs` warm runs.
   Query plans (EXPLAIN QUERY PLAN / EXPLAIN (ANALYZE, BUFFERS)) are printed for every segment
   slower than the target, or for all with `--explain`.
3. The four segments are saved (rows in `segments`) and `process.schedule.refresh_all(engine,
   now=NOW)` is timed: every computed trait of every live profile, then every segment's
   memberships. The saved memberships are checked against the preview counts. If the projected
   refresh time exceeds `--refresh-budget` seconds it is stopped and the measured rate reported.
4. A table per engine.

Usage:
    .venv/bin/python benchmarks/segments.py [--engine sqlite|postgresql|both] [--profiles 1000000]
        [--events 10000000] [--keep DIR] [--runs 5] [--explain] [--no-refresh]
        [--refresh-budget 1200] [--seed 7] [--postgres-url URL]

Only 127.0.0.1 is contacted. Exit status 0 when everything ran (a missed target is reported).
"""

from __future__ import annotations

import argparse
import array
import bisect
import contextlib
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from harness.machine import cpu_model
from harness.report import rich_table
from harness.scratch import default_postgres_url, scratch_database, secondary_indexes
from opencdp.process.processor import PROCESSOR
from opencdp.process.schedule import live_profile_count, refresh_all
from opencdp.segments.compiler import members_query
from opencdp.segments.language import parse_criteria, to_document
from opencdp.segments.memberships import refresh as refresh_memberships
from opencdp.segments.queries import preview
from opencdp.store.database import open_database
from opencdp.store.schema import processor_state, profiles, segment_memberships, segments, sources

SCRATCH_DB = "opencdp_bench_segments"
NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
YEAR_S = 365 * 86400
TARGET_S = 2.0  # behavioural preview count on SQLite
REPORT_COLUMNS = ("measure", "count", "cold", "warm min", "warm median")
BEHAVIOURAL = "behavioural"

COUNTRIES = (
    ("DE", 35),
    ("FR", 14),
    ("NL", 10),
    ("GB", 10),
    ("AT", 8),
    ("US", 8),
    ("CH", 6),
    ("IT", 4),
    ("ES", 3),
    ("PL", 2),
)
CATEGORIES = (
    ("shoes", 22),
    ("apparel", 20),
    ("electronics", 15),
    ("home", 12),
    ("beauty", 10),
    ("sports", 9),
    ("toys", 7),
    ("books", 5),
)
PLANS = (("free", 70), ("plus", 22), ("premium", 8))
_NAMES = (
    "Anna Ben Clara David Emma Felix Greta Hannah Jonas Julia Karl Lea Lukas Marie Max Mia Noah "
    "Paul Sophie Tom Lina Elias Chloe Louis Sanne Daan Emily Oliver Lucia Jan"
)
FIRST_NAMES = tuple(_NAMES.split())
DOMAINS = ("gmail.com", "web.de", "gmx.de", "outlook.com", "yahoo.fr", "example.org")
PAGES = ("Home", "Category", "Product", "Search", "Cart", "Account")
PAGE_WEIGHTS = (25, 25, 30, 10, 6, 4)
CAMPAIGNS = 40

# Event kinds (index into the per-event kind array).
PAGE, VIEWED, ADDED, ORDER, OPENED, CLICKED = range(6)
KIND_NAMES = (
    "page",
    "Product Viewed",
    "Product Added",
    "Order Completed",
    "Email Opened",
    "Email Link Clicked",
)

SEGMENTS: dict[str, dict[str, Any]] = {
    BEHAVIOURAL: {
        "and": [
            {
                "event": "Order Completed",
                "where": [{"property": "category", "op": "eq", "value": "shoes"}],
                "within_days": 30,
                "count": {"op": "gte", "value": 2},
            },
            {"event": "Email Opened", "within_days": 7},
            {"trait": "country", "op": "eq", "value": "DE"},
        ]
    },
    "trait-only": {
        "and": [
            {"trait": "country", "op": "in", "value": ["DE", "AT", "CH"]},
            {"trait": "newsletter", "op": "eq", "value": True},
            {"trait": "plan", "op": "neq", "value": "free"},
        ]
    },
    "lapsed buyers": {"event": "Order Completed", "last_occurred": {"op": "before_days", "value": 90}},
    "nested or/not": {
        "or": [
            {
                "and": [
                    {"event": "Product Viewed", "within_days": 14, "count": {"op": "gte", "value": 3}},
                    {"not": {"event": "Order Completed", "within_days": 90}},
                ]
            },
            {
                "and": [
                    {"trait": "plan", "op": "eq", "value": "premium"},
                    {"not": {"trait": "newsletter", "op": "eq", "value": True}},
                ]
            },
        ]
    },
}
SEGMENT_NOTES = {
    BEHAVIOURAL: "≥2 shoes orders in 30 d AND e-mail opened in 7 d AND country DE",
    "trait-only": "country in DE/AT/CH AND newsletter AND plan ≠ free",
    "lapsed buyers": "last order more than 90 days ago",
    "nested or/not": "(≥3 product views in 14 d AND NOT ordered in 90 d) OR (premium AND NOT newsletter)",
}

console = Console(width=None if sys.stdout.isatty() else 160)


def progress_bar() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@contextlib.contextmanager
def step(label: str) -> Iterator[None]:
    """A spinner while a single long statement runs."""
    with console.status(label):
        start = time.perf_counter()
        yield
    console.print(f"  {label}: {time.perf_counter() - start:.1f} s")


def _cumulative(weights: tuple[int, ...] | list[float]) -> list[float]:
    total, out, acc = float(sum(weights)), [], 0.0
    for w in weights:
        acc += w
        out.append(acc / total)
    out[-1] = 1.0
    return out


# --------------------------------------------------------------------------------------------
# Synthetic data


@dataclass
class Dataset:
    """Per-profile attributes and per-event (profile, time, kind) arrays; rows are built on output."""

    profiles: int
    events: int
    seed: int
    pids: list[str] = field(default_factory=list)
    merged_into: dict[int, int] = field(default_factory=dict)  # profile index -> survivor index
    anonymous: bytearray = field(default_factory=bytearray)
    country: array.array[int] = field(default_factory=lambda: array.array("b"))  # -1: none
    plan: bytearray = field(default_factory=bytearray)
    newsletter: bytearray = field(default_factory=bytearray)
    first_name: bytearray = field(default_factory=bytearray)
    favourite: bytearray = field(default_factory=bytearray)
    first_ts: array.array[int] = field(default_factory=lambda: array.array("q"))
    last_ts: array.array[int] = field(default_factory=lambda: array.array("q"))
    pages: array.array[int] = field(default_factory=lambda: array.array("i"))
    tracks: array.array[int] = field(default_factory=lambda: array.array("i"))
    ev_profile: array.array[int] = field(default_factory=lambda: array.array("i"))
    ev_ts: array.array[int] = field(default_factory=lambda: array.array("q"))
    ev_kind: bytearray = field(default_factory=bytearray)
    order: list[int] = field(default_factory=list)  # event positions in time order
    kind_counts: list[int] = field(default_factory=lambda: [0] * len(KIND_NAMES))
    per_profile: list[int] = field(default_factory=list)


def generate(n_profiles: int, n_events: int, seed: int) -> Dataset:
    """Decide every profile and every event (time and kind); seeded, so reproducible."""
    rng = random.Random(seed)
    data = Dataset(n_profiles, n_events, seed)
    now_s = int(NOW.timestamp())
    country_cum = _cumulative(tuple(w for _, w in COUNTRIES))
    plan_cum = _cumulative(tuple(w for _, w in PLANS))
    cat_cum = _cumulative(tuple(w for _, w in CATEGORIES))
    namespace = uuid.UUID("6f0c8a4e-3b7d-5a1e-9c2f-0d4b8e6a1c37")  # as identity.graph.profile_id_for

    weights: list[float] = []
    live = 0
    for i in range(n_profiles):
        merged = i > 100 and rng.random() < 0.015
        anonymous = not merged and rng.random() < 0.25
        id_type = "anonymous_id" if anonymous else "user_id"
        data.pids.append(str(uuid.uuid5(namespace, f"{id_type}:{'a' if anonymous else 'u'}{i}")))
        data.anonymous.append(anonymous)
        if merged:
            data.merged_into[i] = rng.randrange(i)  # resolved to a live survivor below
            weights.append(0.0)
        else:
            live += 1
            weights.append(rng.lognormvariate(0.0, 1.3) * (0.25 if anonymous else 1.0))
        known = not merged and not anonymous
        data.country.append(bisect.bisect(country_cum, rng.random()) if known and rng.random() < 0.95 else -1)
        data.plan.append(bisect.bisect(plan_cum, rng.random()))
        data.newsletter.append(known and rng.random() < 0.45)
        data.first_name.append(rng.randrange(len(FIRST_NAMES)))
        data.favourite.append(bisect.bisect(cat_cum, rng.random()))
    for i, target in list(data.merged_into.items()):
        while target in data.merged_into:  # follow to a live profile
            target = data.merged_into[target]
        data.merged_into[i] = target

    # Events per live profile: 1 + a log-normal share of the rest (heavy users get thousands).
    spare = n_events - live
    if spare < 0:
        raise SystemExit(f"--events must be at least the number of live profiles ({live})")
    scale = spare / sum(weights)
    counts = [0 if w == 0.0 else 1 + int(w * scale + rng.random()) for w in weights]
    diff = n_events - sum(counts)
    while diff:
        j = rng.randrange(n_profiles)
        if counts[j] == 0 or (diff < 0 and counts[j] == 1):
            continue
        step_ = 1 if diff > 0 else -1
        counts[j] += step_
        diff -= step_
    data.per_profile = counts

    with progress_bar() as bar:
        task = bar.add_task("deciding events", total=n_events)
        done = 0
        for i, n in enumerate(counts):
            if n == 0:
                data.first_ts.append(0)
                data.last_ts.append(0)
                data.pages.append(0)
                data.tracks.append(0)
                continue
            start_ago = rng.random() * YEAR_S
            if data.anonymous[i]:
                end_ago = max(0.0, start_ago - rng.expovariate(1 / (5 * 86400)))
                mix = _cumulative([0.65, 0.3, 0.05, 0.0, 0.0, 0.0])
            else:
                active = rng.random() < 0.45 + 0.4 * min(1.0, weights[i] / 5)
                end_ago = (
                    min(start_ago, rng.expovariate(1 / (2 * 86400))) if active else rng.random() * start_ago
                )
                buyer = 0.05 if rng.random() < 0.65 else 0.0
                opens, clicks = (0.14, 0.035) if data.newsletter[i] else (0.0, 0.0)
                mix = _cumulative(
                    [1 - 0.25 - 0.06 - buyer - opens - clicks, 0.25, 0.06, buyer, opens, clicks]
                )
            span = start_ago - end_ago
            first, last, pages = now_s, 0, 0
            for _ in range(n):
                ts = now_s - int(end_ago + rng.random() * span)
                kind = bisect.bisect(mix, rng.random())
                data.ev_profile.append(i)
                data.ev_ts.append(ts)
                data.ev_kind.append(kind)
                data.kind_counts[kind] += 1
                first, last = min(first, ts), max(last, ts)
                pages += kind == PAGE
            data.first_ts.append(first)
            data.last_ts.append(last)
            data.pages.append(pages)
            data.tracks.append(n - pages)
            done += n
            if i % 2000 == 0:
                bar.update(task, completed=done)
        bar.update(task, completed=done)
    with step("sorting events by time (event ids follow time, like the log)"):
        data.order = sorted(range(n_events), key=data.ev_ts.__getitem__)
    return data


class Formatter:
    """Timestamps as each engine's driver would store them (SQLite: naive UTC text)."""

    def __init__(self, postgres: bool) -> None:
        self.suffix = "+00" if postgres else ""
        self.base = int(datetime(NOW.year - 2, 1, 1, tzinfo=UTC).timestamp())
        self.days = [
            (datetime.fromtimestamp(self.base, UTC) + timedelta(days=d)).strftime("%Y-%m-%d")
            for d in range(3 * 366)
        ]

    def ts(self, seconds: int) -> str:
        day, rest = divmod(seconds - self.base, 86400)
        return (
            f"{self.days[day]} {rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}.000000{self.suffix}"
        )

    def iso(self, seconds: int) -> str:
        day, rest = divmod(seconds - self.base, 86400)
        return f"{self.days[day]}T{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}.000000Z"


PROFILE_COLUMNS = (
    "id",
    "merged_into",
    "anchor",
    "last_edge_key",
    "identity_counts",
    "traits",
    "trait_meta",
    "event_counts",
    "first_seen",
    "last_seen",
    "updated_at",
    "computed",
)
EVENT_COLUMNS = ("event_id", "profile_id", "type", "name", "ts", "source_id", "properties")


def profile_rows(data: Dataset, fmt: Formatter) -> Iterator[tuple[Any, ...]]:
    """Values for PROFILE_COLUMNS; computed stays NULL until the refresh (other nullable columns,
    e.g. consent, are left NULL)."""
    rng = random.Random(data.seed + 1)
    updated = fmt.ts(int(NOW.timestamp()))
    empty = "{}"
    for i, pid in enumerate(data.pids):
        if i in data.merged_into:
            key = orjson.dumps(["", "", 0]).decode()
            anchor = orjson.dumps([["", "", 0], [9, "user_id", f"u{i}"], "user_id", f"u{i}"]).decode()
            yield (pid, data.pids[data.merged_into[i]], anchor, key, empty, empty, empty, empty, None, None,
                   updated, None)  # fmt: skip
            continue
        first, last = data.first_ts[i], data.last_ts[i]
        msg = f"m-{i}"
        edge = [fmt.iso(first), msg, 1]
        anonymous = data.anonymous[i]
        ident = ("anonymous_id", f"a{i}") if anonymous else ("user_id", f"u{i}")
        anchor = orjson.dumps([edge, [5 if anonymous else 0, *ident], *ident]).decode()
        traits: dict[str, Any] = {}
        if not anonymous:
            name = FIRST_NAMES[data.first_name[i]]
            traits = {"email": f"{name.lower()}.{i}@{DOMAINS[i % len(DOMAINS)]}", "first_name": name}
            if data.country[i] >= 0:
                traits["country"] = COUNTRIES[data.country[i]][0]
            traits["newsletter"] = bool(data.newsletter[i])
            traits["plan"] = PLANS[data.plan[i]][0]
        identity_counts = {"anonymous_id": 1 + rng.randrange(3)}
        if not anonymous:
            identity_counts |= {"user_id": 1, "email": 1}
        stamp = [fmt.iso(rng.randint(first, last)), msg, 1, "bench"]
        counts = {k: v for k, v in (("page", data.pages[i]), ("track", data.tracks[i])) if v}
        yield (
            pid,
            None,
            anchor,
            orjson.dumps([fmt.iso(last), f"m-{i}-last", 1]).decode(),
            orjson.dumps(identity_counts).decode(),
            orjson.dumps(traits).decode(),
            orjson.dumps(dict.fromkeys(traits, stamp)).decode(),
            orjson.dumps(counts).decode(),
            fmt.ts(first),
            fmt.ts(last),
            updated,
            None,
        )


def event_rows(data: Dataset, fmt: Formatter) -> Iterator[tuple[Any, ...]]:
    """(event_id, profile_id, type, name, ts, source_id, properties) in time order."""
    rng = random.Random(data.seed + 2)
    cat_cum = _cumulative(tuple(w for _, w in CATEGORIES))
    page_cum = _cumulative(PAGE_WEIGHTS)
    cats = [c for c, _ in CATEGORIES]
    prices = [19.0, 29.0, 39.0, 49.0, 59.0, 79.0, 99.0, 149.0]
    for event_id, pos in enumerate(data.order, start=1):
        prof, kind = data.ev_profile[pos], data.ev_kind[pos]
        pid, ts = data.pids[prof], fmt.ts(data.ev_ts[pos])
        if kind == PAGE:
            page = PAGES[bisect.bisect(page_cum, rng.random())]
            cat = (
                cats[data.favourite[prof]]
                if rng.random() < 0.6
                else cats[bisect.bisect(cat_cum, rng.random())]
            )
            path = (
                f"/c/{cat}"
                if page == "Category"
                else f"/p/{cat}/{rng.randrange(5000)}"
                if page == "Product"
                else "/"
            )
            yield (event_id, pid, "page", page, ts, 1, f'{{"path":"{path}","title":"{page}"}}')
            continue
        name = KIND_NAMES[kind]
        if kind in (OPENED, CLICKED):
            campaign = rng.randrange(CAMPAIGNS)
            url = f',"url":"https://shop.example/c/{cats[campaign % 8]}"' if kind == CLICKED else ""
            yield (event_id, pid, "track", name, ts, 1, f'{{"campaign_id":"cmp-{campaign}"{url}}}')
            continue
        c = data.favourite[prof] if rng.random() < 0.6 else bisect.bisect(cat_cum, rng.random())
        price = prices[(c + rng.randrange(3)) % 8] - 0.01
        if kind == ORDER:
            revenue = round(price * (1 + int(rng.expovariate(1.2))) + rng.random() * 30, 2)
            props = (
                f'{{"order_id":"o-{event_id}","category":"{cats[c]}","revenue":{revenue},'
                f'"currency":"EUR","products":{1 + int(rng.expovariate(1.0))}}}'
            )
        else:
            qty = ',"quantity":1' if kind == ADDED else ""
            props = (
                f'{{"product_id":"p-{c}-{rng.randrange(5000)}","category":"{cats[c]}","price":{price}{qty}}}'
            )
        yield (event_id, pid, "track", name, ts, 1, props)


# --------------------------------------------------------------------------------------------
# Loading


def _source_and_state(engine: sa.Engine, n_events: int) -> None:
    check_columns(engine)
    with engine.begin() as conn:
        conn.execute(
            sources.insert().values(
                id=1,
                name="bench",
                write_key_hash="0" * 64,
                enabled=True,
                created_at=NOW - timedelta(days=400),
            )
        )
        conn.execute(processor_state.insert().values(name=PROCESSOR, last_event_id=n_events))


def load_sqlite(engine: sa.Engine, data: Dataset, batch: int = 20_000) -> dict[str, float]:
    timings: dict[str, float] = {}
    _source_and_state(engine, data.events)
    with engine.connect() as conn:
        indexes = secondary_indexes(conn)
    engine.dispose()
    path = engine.url.database
    assert path
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-1048576", "threads=2"):
            db.execute(f"PRAGMA {pragma}")
        for name, _ in indexes:
            db.execute(f"DROP INDEX {name}")
        fmt = Formatter(postgres=False)
        start = time.perf_counter()
        with progress_bar() as bar:
            for label, total, rows, sql in (
                (
                    "profiles",
                    data.profiles,
                    profile_rows(data, fmt),
                    _insert_sql("profiles", PROFILE_COLUMNS),
                ),
                (
                    "profile_events",
                    data.events,
                    event_rows(data, fmt),
                    _insert_sql("profile_events", EVENT_COLUMNS),
                ),
            ):
                task = bar.add_task(f"inserting {label}", total=total)
                db.execute("BEGIN")
                done = 0
                while chunk := _take(rows, batch):
                    db.executemany(sql, chunk)
                    done += len(chunk)
                    bar.update(task, completed=done)
                    if done % 1_000_000 < batch:
                        db.execute("COMMIT")
                        db.execute("BEGIN")
                db.execute("COMMIT")
        timings["insert"] = time.perf_counter() - start
        start = time.perf_counter()
        for name, ddl in indexes:
            with step(f"CREATE INDEX {name}"):
                db.execute(ddl)
        timings["indexes"] = time.perf_counter() - start
        db.execute("PRAGMA journal_mode=WAL")
        start = time.perf_counter()
        with step("ANALYZE"):
            db.execute("ANALYZE")
        timings["analyze"] = time.perf_counter() - start
    finally:
        db.close()
    return timings


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def check_columns(engine: sa.Engine) -> None:
    """Every NOT NULL column of the migrated tables must be among the columns the loader writes
    (the schema moves on; a new required column must fail loudly here, not halfway)."""
    inspector = sa.inspect(engine)
    for table, written in (("profiles", PROFILE_COLUMNS), ("profile_events", EVENT_COLUMNS)):
        missing = [
            c["name"]
            for c in inspector.get_columns(table)
            if not c["nullable"] and c.get("default") is None and c["name"] not in written
        ]
        if missing:
            raise SystemExit(f"the loader does not fill the NOT NULL columns {missing} of {table}")


def _take(rows: Iterator[tuple[Any, ...]], n: int) -> list[tuple[Any, ...]]:
    out = []
    for row in rows:
        out.append(row)
        if len(out) == n:
            break
    return out


def _copy_line(row: tuple[Any, ...]) -> str:
    # By construction no value holds a tab, newline or backslash, so COPY text needs no escaping.
    return "\t".join("\\N" if v is None else str(v) for v in row) + "\n"


def load_postgresql(engine: sa.Engine, data: Dataset, batch: int = 20_000) -> dict[str, float]:
    timings: dict[str, float] = {}
    _source_and_state(engine, data.events)
    with engine.connect() as conn:
        indexes = secondary_indexes(conn)
    raw = engine.raw_connection()
    try:
        pg: Any = raw.driver_connection
        with pg.cursor() as cur:
            cur.execute("SET synchronous_commit = off")
            cur.execute("SET maintenance_work_mem = '1GB'")
            for name, _ in indexes:
                cur.execute(f"DROP INDEX {name}")
        pg.commit()
        fmt = Formatter(postgres=True)
        start = time.perf_counter()
        with progress_bar() as bar:
            for label, total, rows, columns in (
                ("profiles", data.profiles, profile_rows(data, fmt), PROFILE_COLUMNS),
                ("profile_events", data.events, event_rows(data, fmt), EVENT_COLUMNS),
            ):
                task = bar.add_task(f"COPY {label}", total=total)
                done = 0
                exhausted = False
                while not exhausted:  # one COPY and commit per million rows
                    with (
                        pg.cursor() as cur,
                        cur.copy(f"COPY {label} ({', '.join(columns)}) FROM STDIN") as copy,
                    ):
                        for _ in range(1_000_000 // batch):
                            chunk = _take(rows, batch)
                            if not chunk:
                                exhausted = True
                                break
                            copy.write("".join(map(_copy_line, chunk)))
                            done += len(chunk)
                            bar.update(task, completed=done)
                    pg.commit()
        timings["insert"] = time.perf_counter() - start
        start = time.perf_counter()
        with pg.cursor() as cur:
            for name, ddl in indexes:
                with step(f"CREATE INDEX {name}"):
                    cur.execute(ddl)
                    pg.commit()
        timings["indexes"] = time.perf_counter() - start
        pg.autocommit = True
        start = time.perf_counter()
        with pg.cursor() as cur, step("VACUUM (ANALYZE) profiles, profile_events"):
            cur.execute("VACUUM (ANALYZE) profiles")
            cur.execute("VACUUM (ANALYZE) profile_events")
        timings["analyze"] = time.perf_counter() - start
        pg.autocommit = False
    finally:
        raw.close()
    engine.dispose()
    return timings


# --------------------------------------------------------------------------------------------
# Measuring


@dataclass
class SegmentResult:
    name: str
    count: int
    cold: float
    warm: list[float]
    plan: list[str] = field(default_factory=list)


def count_statement(criteria: dict[str, Any]) -> sa.Select[Any]:
    """The statement `preview` runs for the count (from the same compiler)."""
    query = members_query(parse_criteria(criteria), NOW)
    return sa.select(sa.func.count()).select_from(query.subquery())


def explain(engine: sa.Engine, criteria: dict[str, Any]) -> list[str]:
    stmt = count_statement(criteria)
    literal = str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))
    compiled = stmt.compile(engine)
    lines = ["SQL (literal values for display):", *literal.splitlines(), ""]
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            params = tuple(compiled.params[k] for k in compiled.positiontup or ())
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), params).all()
            depth: dict[int, int] = {0: -1}
            lines.append("EXPLAIN QUERY PLAN:")
            for node, parent, _, detail in rows:
                depth[node] = depth.get(parent, -1) + 1
                lines.append("  " * depth[node] + "- " + detail)
        else:
            rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + str(compiled), compiled.params).all()
            lines.append("EXPLAIN (ANALYZE, BUFFERS):")
            lines += [r[0] for r in rows]
    return lines


def measure_previews(engine: sa.Engine, runs: int, explain_all: bool) -> list[SegmentResult]:
    results = []
    for name, criteria in SEGMENTS.items():
        engine.dispose()  # cold: a new connection (empty SQLite page cache / a new PG backend)
        start = time.perf_counter()
        count = preview(engine, criteria, sample_size=0, now=NOW)["count"]
        cold = time.perf_counter() - start
        warm = []
        for _ in range(runs):
            start = time.perf_counter()
            again = preview(engine, criteria, sample_size=0, now=NOW)["count"]
            warm.append(time.perf_counter() - start)
            assert again == count
        result = SegmentResult(name, count, cold, warm)
        console.print(
            f"  {name:<14} count {count:>9,}  cold {cold:7.3f} s  warm min {min(warm):7.3f} s"
            f"  median {statistics.median(warm):7.3f} s"
        )
        if explain_all or statistics.median(warm) > TARGET_S:
            result.plan = explain(engine, criteria)
        results.append(result)
    return results


class OverBudget(Exception):
    pass


@dataclass
class RefreshResult:
    profiles: int
    events: int
    seconds: float
    traits_seconds: float
    complete: bool
    memberships: dict[str, int] = field(default_factory=dict)
    computed_rows: int = 0
    sample: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # refresh_all failed (in its memberships phase)
    #: after a failure: each segment's memberships refreshed alone, (seconds, error or None)
    per_segment: dict[str, tuple[float, str | None]] = field(default_factory=dict)


def _short(exc: BaseException) -> str:
    """An exception in one line, without the (possibly huge) parameter list."""
    if isinstance(exc, sa.exc.StatementError):
        statement = " ".join(str(exc.statement or "").split())[:90]
        return f"{type(exc.orig).__name__}: {str(exc.orig).splitlines()[0][:160]} [SQL: {statement}…]"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def refresh_each_segment(engine: sa.Engine) -> dict[str, tuple[float, str | None]]:
    """`memberships.refresh` of one saved segment at a time, each in its own transaction."""
    out: dict[str, tuple[float, str | None]] = {}
    with engine.connect() as conn:
        rows = conn.execute(sa.select(segments.c.id, segments.c.name, segments.c.criteria)).all()
    for row in rows:
        start = time.perf_counter()
        error = None
        try:
            with engine.begin() as conn:
                refresh_memberships(conn, row.id, row.criteria, NOW)
        except sa.exc.DBAPIError as exc:
            error = _short(exc)
        out[row.name] = (time.perf_counter() - start, error)
        console.print(f"  memberships of {row.name!r} alone: {out[row.name][0]:.1f} s {error or ''}")
    return out


def save_segments(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for name, criteria in SEGMENTS.items():
            conn.execute(
                segments.insert().values(
                    name=name,
                    description=SEGMENT_NOTES[name],
                    criteria=to_document(parse_criteria(criteria)),
                    created_at=NOW,
                    updated_at=NOW,
                )
            )


def measure_refresh(engine: sa.Engine, n_events: int, budget: float) -> RefreshResult:
    save_segments(engine)
    engine.dispose()
    total = live_profile_count(engine)
    done = 0
    start = time.perf_counter()
    traits_end = start

    with progress_bar() as bar:
        task = bar.add_task("refresh_all: computed traits", total=total)

        def on_progress(n: int) -> None:
            nonlocal done, traits_end
            done += n
            traits_end = time.perf_counter()
            bar.update(task, completed=done)
            elapsed = traits_end - start
            if done >= total:
                bar.update(task, description="refresh_all: segment memberships")
            elif done >= total * 0.03 and elapsed / done * total > budget:
                raise OverBudget

        error = None
        try:
            refresh_all(engine, now=NOW, on_progress=on_progress)
            complete = True
        except OverBudget:
            complete = False
        except sa.exc.DBAPIError as exc:
            complete, error = False, _short(exc)
    seconds = time.perf_counter() - start
    result = RefreshResult(done, n_events, seconds, traits_end - start, complete, error=error)
    if error:
        console.print(
            f"[red]  refresh_all failed after {seconds:.0f} s: {error}", markup=True, highlight=False
        )
        if done >= total:
            result.per_segment = refresh_each_segment(engine)
    with engine.connect() as conn:
        result.computed_rows = conn.execute(
            sa.select(sa.func.count()).select_from(profiles).where(profiles.c.computed.is_not(None))
        ).scalar_one()
        for name, sid in conn.execute(sa.select(segments.c.name, segments.c.id)):
            result.memberships[name] = conn.execute(
                sa.select(sa.func.count())
                .select_from(segment_memberships)
                .where(segment_memberships.c.segment_id == sid, segment_memberships.c.exited_at.is_(None))
            ).scalar_one()
        heaviest = conn.execute(
            sa.select(profiles.c.computed)
            .where(profiles.c.computed.is_not(None))
            .order_by(profiles.c.id)
            .limit(200)
        ).all()
        result.sample = max((r[0] for r in heaviest), key=lambda c: c.get("order_count", 0), default={})
    return result


# --------------------------------------------------------------------------------------------
# Engines


@dataclass
class EngineReport:
    engine: str
    profiles: int
    events: int
    live: int
    decide_s: float
    load: dict[str, float]
    size: dict[str, int]
    previews: list[SegmentResult]
    refresh: RefreshResult | None
    settings: dict[str, str]


def _size_sqlite(path: Path) -> dict[str, int]:
    out = {"database": sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))}
    db = sqlite3.connect(path)
    try:
        with contextlib.suppress(sqlite3.DatabaseError):  # dbstat is an optional compile-time module
            for name, size in db.execute(
                "SELECT name, sum(pgsize) FROM dbstat WHERE name IN ('profiles', 'profile_events',"
                " 'ix_profile_events_profile_ts', 'ix_profile_events_name_ts',"
                " 'sqlite_autoindex_profile_events_1')"
                " GROUP BY name"
            ):
                out[name] = int(size)
    finally:
        db.close()
    return out


def _size_postgresql(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        out = {
            "database": int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one())
        }
        for name in ("profiles", "profile_events"):
            out[name + " (with indexes)"] = int(
                conn.exec_driver_sql(f"SELECT pg_total_relation_size('{name}')").scalar_one()
            )
    return out


def run_engine(kind: str, data: Dataset, decide_s: float, args: argparse.Namespace) -> EngineReport:
    console.rule(f"[bold]{kind}")
    keep = Path(args.keep) if args.keep else None
    if kind == "sqlite" and keep is not None and (keep / "opencdp.db").exists():
        raise SystemExit(f"{keep / 'opencdp.db'} exists; --keep needs a fresh directory")
    with scratch_database(
        kind, args.postgres_url, prefix="opencdp-bench-segments-", name=SCRATCH_DB, keep=keep
    ) as db:
        engine = open_database(db.settings())
        try:
            console.print(f"  database: {db.url}")
            started = time.perf_counter()
            load = load_sqlite(engine, data) if kind == "sqlite" else load_postgresql(engine, data)
            load["total"] = time.perf_counter() - started
            console.print(
                f"  loaded in {load['total']:.0f} s (insert {load['insert']:.0f} s,"
                f" indexes {load['indexes']:.0f} s, analyze {load['analyze']:.0f} s);"
                f" deciding the data took {decide_s:.0f} s before that"
            )
            size = _size_sqlite(db.workdir / "opencdp.db") if kind == "sqlite" else _size_postgresql(engine)
            live = live_profile_count(engine)
            settings = _engine_settings(engine)
            console.print("  preview(engine, criteria, sample_size=0, now=NOW):")
            previews = measure_previews(engine, args.runs, args.explain)
            for result in previews:
                if result.plan:
                    console.rule(f"plan: {kind} / {result.name}", style="dim")
                    console.print("\n".join(result.plan), markup=False, highlight=False)
            refresh = None if args.no_refresh else measure_refresh(engine, data.events, args.refresh_budget)
            report = EngineReport(
                kind, data.profiles, data.events, live, decide_s, load, size, previews, refresh, settings
            )
            print_report(report)
            return report
        finally:
            engine.dispose()


def _engine_settings(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return {
                "version": str(conn.exec_driver_sql("SELECT sqlite_version()").scalar_one()),
                "cache_size": str(conn.exec_driver_sql("PRAGMA cache_size").scalar_one()),
                "journal_mode": str(conn.exec_driver_sql("PRAGMA journal_mode").scalar_one()),
            }
        return {
            name: str(conn.exec_driver_sql(f"SHOW {name}").scalar_one())
            for name in ("server_version", "shared_buffers", "work_mem", "effective_cache_size", "jit")
        }


# --------------------------------------------------------------------------------------------
# Reporting


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def print_report(r: EngineReport) -> None:
    rows: list[list[str]] = []

    def row(*cells: str) -> None:
        rows.append(list(cells))

    row(
        "data",
        f"{r.profiles:,} profiles ({r.live:,} live), {r.events:,} events",
        "",
        "",
        "",
    )
    row("database size", ", ".join(f"{k} {_mb(v)}" for k, v in r.size.items()), "", "", "")
    row(
        "generation",
        f"{r.decide_s + r.load['total']:.0f} s = decide {r.decide_s:.0f} + insert {r.load['insert']:.0f}"
        f" + indexes {r.load['indexes']:.0f} + analyze {r.load['analyze']:.0f}",
        "",
        "",
        "",
    )
    for p in r.previews:
        median = statistics.median(p.warm)
        flag = " ✗" if median > TARGET_S else " ✓" if p.name == BEHAVIOURAL else ""
        row(
            f"preview: {p.name}",
            f"{p.count:,}",
            f"{p.cold:.3f} s",
            f"{min(p.warm):.3f} s",
            f"{median:.3f} s{flag}",
        )
    if r.refresh:
        f = r.refresh
        what = (
            "refresh_all"
            if f.complete
            else "refresh_all FAILED (error below)"
            if f.error
            else "refresh_all (STOPPED: over budget; rates measured so far)"
        )
        row(
            what,
            f"{f.profiles:,} profiles",
            f"{f.seconds:.0f} s",
            f"traits {f.traits_seconds:.0f} s",
            f"memberships {f.seconds - f.traits_seconds:.0f} s",
        )
        if f.traits_seconds > 0:
            events_done = f.events * f.profiles / max(1, r.live)
            row(
                "refresh rate (traits phase)",
                f"{f.profiles / f.traits_seconds:,.0f} profiles/s,"
                f" ~{events_done / f.traits_seconds:,.0f} events/s",
                "",
                "",
                "",
            )
        row("memberships saved", ", ".join(f"{k} {v:,}" for k, v in f.memberships.items()), "", "", "")
    row("engine", ", ".join(f"{k}={v}" for k, v in r.settings.items()), "", "", "")
    console.print(rich_table(f"{r.engine}: segments and computed traits", REPORT_COLUMNS, rows))
    if r.refresh and r.refresh.error:
        console.print(f"  refresh_all failed: {r.refresh.error}", markup=False, highlight=False)
    if r.refresh:
        console.print(
            f"  computed traits written: {r.refresh.computed_rows:,} profiles; e.g. {r.refresh.sample}"
        )
        mismatched = {
            p.name: (p.count, r.refresh.memberships.get(p.name))
            for p in r.previews
            if r.refresh.complete and r.refresh.memberships.get(p.name) != p.count
        }
        if mismatched:
            console.print(f"[red]memberships differ from preview counts: {mismatched}")


def describe_data(data: Dataset) -> None:
    counts = sorted(c for c in data.per_profile if c)
    pct = {q: counts[min(len(counts) - 1, int(q / 100 * len(counts)))] for q in (50, 90, 99, 99.9)}
    console.print(
        f"  events per live profile: median {pct[50]}, p90 {pct[90]}, p99 {pct[99]}, p99.9 {pct[99.9]},"
        f" max {counts[-1]:,}; by kind: "
        + ", ".join(f"{KIND_NAMES[k]} {n:,}" for k, n in enumerate(data.kind_counts))
    )


def machine() -> str:
    cpu = cpu_model()
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GB RAM"
    load = ""
    with contextlib.suppress(OSError):
        load = ", load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}{load}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument(
        "--keep", metavar="DIR", help="keep the database (SQLite in DIR; PostgreSQL not dropped)"
    )
    parser.add_argument("--runs", type=int, default=5, help="warm preview runs per segment")
    parser.add_argument("--explain", action="store_true", help="print query plans for every segment")
    parser.add_argument("--no-refresh", action="store_true", help="skip the refresh_all measurement")
    parser.add_argument(
        "--refresh-budget", type=float, default=1200.0, help="stop refresh_all if projected longer"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--postgres-url", default=os.environ.get("OPENCDP_TEST_POSTGRES_URL", default_postgres_url())
    )
    args = parser.parse_args(argv)
    if not (1000 <= args.profiles <= 20_000_000 and args.profiles <= args.events <= 200_000_000):
        parser.error("need 1,000 <= --profiles <= --events <= 200,000,000 (and profiles <= 20M)")
    if not 1 <= args.runs <= 100:
        parser.error("--runs must be 1..100")
    host = sa.make_url(args.postgres_url).host
    if args.engine != "sqlite" and host not in ("127.0.0.1", "localhost"):
        parser.error("this benchmark only talks to a PostgreSQL on 127.0.0.1")

    console.print(f"[bold]opencdp segments benchmark[/] — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    console.print(f"  machine: {machine()}")
    console.print(
        f"  python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, NOW = {NOW.isoformat()}"
    )
    console.print(f"  command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    where = Path(args.keep or tempfile.gettempdir()).absolute()
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    need = int(args.events * 450)
    if free < need:
        raise SystemExit(f"not enough disk: {_mb(free)} free, about {_mb(need)} needed")

    start = time.perf_counter()
    data = generate(args.profiles, args.events, args.seed)
    decide_s = time.perf_counter() - start
    console.print(f"  decided {args.profiles:,} profiles and {args.events:,} events in {decide_s:.0f} s")
    describe_data(data)

    engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    reports = [run_engine(kind, data, decide_s, args) for kind in engines]
    behavioural = [
        statistics.median(p.warm)
        for r in reports
        if r.engine == "sqlite"
        for p in r.previews
        if p.name == BEHAVIOURAL
    ]
    if behavioural:
        verdict = "met" if behavioural[0] <= TARGET_S else "MISSED"
        console.print(
            f"target: behavioural preview on SQLite ≤ {TARGET_S} s: {verdict} ({behavioural[0]:.3f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
