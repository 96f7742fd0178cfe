"""`opencdp status`: what `/api/health` and `/metrics` say, read from the database, for an operator.

The processing rate comes from watching the checkpoint move for `--sample` seconds. The checkpoint
is the one fact every processor writes, wherever it runs, and nothing else records when events
were processed; storing a history would add a write to every chunk for the sake of this command.
A two-second look costs the operator two seconds and is exact about "now"; `--sample 0` skips it.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click
import orjson
import sqlalchemy as sa

from opencdp.cli.common import _engine, _settings


def gather(engine: sa.Engine, settings: Any, sample_seconds: float) -> dict[str, Any]:
    from opencdp import health
    from opencdp.process.processor import read_checkpoint
    from opencdp.store.schema import events

    report = health.check_store(
        health.Report(engine.dialect.name),
        engine,
        settings,
        "; is `opencdp serve` (processing in the server) or an `opencdp worker` running?",
    )
    out: dict[str, Any] = {
        **report.as_dict(),
        "database_url": engine.url.render_as_string(hide_password=True),
        "events": None,  # {"count", "last_id"} when the database answers
    }
    if not report.processing:  # the database cannot be read
        return out
    processing = out["processing"]
    with engine.connect() as conn:
        count, last_id = conn.execute(sa.select(sa.func.count(), sa.func.max(events.c.id))).one()
    out["events"] = {"count": int(count), "last_id": int(last_id or 0)}
    processing["events_per_second"] = None
    processing["sample_seconds"] = sample_seconds
    if sample_seconds > 0:
        rate = health.Throughput(min_span=0.0)
        rate.sample(processing["checkpoint"])
        time.sleep(sample_seconds)
        with engine.connect() as conn:
            processing["events_per_second"] = rate.sample(read_checkpoint(conn))
    per_second = processing["events_per_second"]
    waiting = processing["events_waiting"]
    processing["catch_up_seconds"] = (
        0.0 if not waiting else round(waiting / per_second, 1) if per_second else None
    )
    return out


def _table(status: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    colour = "green" if status["status"] == "ok" else "red"
    console.print(f"[bold {colour}]{status['status']}[/]  {status['database_url']}")
    for reason in status["reasons"]:
        console.print(f"  [{colour}]•[/] {reason}")
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    p, log = status["processing"], status["events"]
    if log is not None:
        table.add_row("events in the log", f"{log['count']:,}")
        table.add_row("last event id", f"{log['last_id']:,}")
        table.add_row("processor checkpoint", f"{p['checkpoint']:,}")
        table.add_row("lag", f"{p['events_waiting']:,} events, {p['lag_seconds']:,.1f} s")
        if p.get("profiles_waiting"):
            table.add_row("profiles waiting for a refresh", f"{p['profiles_waiting']:,}")
        if p["sample_seconds"] > 0:
            rate = p["events_per_second"]
            table.add_row(f"processing rate ({p['sample_seconds']:g} s sample)", f"{rate:,.1f} events/s")
            catch_up = p["catch_up_seconds"]
            table.add_row(
                "caught up in",
                "stalled" if catch_up is None else "now" if catch_up == 0 else f"~{catch_up:,.0f} s",
            )
    table.add_row("failed definitions", str(len(status["failed_definitions"])))
    console.print(table)
    for failed in status["failed_definitions"]:
        console.print(f"  {failed['kind']} {failed['name']!r} since {failed['failed_at']:%Y-%m-%d %H:%M:%S}")


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object for machines instead of a table")
@click.option(
    "--sample",
    type=click.FloatRange(min=0, max=60),
    default=2.0,
    show_default=True,
    help="Watch the checkpoint this many seconds for the processing rate (0: skip)",
)
def status_command(as_json: bool, sample: float) -> None:
    """Health, event log, processor checkpoint and lag, processing rate and failed definitions, from
    the database (OPENCDP_DATABASE_URL). Exit code 1 when degraded, as /api/health's status says."""
    status = gather(_engine(), _settings(), sample)
    if as_json:
        sys.stdout.write(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _table(status)
    if status["status"] != "ok":
        sys.exit(1)
