"""`opencdp weather import FILE.csv` and `opencdp weather list`: the weather decisions can use."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from opencdp.cli.common import _engine

REQUIRED = ("region", "day", "condition")


class _BadLine(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")


def _rows(handle: Any) -> Iterator[dict[str, Any]]:
    from opencdp.personalise.weather import COLUMNS, WeatherRowError, parse_row

    reader = csv.DictReader(handle)
    header = [(h or "").strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise _BadLine(1, f"the header lacks {', '.join(missing)} (columns: {', '.join(COLUMNS)})")
    reader.fieldnames = header
    for raw in reader:
        if None in raw:  # more cells than the header has columns
            raise _BadLine(
                reader.line_num, f"{len(header) + len(raw[None])} cells, the header has {len(header)}"
            )
        try:
            yield parse_row(raw)
        except WeatherRowError as exc:
            raise _BadLine(reader.line_num, str(exc)) from None


@click.group("weather")
def weather_group() -> None:
    """Weather by region and day (imported), for decisions' context conditions."""


@weather_group.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--no-progress", is_flag=True, help="No progress bar (e.g. in cron jobs)")
def import_weather(file: Path, no_progress: bool) -> None:
    """Import a CSV with the columns region, day (YYYY-MM-DD), condition and temperature_c
    (optional). A region and day already stored is replaced. A bad row stops the import with its
    line number, and nothing of the file is stored."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from opencdp.personalise.weather import store

    engine = _engine()
    began = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    try:
        with (
            Progress(*columns, console=Console(stderr=True), disable=no_progress) as progress,
            progress.open(file, "r", encoding="utf-8-sig", newline="", description="importing") as handle,
            engine.begin() as conn,
        ):
            count = store(conn, _rows(handle))
    except _BadLine as exc:
        raise click.ClickException(f"{file.name}: {exc}; nothing was imported") from None
    except UnicodeDecodeError:
        raise click.ClickException(f"{file.name}: not UTF-8 text; nothing was imported") from None
    except csv.Error as exc:
        raise click.ClickException(f"{file.name}: {exc}; nothing was imported") from None
    finally:
        engine.dispose()
    click.echo(f"imported {count:,} weather rows from {file.name} in {time.perf_counter() - began:.1f} s")


@weather_group.command("list")
@click.option("--region", help="Only this region (e.g. DE or DE-BE)")
@click.option("--day", help="Only this day (YYYY-MM-DD)")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
def list_weather(region: str | None, day: str | None, limit: int) -> None:
    """Stored weather, by region and newest day first (tab-separated)."""
    from opencdp.personalise.weather import listing

    engine = _engine()
    try:
        with engine.connect() as conn:
            rows = listing(conn, region, day, limit)
    finally:
        engine.dispose()
    if not rows:
        click.echo("no weather stored" + (f" for {region}" if region else ""), err=True)
    for r in rows:
        temperature = "" if r["temperature_c"] is None else f"{r['temperature_c']:g}"
        click.echo(f"{r['region']}\t{r['day']}\t{r['condition']}\t{temperature}")
