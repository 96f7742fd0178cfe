"""Held-out quality of every prediction model, on the demo shop and on CDNOW.

Runs the models as `opencdp predict run` does (fit with the time split, store, score, write) on two
datasets, each in a fresh SQLite database, and prints one table of held-out quality:

- **CDNOW** (2,357 customers, 1997-01 to 1998-06; the sample read from the `lifetimes` wheel on
  PyPI, downloaded once into ~/.cache/opencdp-tests, never committed), imported with
  `opencdp import` as orders. Lifetime value is fitted on the paper's 39 calibration weeks
  (to 1997-09-30) and checked on its 39 hold-out weeks: P(alive) as a churn score, churn = no
  purchase in the hold-out weeks. The churn and purchase models need a training window before
  their evaluation window, so they use 26-week horizons: trained on 1997-07-01 → 1997-12-30,
  evaluated on 1997-12-30 → 1998-06-30, churn compared with 1 - P(alive) of a BG/NBD fit at
  1997-12-30 on the same customers.
- **The demo shop** (`opencdp demo`'s generator, `--customers`, `--days` of history up to a fixed
  now) written into the log and processed by the real processor: lifetime value, purchase (30
  days), churn (`--days`/3), a custom goal (`Email Link Clicked` within 30 days), channels,
  advocacy and interests.

Interests are also measured on the shipped labelled texts (benchmarks/text_quality.py has the
details). Usage:
    .venv/bin/python benchmarks/prediction_quality.py [--customers 4000] [--days 180] [--markdown]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.predict.cdnow: the data

from harness.report import markdown_table, rich_table
from opencdp import logs
from opencdp.config import Settings
from opencdp.predict import runner, store
from opencdp.predict.model import TooThin
from opencdp.process.processor import Processor
from opencdp.store.database import open_database

console = Console(width=200)
DEMO_NOW = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
COLUMNS = ["data", "model", "held-out window", "eval rows (positives)", "AUC", "log loss", "lift top 10 %",
           "1 - P(alive): AUC / log loss / lift", "beats P(alive)", "fit + score + write"]  # fmt: skip


def _engine(directory: Path) -> Any:
    return open_database(Settings(data_dir=directory, database_url=f"sqlite:///{directory / 'opencdp.db'}"))


def _run(engine: Any, name: str, until: datetime, options: dict[str, Any] | None = None) -> tuple[Any, float]:
    start = time.perf_counter()
    try:
        record = runner.fit(engine, name, until, options or {})
    except TooThin as exc:
        console.print(f"  [yellow]{name} refused:[/] {exc}")
        return None, time.perf_counter() - start
    runner.score(engine, name, until)
    return record, time.perf_counter() - start


def _propensity_row(data: str, record: Any, seconds: float) -> list[str]:
    if record is None:
        return [data, "?", "refused", *["-"] * 7]
    q, w = record.quality, record.window
    base = q.get("baseline")
    return [
        data,
        f"{record.name} ({record.options.get('horizon_days')} days)",
        f"{w.get('holdout_from', '')[:10]} → {w.get('holdout_until', '')[:10]}",
        f"{q['n_eval']:,} ({q['positives_eval']:,})",
        f"{q['auc']:.3f}",
        f"{q['log_loss']:.3f}",
        f"{q['lift_top_decile']:.2f}",
        f"{base['auc']:.3f} / {base['log_loss']:.3f} / {base['lift_top_decile']:.2f}" if base else "-",
        ("yes" if q.get("beats_baseline") else "NO") if base else "-",
        f"{seconds:.1f} s",
    ]


def _clv_row(data: str, record: Any, seconds: float, notes: list[str]) -> list[str]:
    """BG/NBD's churn score is P(no purchase in the hold-out); P(alive) alone is the baseline
    (every one-time buyer has P(alive) = 1, so it ranks them poorly)."""
    if record is None:
        return [data, "clv", "refused", *["-"] * 7]
    q = record.quality
    churn = q.get("churn")
    if not churn:
        return [data, "clv", q.get("skipped", "-"), *["-"] * 7]
    purchases = q["purchases"]
    notes.append(
        f"{data}, clv: repeat purchases in the hold-out predicted {purchases['predicted_total']:,.0f}, "
        f"actual {purchases['actual_total']:,.0f} (mean absolute error per customer "
        f"{purchases['mean_absolute_error']:.2f}, correlation {purchases['correlation']:.2f})"
    )
    return [
        data,
        f"clv: P(no purchase) ({q['holdout_days']} days)",
        f"{q['holdout_from']} → {q['holdout_until']}",
        f"{q['customers']:,} ({round(churn['churned_share'] * q['customers']):,})",
        f"{churn['auc']:.3f}",
        f"{churn['log_loss']:.3f}",
        f"{churn['top_decile_lift']:.2f}",
        f"{churn['auc_p_alive']:.3f} / - / {churn['top_decile_lift_p_alive']:.2f}",
        "yes" if churn["auc"] > churn["auc_p_alive"] else "NO",
        f"{seconds:.1f} s",
    ]


def cdnow(rows: list[list[str]], notes: list[str]) -> None:
    from tests.predict import cdnow as data

    from opencdp.imports.cli import import_command

    with tempfile.TemporaryDirectory(prefix="opencdp-quality-cdnow-") as tmp:
        directory = Path(tmp)
        csv, mapping = directory / "cdnow.csv", directory / "cdnow.toml"
        data.write_csv(csv)
        mapping.write_text(data.MAPPING_TOML, encoding="utf-8")
        env = {"OPENCDP_DATABASE_URL": f"sqlite:///{directory / 'opencdp.db'}", "OPENCDP_DATA_DIR": tmp}
        args = [str(csv), "--source", "cdnow", "--mapping", str(mapping), "--no-progress"]
        result = CliRunner().invoke(import_command, args, env=env)
        if result.exit_code != 0:
            raise SystemExit(f"CDNOW import failed: {result.output}")
        engine = _engine(directory)
        Processor(engine).run_until_caught_up()
        end = datetime(1998, 6, 30, 23, 59, 59, tzinfo=UTC)
        record, seconds = _run(
            engine, "clv", end, {"unit": "weeks", "holdout_days": 273, "horizon_days": 273}
        )
        rows.append(_clv_row("CDNOW", record, seconds, notes))
        for name in ("churn", "purchase"):
            record, seconds = _run(engine, name, end, {"horizon_days": 182})
            rows.append(_propensity_row("CDNOW", record, seconds))
        engine.dispose()


def demo(rows: list[list[str]], notes: list[str], customers: int, days: int) -> None:
    from opencdp.access.keys import create_source
    from opencdp.collect.messages import Envelope, Limits, normalise
    from opencdp.demo.runner import SOURCES
    from opencdp.demo.shop import ShopGenerator
    from opencdp.log.append import LogAppender

    label = f"demo shop ({customers:,} customers, {days} days)"
    with tempfile.TemporaryDirectory(prefix="opencdp-quality-demo-") as tmp:
        engine = _engine(Path(tmp))
        sources = {name: create_source(engine, f"demo-{name}")[0].id for name in SOURCES}
        envelope, limits = Envelope(received_at=DEMO_NOW), Limits()
        shop = ShopGenerator(customers=customers, seed=7, days=days, now=DEMO_NOW)
        logged = [normalise(e.message, envelope, sources[e.source], limits) for e in shop.events()]
        appender = LogAppender.for_engine(engine)
        for start in range(0, len(logged), 5_000):
            appender.append_committed(engine, logged[start : start + 5_000])
        console.print(f"  demo shop: {len(logged):,} events; processing")
        Processor(engine).run_until_caught_up()
        runner.ensure_builtin(engine)
        record, seconds = _run(engine, "clv", DEMO_NOW, {"holdout_days": days // 3})
        rows.append(_clv_row(label, record, seconds, notes))
        for name, options in (("purchase", {"horizon_days": 30}), ("churn", {"horizon_days": days // 3})):
            record, seconds = _run(engine, name, DEMO_NOW, options)
            rows.append(_propensity_row(label, record, seconds))
        runner.define_goal(engine, "Email Link Clicked", 30)
        record, seconds = _run(engine, "goal_email_link_clicked_30d", DEMO_NOW)
        rows.append(_propensity_row(label, record, seconds))
        for name in ("channels", "advocacy", "interests"):
            record, seconds = _run(engine, name, DEMO_NOW)
            if record is not None:
                with engine.connect() as conn:
                    scored = store.get_model(conn, name).scored_count
                shown = {k: v for k, v in record.quality.items() if not isinstance(v, dict | list)}
                notes.append(f"{label}, {name}: {scored:,} profiles scored in {seconds:.1f} s; {shown}")
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--customers", type=int, default=4000, help="demo shop customers (4000)")
    parser.add_argument("--days", type=int, default=180, help="demo shop days of history (180)")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args(argv)
    if args.days < 60:
        parser.error("--days must be 60 or more (churn needs two windows of days/3)")
    logs.configure("WARNING")
    console.print(f"[bold]opencdp prediction quality[/] — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    console.print(f"  command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    rows: list[list[str]] = []
    notes: list[str] = []
    started = time.perf_counter()
    cdnow(rows, notes)
    demo(rows, notes, args.customers, args.days)
    console.print(rich_table("held-out quality of every model", COLUMNS, rows))
    for note in notes:
        console.print(f"  {note}")
    if args.markdown:
        console.print(markdown_table(COLUMNS, rows))
    console.print(f"  total {timedelta(seconds=round(time.perf_counter() - started))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
