"""How well, and how fast, the "interests" job reads text: quality on the shipped labelled set, and
fit plus score over many texts on SQLite.

1. Quality: `opencdp.predict.textset.evaluate` on the 198 labelled shop texts, for the whole set, the
   dev half (whose errors were looked at while the retail vocabulary was written) and the held-out
   half (never looked at: the honest number), with the retail vocabulary and with plain VADER, so
   what the vocabulary adds can be seen. Sentiment: accuracy, macro-F1 and recall per class;
   interests: micro precision and recall over the 13 labelled interests. A majority-class line
   (always "negative") is the floor to beat.
2. Scale (`--texts N`, default 100,000; 0 skips it): a fresh migrated SQLite database in a temporary
   directory (or, with `--postgres-url URL`, a scratch PostgreSQL database `opencdp_bench_text` on
   that server, dropped at the end) gets N texts in `profile_events` (about 5 per profile, drawn from
   the labelled texts with a number appended so that no two are equal, spread over a year), then
   `fit` and `score` of the job are timed and the profiles scored counted.

Usage:
    .venv/bin/python benchmarks/text_quality.py [--texts 100000] [--seed 7] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from opencdp.config import Settings
from opencdp.predict import textset
from opencdp.predict.lexicon import Sentiment
from opencdp.predict.taxonomy import DEFAULT_TAXONOMY, Taxonomy
from opencdp.predict.text import JOBS
from opencdp.store.database import create_engine, migrate
from opencdp.store.schema import profile_events

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
EVENTS = {"review": ("Product Reviewed", "review_body"), "ticket": ("Ticket Created", "body")}
EVENTS["survey"] = ("Survey Answered", "answer")
SCRATCH = "opencdp_bench_text"


def quality() -> None:
    texts = textset.load()
    halves = {
        "all": texts,
        "dev": [t for t in texts if t.split == "dev"],
        "held-out": [t for t in texts if t.split == "test"],
    }
    taxonomy = Taxonomy(DEFAULT_TAXONOMY)
    analysers = {"VADER + retail": Sentiment(), "plain VADER": Sentiment(words={}, phrases={})}
    header = (
        f"{'analyser':<16} {'texts':<9} {'n':>4} {'acc':>6} {'macroF1':>8} "
        f"{'rec+':>6} {'rec0':>6} {'rec-':>6} {'int P':>6} {'int R':>6}"
    )
    print(header)
    print("-" * len(header))
    for name, analyser in analysers.items():
        for half, subset in halves.items():
            q = textset.evaluate(analyser, taxonomy, subset)
            r = q["sentiment_recall"]
            print(
                f"{name:<16} {half:<9} {q['labelled_texts']:>4} {q['sentiment_accuracy']:>6.3f} "
                f"{q['sentiment_macro_f1']:>8.3f} {r['positive']:>6.3f} {r['neutral']:>6.3f} "
                f"{r['negative']:>6.3f} {q['interest_precision']:>6.3f} {q['interest_recall']:>6.3f}"
            )
    majority = sum(1 for t in halves["held-out"] if t.sentiment == "negative") / len(halves["held-out"])
    print(f"{'always negative':<16} {'held-out':<9} {len(halves['held-out']):>4} {majority:>6.3f}")


@contextlib.contextmanager
def database(postgres_url: str | None) -> Iterator[str]:
    """A fresh database URL: SQLite in a temporary directory, or a scratch PostgreSQL database."""
    if postgres_url is None:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{SCRATCH}"'))
    try:
        yield sa.make_url(postgres_url).set(database=SCRATCH).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)'))
        admin.dispose()


def scale(n: int, seed: int, postgres_url: str | None) -> None:
    rng = random.Random(seed)
    texts = textset.load()
    with tempfile.TemporaryDirectory() as tmp, database(postgres_url) as url:
        engine = create_engine(Settings(data_dir=Path(tmp), database_url=url))
        migrate(engine)
        rows: list[dict[str, Any]] = []
        for i in range(n):
            text = rng.choice(texts)
            name, prop = EVENTS[text.source]
            rows.append(
                {
                    "event_id": i + 1,
                    "profile_id": f"p{rng.randrange(max(n // 5, 1)):08d}",
                    "type": "track",
                    "name": name,
                    "ts": NOW - timedelta(minutes=rng.randrange(365 * 24 * 60)),
                    "source_id": 1,
                    "properties": {prop: f"{text.text} ({i})", "rating": rng.randint(1, 5)},
                }
            )
        with engine.begin() as conn:
            for start in range(0, n, 10_000):
                conn.execute(profile_events.insert(), rows[start : start + 10_000])
        engine_name = "PostgreSQL" if engine.dialect.name == "postgresql" else "SQLite"
        job = JOBS["interests"]
        started = time.perf_counter()
        fitted = job.fit(engine, NOW, {})
        fit_s = time.perf_counter() - started
        started = time.perf_counter()
        scored = sum(1 for _ in job.score(engine, fitted, NOW))
        score_s = time.perf_counter() - started
        engine.dispose()
    print(f"\nscale ({engine_name}): {n:,} texts, {scored:,} profiles scored")
    print(f"  fit   {fit_s:6.1f} s  (counts texts, evaluates the labelled set)")
    print(f"  score {score_s:6.1f} s  ({n / score_s:,.0f} texts/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres-url", help="measure the scale on PostgreSQL (a scratch database there)")
    args = parser.parse_args()
    quality()
    if args.texts:
        scale(args.texts, args.seed, args.postgres_url)


if __name__ == "__main__":
    main()
