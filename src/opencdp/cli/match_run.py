"""`opencdp match run`: probabilistic matching from the command line (see docs/matching.md)."""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path
from typing import Any

import click
import orjson
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.table import Table

from opencdp.cli.common import _engine


def load_config(path: Path) -> Any:
    """A matching configuration from a JSON or TOML file; a clear error naming the field."""
    from opencdp.match.config import MatchConfig

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"{path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise click.ClickException(f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}") from None
    try:
        return MatchConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        where = ".".join(str(p) for p in first["loc"])
        raise click.ClickException(f"{path}: {where + ': ' if where else ''}{message}") from None


class _Bars:
    """Progress on stderr: a bar while profiles are read and merges written, a line per step."""

    def __init__(self, enabled: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(stderr=True)
        self.enabled = enabled and console.is_terminal
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not self.enabled,
        )
        self.task: Any = None

    def start(self, label: str, total: int | None) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(label, total=total)

    def advance(self, n: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)

    def step(self, text: str) -> None:
        if self.enabled:
            self.progress.console.print(f"  {text}", style="dim")


def _summary_table(summary: Any, before: int, after: int | None) -> Table:
    """The numbers an operator checks after a run, one per line."""
    table = Table(box=box.SIMPLE, show_header=False, pad_edge=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("profiles compared", f"{summary.profiles:,}")
    for rule in summary.blocking:
        table.add_row(f"  candidate pairs: {rule['rule']}", f"{rule['pairs']:,}")
    auto, review = summary.thresholds["auto_merge"], summary.thresholds["review"]
    would = "would be " if summary.dry_run or summary.cancelled else ""
    rows = (
        (f"pairs scored ≥ {review:g}", summary.scored_pairs),
        (f"{would}merged (≥ {auto:g})", summary.auto_merges),
        ("joined through other merges", summary.redundant),
        (f"{would}queued for review", summary.queued_for_review),
        ("decided before (skipped)", summary.decided_before),
        ("split by an operator (skipped)", summary.rejected_by_operator),
        ("refused by merge protection", summary.merge_protection),
    )
    for label, value in rows:
        table.add_row(label, f"{value:,}")
    if after is not None:
        table.add_row("profiles", f"{before:,} → {after:,}")
    return table


def _print_summary(out: Console, summary: Any, before: int, after: int | None) -> None:
    out.print(f"fields compared: {', '.join(summary.fields)}", highlight=False)
    if summary.fields_left_out:
        left = ", ".join(f"{k} ({v:.1%})" for k, v in summary.fields_left_out.items())
        out.print(f"fields left out (on too few profiles): {left}", highlight=False)
    if summary.fields_with_defaults:
        fields = ", ".join(summary.fields_with_defaults)
        out.print(
            f"fields with levels too rare here to estimate (scored with default parameters): {fields}",
            highlight=False,
        )
    out.print(_summary_table(summary, before, after))
    times = ", ".join(f"{k} {v:.1f} s" for k, v in summary.seconds.items())
    out.print(f"time: {times}; peak memory {summary.peak_memory_mb:,.0f} MB", highlight=False)
    if summary.queued_for_review and not summary.dry_run and not summary.cancelled:
        out.print("review the queue: opencdp match review, or the dashboard's Matching page", highlight=False)


def _live_profiles(engine: Any) -> int:
    import sqlalchemy as sa

    from opencdp.store.schema import profiles

    with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(profiles).where(profiles.c.merged_into.is_(None))
        return int(conn.execute(query).scalar_one())


@click.command("run")
@click.option("--model", "name", default="people", show_default=True, help="The matching job's name")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Matching configuration (.json or .toml; see docs/matching.md) [default: the stored one, "
    "or the defaults for people]",
)
@click.option("--retrain", is_flag=True, help="Estimate the model again even if one is stored")
@click.option("--dry-run", is_flag=True, help="Print what would merge; write nothing")
@click.option("--yes", "-y", is_flag=True, help="Merge without asking")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON")
@click.option("--no-progress", is_flag=True, help="No progress bar (e.g. in cron jobs)")
def run_command(
    name: str,
    config_path: Path | None,
    retrain: bool,
    dry_run: bool,
    yes: bool,
    as_json: bool,
    no_progress: bool,
) -> None:
    """Find profiles of the same person that share no identifier (names, address, date of birth …),
    merge pairs above the auto-merge threshold and queue those above the review threshold for
    review (`opencdp match review`). Trains the model on the first run (or with --retrain) and
    reuses it after. Merges go through the identity graph (rule `probabilistic`) and can be undone
    with `opencdp profiles unmerge`."""
    from opencdp.match.model import ModelError
    from opencdp.match.runner import Hooks, MatchError, Summary, run
    from opencdp.process.processor import Processor

    config = load_config(config_path) if config_path else None
    engine = _engine()
    bars = _Bars(not no_progress and not as_json)
    before = _live_profiles(engine)

    def confirm(summary: Summary) -> bool:
        if yes:
            return True
        bars.progress.stop()
        question = f"Merge {summary.auto_merges:,} pairs and queue {summary.queued_for_review:,} for review?"
        try:
            answer = click.confirm(question, default=False, err=True)
        except click.Abort:
            answer = False
        bars.progress.start()
        return answer

    started = time.perf_counter()
    try:
        with bars.progress:
            summary = run(
                engine,
                name,
                config,
                retrain=retrain,
                dry_run=dry_run,
                hooks=Hooks(bars.start, bars.advance, bars.step),
                confirm=confirm,
            )
    except (ModelError, MatchError) as exc:
        raise click.ClickException(str(exc)) from None
    after: int | None = None
    if not dry_run and not summary.cancelled and summary.auto_merges:
        processing = time.perf_counter()
        processor = Processor(engine)
        processor.run_through(processor.newest_event_id())
        summary.seconds["processing"] = round(time.perf_counter() - processing, 2)
    if not dry_run and not summary.cancelled:
        after = _live_profiles(engine)
    elapsed = time.perf_counter() - started
    if as_json:
        click.echo(orjson.dumps({**summary.as_dict(), "profiles_before": before, "profiles_after": after}))
        return
    out = Console()
    if summary.dry_run:
        for pair in summary.would_merge:
            out.print(f"would merge {pair['left']} + {pair['right']}: {pair['explanation']}", highlight=False)
        out.print(f"dry run of model '{name}' in {elapsed:.1f} s: nothing was written", highlight=False)
    elif summary.cancelled:
        out.print("nothing merged (pass --yes to merge without asking)", highlight=False)
    else:
        trained = "trained now" if summary.trained else "stored model"
        out.print(f"matched profiles with model '{name}' ({trained}) in {elapsed:.1f} s", highlight=False)
    _print_summary(out, summary, before, after)
