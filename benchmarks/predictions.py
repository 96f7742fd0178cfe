"""Propensity models at scale: feature extraction, training and scoring of purchase and churn.

Per engine (SQLite in a temporary directory or `--keep DIR`; PostgreSQL in a scratch database
`opencdp_bench_predictions` that is dropped at the end):

1. Synthetic mode (default): `--profiles` profiles (1,000,000 by default) with synthetic
   histories written straight into the derived tables the models read, `profiles` and
   `profile_events`, by bulk inserts (SQLite: executemany with the journal and sync off and the
   secondary indexes dropped during the load; PostgreSQL: COPY), then the indexes re-created from
   their migrated definitions and ANALYZE. The raw event log (`events`) stays empty: nothing here
   reads it. Every profile has a latent activity (sessions per day, log-normal), a first visit in
   the last two years, a lifetime after which it goes quiet (churns), a latent chance that a
   session ends in an order, and half of them a newsletter with their own open rate (opens drop
   after they go quiet). Sessions are page views, product views, sometimes a cart add and an
   order with revenue; e-mails are opened and sometimes clicked. 1 % of profiles are merged into
   another one (no events; they must not be scored). About 14 events per live profile.
   `--demo`: instead, the demo shop (`opencdp demo`, `--customers`, 6,000 by default, 90 days up to
   a fixed NOW) is written into the event log as the collector would and processed into profiles
   by the real processor; purchase and churn then use 30-day horizons (churn's default of 90
   needs 180 days of history; with 2,000 customers too few reorder within 30 days for churn).
2. Timed: the features of every live profile as of NOW (one extraction, to show its cost alone);
   `fit` of purchase (30 days) and churn (90 days) with the time split of
   `opencdp.predict.propensity` (two extractions, labels, calibrated boosted trees, permutation
   importance, the refit); `score` of every live profile (purchase) or customer (churn) from the
   model's JSON parameters, consumed as the job yields them; writing the scores to
   `profiles.predicted` (as `opencdp predict score` does); the same for lifetime value (BG/NBD +
   Gamma-Gamma fit with its held-out check, score, write).
3. A table per engine: times, rows, held-out AUC, log loss, lift of the top decile, base rate.
   Target: scoring 1,000,000 profiles on SQLite in under 60 s (features included).

Usage:
    .venv/bin/python benchmarks/predictions.py [--engine sqlite|postgresql|both] [--profiles N]
        [--seed 7] [--keep DIR] [--postgres-url URL] [--markdown]
    .venv/bin/python benchmarks/predictions.py --demo [--customers 2000] [--engine ...]

Only 127.0.0.1 is contacted. Exit status 0 when everything ran (a missed target is reported).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from rich.console import Console

from harness.machine import cpu_model
from harness.report import markdown_table, rich_table
from harness.scratch import default_postgres_url, is_loopback, scratch_database, secondary_indexes
from opencdp import logs
from opencdp.predict import features, store
from opencdp.predict.clv import JOBS as CLV_JOBS
from opencdp.predict.model import Fitted, TooThin
from opencdp.predict.propensity import JOBS
from opencdp.store.database import open_database

CLV = CLV_JOBS["clv"]
NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
DEMO_NOW = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
TARGET_SCORE_S = 60.0  # scoring 1,000,000 profiles on SQLite, features included
TARGET_PROFILES = 1_000_000
BATCH = 50_000

# Event kinds of the synthetic shop: (type, name).
KINDS = (
    ("page", "Home"),
    ("page", "Product"),
    ("track", "Product Viewed"),
    ("track", "Product Added"),
    ("track", "Order Completed"),
    ("track", "Email Opened"),
    ("track", "Email Link Clicked"),
)
HOME, PRODUCT_PAGE, VIEWED, ADDED, ORDER, OPENED, CLICKED = range(len(KINDS))
PROFILE_COLUMNS = (
    "id",
    "merged_into",
    "anchor",
    "last_edge_key",
    "identity_counts",
    "traits",
    "trait_meta",
    "event_counts",
    "updated_at",
)
EVENT_COLUMNS = ("event_id", "profile_id", "type", "name", "ts", "source_id", "properties")

console = Console(width=None if sys.stdout.isatty() else 160)


@contextlib.contextmanager
def step(label: str) -> Iterator[None]:
    with console.status(label):
        start = time.perf_counter()
        yield
    console.print(f"  {label}: {time.perf_counter() - start:.1f} s")


# --------------------------------------------------------------------------------------------
# Synthetic histories


@dataclass
class Shop:
    """Events as arrays, in time order: profile index, seconds since the epoch, kind, revenue."""

    profiles: int
    merged: np.ndarray  # bool per profile
    survivor: np.ndarray  # int per profile (itself when not merged)
    profile: np.ndarray
    ts: np.ndarray
    kind: np.ndarray
    revenue: np.ndarray


def generate(n: int, seed: int) -> Shop:
    """Decide every profile and event with numpy (seeded, so reproducible)."""
    rng = np.random.default_rng(seed)
    now = int(NOW.timestamp())
    merged = (rng.random(n) < 0.01) & (np.arange(n) > 0)
    survivor = np.where(merged, rng.integers(0, np.maximum(np.arange(n), 1)), np.arange(n))
    while merged[survivor].any():  # a survivor must be live
        survivor = np.where(merged[survivor], survivor[survivor], survivor)
        survivor = np.where(merged[survivor], 0, survivor)
    live = ~merged
    rate = np.minimum(rng.lognormal(np.log(0.012), 1.1, n), 1.0)  # sessions per active day
    first_ago = rng.uniform(1.0, 730.0, n)  # days before NOW
    quiet_ago = np.maximum(first_ago - rng.exponential(240.0, n), 0.0)  # 0: still active
    buys = rng.beta(1.5, 5.0, n)  # chance a session ends in an order
    active = first_ago - quiet_ago
    sessions = np.where(live, np.maximum(1, np.minimum(rng.poisson(rate * active), 400)), 0)

    s_prof = np.repeat(np.arange(n), sessions)
    s_ts = now - ((quiet_ago[s_prof] + rng.random(len(s_prof)) * active[s_prof]) * 86400).astype(np.int64)
    parts: list[tuple[np.ndarray, np.ndarray, int, np.ndarray | None]] = []

    def emit(mask_or_counts: np.ndarray, kind: int, offset: int, revenue: np.ndarray | None = None) -> None:
        if mask_or_counts.dtype == bool:
            rows = np.flatnonzero(mask_or_counts)
        else:
            rows = np.repeat(np.arange(len(mask_or_counts)), mask_or_counts)
        parts.append((s_prof[rows], s_ts[rows] + offset, kind, None if revenue is None else revenue[rows]))

    emit(np.ones(len(s_prof), dtype=bool), HOME, 0)
    emit(rng.poisson(0.6, len(s_prof)), PRODUCT_PAGE, 30)
    emit(rng.poisson(1.0, len(s_prof)), VIEWED, 60)
    cart = rng.random(len(s_prof)) < 0.15
    emit(cart, ADDED, 120)
    order = rng.random(len(s_prof)) < buys[s_prof] * np.where(cart, 2.0, 0.4)
    emit(order, ORDER, 600, np.round(rng.lognormal(np.log(45.0), 0.7, len(s_prof)), 2))

    # E-mail every two weeks to subscribers since their first visit; fewer opens once quiet.
    subscribed = live & (rng.random(n) < 0.5)
    open_rate = rng.beta(2.0, 5.0, n)
    for frm, to, factor in ((first_ago, quiet_ago, 1.0), (quiet_ago, np.zeros(n), 0.3)):
        opens = np.where(subscribed, rng.binomial(((frm - to) / 14).astype(np.int64), open_rate * factor), 0)
        o_prof = np.repeat(np.arange(n), opens)
        o_ts = now - ((to[o_prof] + rng.random(len(o_prof)) * (frm - to)[o_prof]) * 86400).astype(np.int64)
        parts.append((o_prof, o_ts, OPENED, None))
        click = rng.random(len(o_prof)) < 0.25
        parts.append((o_prof[click], o_ts[click] + 45, CLICKED, None))

    profile = np.concatenate([p for p, _, _, _ in parts]).astype(np.int64)
    ts = np.minimum(np.concatenate([t for _, t, _, _ in parts]), now)
    kind = np.concatenate([np.full(len(p), k, dtype=np.int8) for p, _, k, _ in parts])
    revenue = np.concatenate([np.full(len(p), np.nan) if r is None else r for p, _, _, r in parts])
    order_by_time = np.argsort(ts, kind="stable")  # event ids follow time, like the log
    return Shop(
        n,
        merged,
        survivor,
        profile[order_by_time],
        ts[order_by_time],
        kind[order_by_time],
        revenue[order_by_time],
    )


def profile_id(i: int) -> str:
    return f"bench-{i:09d}"


def profile_rows(shop: Shop, updated: str) -> Iterator[tuple[Any, ...]]:
    anchor = '[["", "", 0], [0, "", ""], "user_id", "bench"]'
    for i in range(shop.profiles):
        survivor = profile_id(int(shop.survivor[i])) if shop.merged[i] else None
        yield (profile_id(i), survivor, anchor, '["", "", 0]', "{}", "{}", "{}", "{}", updated)


def event_rows(shop: Shop, postgres: bool) -> Iterator[list[tuple[Any, ...]]]:
    """Batches of rows for EVENT_COLUMNS; timestamps as each driver stores them (SQLite: naive UTC
    text 'YYYY-MM-DD HH:MM:SS.ffffff', which is what the UTCDateTime column writes)."""
    names = [(t, n) for t, n in KINDS]
    for start in range(0, len(shop.ts), BATCH):
        stop = min(start + BATCH, len(shop.ts))
        stamps = np.datetime_as_string(shop.ts[start:stop].astype("datetime64[s]").astype("datetime64[us]"))
        rows = []
        for j, (p, k, r, stamp) in enumerate(
            zip(
                shop.profile[start:stop].tolist(),
                shop.kind[start:stop].tolist(),
                shop.revenue[start:stop].tolist(),
                stamps.tolist(),
                strict=True,
            ),
            start=start + 1,
        ):
            kind, name = names[k]
            props = f'{{"revenue": {r}, "currency": "EUR"}}' if k == ORDER else "{}"
            ts = stamp + "+00" if postgres else stamp.replace("T", " ")
            rows.append((j, profile_id(p), kind, name, ts, 1, props))
        yield rows


def load_sqlite(engine: sa.Engine, shop: Shop) -> None:
    with engine.connect() as conn:
        indexes = secondary_indexes(conn)
    engine.dispose()
    assert engine.url.database
    db = sqlite3.connect(engine.url.database, isolation_level=None)
    try:
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-1048576"):
            db.execute(f"PRAGMA {pragma}")
        for name, _ in indexes:
            db.execute(f"DROP INDEX {name}")
        updated = NOW.strftime("%Y-%m-%d %H:%M:%S.000000")
        with step(f"inserting {shop.profiles:,} profiles and {len(shop.ts):,} events"):
            db.execute("BEGIN")
            db.executemany(_insert_sql("profiles", PROFILE_COLUMNS), profile_rows(shop, updated))
            for rows in event_rows(shop, postgres=False):
                db.executemany(_insert_sql("profile_events", EVENT_COLUMNS), rows)
            db.execute("COMMIT")
        with step("CREATE INDEX (profiles, profile_events) and ANALYZE"):
            for _, ddl in indexes:
                db.execute(ddl)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("ANALYZE")
    finally:
        db.close()


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _copy_line(row: tuple[Any, ...]) -> str:
    # No value holds a tab, newline or backslash by construction: COPY text needs no escaping.
    return "\t".join("\\N" if v is None else str(v) for v in row) + "\n"


def load_postgresql(engine: sa.Engine, shop: Shop) -> None:
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
        updated = NOW.isoformat()
        with step(f"COPY {shop.profiles:,} profiles and {len(shop.ts):,} events"):
            with (
                pg.cursor() as cur,
                cur.copy(f"COPY profiles ({', '.join(PROFILE_COLUMNS)}) FROM STDIN") as copy,
            ):
                for row in profile_rows(shop, updated):
                    copy.write(_copy_line(row))
            with (
                pg.cursor() as cur,
                cur.copy(f"COPY profile_events ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy,
            ):
                for rows in event_rows(shop, postgres=True):
                    copy.write("".join(map(_copy_line, rows)))
            pg.commit()
        with step("CREATE INDEX (profiles, profile_events) and VACUUM (ANALYZE)"):
            with pg.cursor() as cur:
                for _, ddl in indexes:
                    cur.execute(ddl)
            pg.commit()
            pg.autocommit = True
            with pg.cursor() as cur:
                cur.execute("VACUUM (ANALYZE) profiles")
                cur.execute("VACUUM (ANALYZE) profile_events")
            pg.autocommit = False
    finally:
        raw.close()
    engine.dispose()


# --------------------------------------------------------------------------------------------
# The demo shop, through the log and the real processor


def load_demo(engine: sa.Engine, customers: int, seed: int) -> None:
    from opencdp.access.keys import create_source as create_source_row
    from opencdp.collect.messages import Envelope, Limits, normalise
    from opencdp.demo.runner import SOURCES
    from opencdp.demo.shop import ShopGenerator
    from opencdp.identity.identifiers import IdentityRules
    from opencdp.process.processor import Processor
    from opencdp.store.dialect import insert_ignoring_duplicates
    from opencdp.store.schema import events

    source_ids = {name: create_source_row(engine, f"demo-{name}")[0].id for name in SOURCES}
    insert = insert_ignoring_duplicates(engine.dialect.name, events, ["source_id", "message_id"])
    envelope, limits = Envelope(received_at=DEMO_NOW), Limits()
    with step(f"demo shop of {customers:,} customers into the event log"):
        rows = [
            normalise(e.message, envelope, source_ids[e.source], limits)
            for e in ShopGenerator(customers=customers, seed=seed, now=DEMO_NOW).events()
        ]
        for start in range(0, len(rows), 5_000):
            with engine.begin() as conn:
                conn.execute(insert, rows[start : start + 5_000])
    with step(f"processing {len(rows):,} events into profiles"):
        Processor(engine, IdentityRules()).run_until_caught_up()


# --------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Measured:
    kind: str
    horizon: int
    fit_s: float = 0.0
    score_s: float = 0.0
    scored: int = 0
    fitted: Fitted | None = None
    refused: str = ""
    write_s: float = 0.0


@dataclass
class EngineReport:
    engine: str
    live: int = 0
    events: int = 0
    features_s: float = 0.0
    feature_count: int = 0
    jobs: list[Measured] = field(default_factory=list)
    clv: Measured | None = None


def measure(engine: sa.Engine, name: str, now: datetime, horizons: dict[str, int]) -> EngineReport:
    report = EngineReport(name)
    with engine.connect() as conn:
        report.live = int(
            conn.execute(sa.text("SELECT count(*) FROM profiles WHERE merged_into IS NULL")).scalar_one()
        )
        report.events = int(conn.execute(sa.text("SELECT count(*) FROM profile_events")).scalar_one())
    names = features.top_event_names(engine, now)
    start = time.perf_counter()
    with step(f"features of {report.live:,} live profiles as of NOW"):
        extracted = features.extract(engine, now, names)
    report.features_s = time.perf_counter() - start
    report.feature_count = len(extracted.names)
    del extracted
    for kind, horizon in horizons.items():
        result = Measured(kind, horizon)
        report.jobs.append(result)
        start = time.perf_counter()
        try:
            with step(f"fit {kind} ({horizon} days)"):
                result.fitted = JOBS[kind].fit(engine, now, {"horizon_days": horizon})
        except TooThin as exc:
            result.refused = str(exc)
            console.print(f"  [yellow]{kind} refused:[/] {exc}")
            continue
        result.fit_s = time.perf_counter() - start
        start = time.perf_counter()
        with step(f"score {kind}"):
            scores = list(JOBS[kind].score(engine, result.fitted, now))
        result.score_s = time.perf_counter() - start
        result.scored = len(scores)
        result.write_s = write(engine, result.fitted, scores, now)
    report.clv = measure_clv(engine, now)
    return report


def write(
    engine: sa.Engine, fitted: Fitted, scores: list[tuple[str, dict[str, Any]]], now: datetime
) -> float:
    """Store the fit and write its traits to `profiles.predicted` as `opencdp predict score` does."""
    with engine.begin() as conn:
        store.define(conn, fitted.name, fitted.kind, fitted.options)
        record = store.save_fit(conn, fitted)
    start = time.perf_counter()
    with step(f"write {fitted.name} traits of {len(scores):,} profiles"):
        store.write_scores(engine, record, scores, now)
    return time.perf_counter() - start


def measure_clv(engine: sa.Engine, now: datetime) -> Measured:
    """BG/NBD + Gamma-Gamma: fit (with its held-out check), score every customer, write."""
    result = Measured("clv", 120)
    start = time.perf_counter()
    try:
        with step("fit clv (BG/NBD + Gamma-Gamma, held-out check)"):
            result.fitted = CLV.fit(engine, now, {"horizon_days": 120})
    except TooThin as exc:
        result.refused = str(exc)
        console.print(f"  [yellow]clv refused:[/] {exc}")
        return result
    result.fit_s = time.perf_counter() - start
    start = time.perf_counter()
    with step("score clv"):
        scores = list(CLV.score(engine, result.fitted, now))
    result.score_s = time.perf_counter() - start
    result.scored = len(scores)
    result.write_s = write(engine, result.fitted, scores, now)
    return result


def clv_rows(job: Measured) -> list[list[str]]:
    if job.fitted is None:
        return [["refused", job.refused]]
    q, p = job.fitted.quality, job.fitted.params
    churn, purchases = q.get("churn", {}), q.get("purchases", {})
    return [
        ["customers (repeat buyers)", f"{p.get('customers', 0):,} ({p.get('repeat_buyers', 0):,})"],
        ["fit (both models and the held-out refit)", f"{job.fit_s:.1f} s"],
        ["score (every customer)", f"{job.score_s:.1f} s"],
        ["write predicted traits", f"{job.write_s:.1f} s"],
        ["BG/NBD r, alpha, a, b", ", ".join(f"{p['bgnbd'][k]:.4g}" for k in ("r", "alpha", "a", "b"))],
        ["Gamma-Gamma p, q, v", ", ".join(f"{p['gamma_gamma'][k]:.4g}" for k in ("p", "q", "v"))],
        [
            "held-out repeat purchases predicted / actual",
            f"{purchases.get('predicted_total', 0):,.0f} / {purchases.get('actual_total', 0):,.0f}"
            if purchases
            else q.get("skipped", "-"),
        ],
        [
            "BG/NBD churn score P(no purchase in hold-out): AUC / log loss / lift",
            f"{churn['auc']:.3f} / {churn['log_loss']:.3f} / {churn['top_decile_lift']:.2f}"
            if churn
            else "-",
        ],
        [
            "P(alive) alone as churn score: AUC / lift",
            f"{churn['auc_p_alive']:.3f} / {churn['top_decile_lift_p_alive']:.2f}" if churn else "-",
        ],
    ]


def job_column(report: EngineReport, job: Measured) -> list[str]:
    """One column of the table: the measures of one job."""
    common = [f"{report.live:,} / {report.events:,}", f"{report.features_s:.1f} s ({report.feature_count})"]
    if job.fitted is None:
        return [*common, f"{job.horizon} days", *["refused"] * (len(ROW_LABELS) - 3)]
    q = job.fitted.quality
    top = q["top_features"][0]["feature"] if q["top_features"] else "-"
    column = [
        *common,
        f"{job.horizon} days",
        f"{job.fit_s:.1f} s",
        f"{job.score_s:.1f} s",
        f"{job.write_s:.1f} s",
        f"{job.scored:,}",
        f"{q['n_train']:,} ({q['positives_train']:,})",
        f"{q['n_eval']:,} ({q['positives_eval']:,})",
        f"{q['auc']:.3f}",
        f"{q['log_loss']:.3f}",
        f"{q['brier']:.3f}",
        f"{q['lift_top_decile']:.2f}",
        f"{q['base_rate']:.3f}",
        top,
    ]
    base = q.get("baseline")
    column.append(
        f"{base['auc']:.3f} / {base['log_loss']:.3f} / {base['lift_top_decile']:.2f}" if base else "-"
    )
    return column


ROW_LABELS = (
    "live profiles / events",
    "features as of NOW (one extraction; columns)",
    "horizon",
    "fit (2 extractions, labels, 2 calibrated fits, importance)",
    "score (features + trees, every profile yielded)",
    "write predicted traits (profiles.predicted)",
    "profiles scored",
    "train rows (positives)",
    "held-out rows (positives)",
    "held-out AUC",
    "held-out log loss",
    "held-out Brier",
    "lift of the top decile",
    "base rate",
    "top feature (permutation importance)",
    "P(alive) baseline AUC / log loss / lift",
)


def report_rows(report: EngineReport) -> list[list[str]]:
    columns = [job_column(report, job) for job in report.jobs]
    return [[label, *(c[i] for c in columns)] for i, label in enumerate(ROW_LABELS)]


def machine() -> str:
    load = ""
    with contextlib.suppress(OSError):
        load = ", load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}{load}"


def run_engine(kind: str, args: argparse.Namespace, shop: Shop | None) -> EngineReport:
    with scratch_database(
        kind,
        args.postgres_url,
        prefix="opencdp-bench-predictions-",
        name="opencdp_bench_predictions",
        keep=Path(args.keep) if args.keep else None,
    ) as db:
        engine = open_database(db.settings())
        try:
            if shop is None:
                load_demo(engine, args.customers, args.seed)
                return measure(engine, kind, DEMO_NOW, {"purchase": 30, "churn": 30})
            (load_sqlite if kind == "sqlite" else load_postgresql)(engine, shop)
            engine = open_database(db.settings())
            return measure(engine, kind, NOW, {"purchase": 30, "churn": 90})
        finally:
            engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument(
        "--profiles", type=int, default=TARGET_PROFILES, help="synthetic profiles (1,000,000)"
    )
    parser.add_argument("--demo", action="store_true", help="the demo shop instead of synthetic histories")
    parser.add_argument("--customers", type=int, default=6000, help="--demo: customers (6000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--keep", metavar="DIR", help="keep the database (SQLite in DIR; PostgreSQL not dropped)"
    )
    parser.add_argument("--postgres-url", default=default_postgres_url())
    parser.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    args = parser.parse_args(argv)
    logs.configure("WARNING")  # the in-process processor (--demo) logs every merge at DEBUG
    if not 1_000 <= args.profiles <= 5_000_000:
        parser.error("--profiles must be between 1,000 and 5,000,000")
    if not 1 <= args.customers <= 30_000:
        parser.error("--customers must be between 1 and 30,000")
    if args.engine != "sqlite" and not is_loopback(args.postgres_url):
        parser.error("--postgres-url must point at the loopback interface")

    console.print(f"[bold]opencdp predictions benchmark[/] — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    console.print(f"  machine: {machine()}")
    console.print(f"  python {platform.python_version()}, sqlite {sqlite3.sqlite_version}")
    console.print(f"  command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    shop = None
    if not args.demo:
        with step(f"deciding the histories of {args.profiles:,} profiles"):
            shop = generate(args.profiles, args.seed)
        kinds = np.bincount(shop.kind, minlength=len(KINDS))
        per_profile = len(shop.ts) / max(1, int((~shop.merged).sum()))
        console.print(
            f"  {len(shop.ts):,} events ({per_profile:.1f} per live profile): "
            + ", ".join(f"{name} {int(c):,}" for (_, name), c in zip(KINDS, kinds, strict=True))
        )
    engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    title_data = (
        f"demo shop, {args.customers:,} customers" if args.demo else f"{args.profiles:,} synthetic profiles"
    )
    for kind in engines:
        report = run_engine(kind, args, shop)
        columns = ["measure", *(f"{j.kind}" for j in report.jobs)]
        rows = report_rows(report)
        console.print(rich_table(f"predictions on {kind} ({title_data})", columns, rows))
        if args.markdown:
            console.print(markdown_table(columns, rows))
        if report.clv is not None:
            clv_table = clv_rows(report.clv)
            console.print(
                rich_table(f"lifetime value on {kind} ({title_data})", ["measure", "clv"], clv_table)
            )
            if args.markdown:
                console.print(markdown_table(["measure", "clv"], clv_table))
        purchase = next((j for j in report.jobs if j.kind == "purchase" and j.fitted), None)
        if kind == "sqlite" and purchase and not args.demo:
            projected = purchase.score_s * TARGET_PROFILES / max(report.live, 1)
            verdict = "met" if projected <= TARGET_SCORE_S else "MISSED"
            how = "measured" if report.live >= TARGET_PROFILES else f"projected linearly from {report.live:,}"
            console.print(
                f"target: scoring {TARGET_PROFILES:,} profiles on SQLite in < {TARGET_SCORE_S:.0f} s: "
                f"{verdict} ({projected:.1f} s, {how})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
