"""`opencdp import FILE`: the CRM/offline import from the command line.

Registered in `opencdp.cli` with `main.add_command(import_command, "import")`. This module does
not import `opencdp.cli` (that would be circular); it reads the same settings itself.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.table import Table

from opencdp.config import ConfigError, Settings
from opencdp.imports.mapping import ImportFailed, load_mapping
from opencdp.imports.runner import ImportSummary, run_import


def summary_table(summary: ImportSummary) -> Table:
    """The numbers an operator checks after an import, one per line."""
    table = Table(box=box.SIMPLE, show_header=False, pad_edge=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in (
        ("rows read", summary.rows_read),
        ("accepted", summary.accepted),
        ("rejected", summary.rejected),
        ("already imported", summary.duplicates),
        ("events written", summary.events_written),
        ("profiles created", summary.profiles_created),
        ("profiles merged", summary.profiles_merged),
    ):
        table.add_row(label, f"{value:,}")
    if summary.suppressed:
        table.add_row("erased people (not stored)", f"{summary.suppressed:,}")
    return table


@click.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--source", "source_name", required=True, help="Source name (created if it does not exist)")
@click.option(
    "--mapping",
    "mapping_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Mapping file (.toml or .json), see docs/import.md",
)
@click.option(
    "--rejects", type=click.Path(path_type=Path, dir_okay=False), help="[default: FILE.rejected.csv]"
)
@click.option(
    "--format", "file_format", type=click.Choice(["csv", "jsonl"]), help="[default: from the file extension]"
)
@click.option("--no-progress", is_flag=True, help="No progress bar (e.g. in cron jobs)")
def import_command(
    file: Path,
    source_name: str,
    mapping_path: Path,
    rejects: Path | None,
    file_format: str | None,
    no_progress: bool,
) -> None:
    """Import a CRM or offline file (CSV or JSON Lines) as events: contacts become identify events,
    transactions track events. Re-importing a file adds nothing twice; rejected rows are written
    with their line number and reason. Exit code 0 when the import ran (even with rejected rows)."""
    from opencdp.store.database import open_database

    try:
        settings = Settings.from_env()
        mapping = load_mapping(mapping_path)
        engine = open_database(settings)
    except (ConfigError, ImportFailed) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        summary = run_import(
            engine,
            file,
            source_name,
            mapping,
            rejects,
            progress=not no_progress,
            file_format="jsonl" if file_format == "jsonl" else "csv" if file_format else None,
            echo=lambda text: click.echo(text, err=True),
        )
    except ImportFailed as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{exc.filename or file}: {exc.strerror or exc}") from None
    finally:
        engine.dispose()
    click.echo(
        f"imported {file.name} into source {summary.source!r} ({summary.kind}) in {summary.seconds:.1f} s"
    )
    if summary.ignored_columns:
        click.echo(f"ignored columns (not in the mapping): {', '.join(summary.ignored_columns)}")
    Console().print(summary_table(summary))
    if summary.rejected and summary.rejects_path:
        click.echo(f"rejected rows (line number, reason, the row): {summary.rejects_path}")
    if summary.duplicates:
        click.echo("already imported: rows whose key was imported into this source before (skipped)")
