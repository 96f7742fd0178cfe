"""Running an import: rows → events in batches → processed into profiles → a summary.

Events are appended directly (not through the collector's writer thread) through the same log
appender — idempotent, serialised, and honouring the suppression list of erased people — in
batches of `batch_size` per transaction; `RETURNING` tells which rows were new, so re-imported
rows are counted as duplicates exactly. The import then processes what it
wrote, so the summary can say how many profiles were created and merged.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from opencdp import metrics
from opencdp.access.keys import AccessError, create_source
from opencdp.collect.messages import Limits
from opencdp.imports.files import Format, RejectsFile, Row, detect_format, read_rows, scan
from opencdp.imports.mapping import ImportFailed, ImportMapping, MappingError, load_mapping
from opencdp.imports.rows import Reject, RowConverter, check_columns
from opencdp.log.append import LogAppender
from opencdp.process.processor import Processor
from opencdp.store.schema import profiles, sources

BATCH_SIZE = 1000
#: Rows per API call: the call answers after processing, so it must stay short.
MAX_API_ROWS = 10_000


@dataclass
class ImportSummary:
    """What an import did. rows_read = accepted + rejected;
    accepted = events_written + duplicates + suppressed (rows of erased people, never stored)."""

    source: str
    kind: str
    source_created: bool = False
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    suppressed: int = 0
    events_written: int = 0
    profiles_created: int = 0
    profiles_merged: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    rejects_path: Path | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rejects_path"] = str(self.rejects_path) if self.rejects_path else None
        return out


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


def ensure_source(engine: sa.Engine, name: str) -> tuple[int, bool]:
    """The source's id, creating the source if it does not exist yet; (id, created)."""
    name = name.strip()
    for _ in range(2):
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(sources.c.id, sources.c.enabled).where(sources.c.name == name)
            ).first()
        if row is not None:
            if not row.enabled:
                raise ImportFailed(f"source {name!r} is disabled (opencdp sources enable {name})")
            return int(row.id), False
        try:
            source, _write_key = create_source(engine, name)
        except AccessError as exc:
            if "already exists" in str(exc):
                continue  # created concurrently: look it up again
            raise ImportFailed(str(exc)) from None
        return source.id, True
    raise ImportFailed(f"source {name!r} could not be created")


def profile_counts(engine: sa.Engine) -> tuple[int, int]:
    """(profiles ever created, profiles merged into another): live = first - second."""
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(profiles)).scalar_one()
        merged = conn.execute(
            sa.select(sa.func.count()).select_from(profiles).where(profiles.c.merged_into.is_not(None))
        ).scalar_one()
    return int(total), int(merged)


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress]:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), disable=not enabled) as progress:
        yield progress


def _process(processor: Processor, progress: Progress, description: str) -> None:
    """Process the log up to its newest event now (not what keeps arriving meanwhile: under live
    traffic that would never end), with a progress bar."""
    start, target = processor.checkpoint(), processor.newest_event_id()
    if target <= start:
        return
    task = progress.add_task(description, total=target - start)
    while (done := processor.checkpoint()) < target and processor.run_once():
        progress.update(task, completed=min(done, target) - start)
    processor.refresh_all_queued()
    progress.update(task, completed=target - start)


@dataclass
class _Job:
    """Everything one import run needs besides its rows."""

    engine: sa.Engine
    source_name: str
    mapping: ImportMapping
    columns: list[str]
    where: str
    processor: Processor
    limits: Limits | None
    echo: Callable[[str], None]
    position_label: str = "line"
    origin: dict[str, Any] = field(default_factory=dict)
    batch_size: int = BATCH_SIZE


def _run(
    job: _Job,
    rows: Iterable[Row],
    total: int,
    on_reject: Callable[[Reject, list[Any]], None],
    progress: Progress,
    description: str,
) -> ImportSummary:
    """Check, create the source, write the rows in batches, process them; the shared core."""
    started = time.monotonic()
    problems = job.mapping.problems()
    if problems:
        raise MappingError(problems)
    check_columns(job.mapping, job.columns, job.where)  # before the source is created
    source_id, created = ensure_source(job.engine, job.source_name)
    summary = ImportSummary(job.source_name, job.mapping.kind, created)
    if created:
        job.echo(f"source {job.source_name!r} did not exist: created it (id {source_id})")
    converter = RowConverter(
        job.mapping,
        job.columns,
        source_id,
        job.source_name,
        datetime.now(UTC),
        job.processor.rules,
        job.limits,
        job.where,
        job.position_label,
        job.origin,
    )
    summary.ignored_columns = converter.ignored
    _process(job.processor, progress, "processing earlier events")  # so the counts below are ours
    before = profile_counts(job.engine)

    appender = LogAppender.for_engine(job.engine, job.processor.rules)
    task = progress.add_task(description, total=total)
    batch: list[dict[str, Any]] = []
    handled = 0

    def flush() -> None:
        nonlocal handled
        if batch:
            appended = appender.append_committed(job.engine, batch, count=True)
            written = appended.written or 0
            summary.events_written += written
            summary.suppressed += appended.suppressed
            summary.duplicates += len(batch) - written - appended.suppressed
            metrics.record_accepted(job.source_name, len(batch) - appended.suppressed)
            metrics.record_rejected(job.source_name, "suppressed", appended.suppressed)
            batch.clear()
        progress.advance(task, handled)
        handled = 0

    for position, record, cells, problem in rows:
        summary.rows_read += 1
        handled += 1
        result = (
            Reject(position, problem or "unreadable")
            if record is None
            else converter.convert(record, position)
        )
        if isinstance(result, Reject):
            summary.rejected += 1
            metrics.record_rejected(job.source_name, "invalid")
            on_reject(result, cells)
            continue
        summary.accepted += 1
        batch.append(result)
        if len(batch) >= job.batch_size:
            flush()
    flush()

    _process(job.processor, progress, "resolving identities")
    after = profile_counts(job.engine)
    summary.profiles_created = after[0] - before[0]
    summary.profiles_merged = after[1] - before[1]
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


def run_import(
    engine: sa.Engine,
    path: str | Path,
    source_name: str,
    mapping: ImportMapping | str | Path,
    rejects_path: str | Path | None = None,
    progress: bool = True,
    *,
    file_format: Format | None = None,
    processor: Processor | None = None,
    limits: Limits | None = None,
    echo: Callable[[str], None] = _stderr,
    batch_size: int = BATCH_SIZE,
) -> ImportSummary:
    """Import a CSV or JSON Lines file into the event log of `source_name` and process it.

    Raises ImportFailed (or its MappingError) on a fatal problem; nothing is written then unless
    the file changed while it was read. Rejected rows go to `rejects_path`
    (default `<file>.rejected.csv`) with their line number and reason.
    """
    started = time.monotonic()
    path = Path(path)
    if not isinstance(mapping, ImportMapping):
        mapping = load_mapping(mapping)
    if problems := mapping.problems():
        raise MappingError(problems)
    file_format = file_format or detect_format(path)
    found = scan(path, file_format, mapping)
    rejects = Path(rejects_path) if rejects_path else path.with_name(path.name + ".rejected.csv")
    job = _Job(
        engine,
        source_name,
        mapping,
        found.columns,
        found.where,
        processor or Processor(engine),
        limits,
        echo,
        origin={"file": path.name},
        batch_size=batch_size,
    )
    writer = RejectsFile(rejects, found.columns, mapping.delimiter if file_format == "csv" else ",")
    try:
        with (
            _progress(progress) as bar,
            closing(read_rows(path, file_format, mapping, found.columns)) as rows,
        ):
            summary = _run(job, rows, found.rows, writer.write, bar, f"importing {path.name}")
        writer.finish()
    finally:
        writer.close()
    summary.rejects_path = rejects
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


def import_rows(
    engine: sa.Engine,
    rows: list[dict[str, Any]],
    source_name: str,
    mapping: ImportMapping,
    *,
    processor: Processor | None = None,
    limits: Limits | None = None,
    echo: Callable[[str], None] = lambda _text: None,
) -> tuple[ImportSummary, list[Reject]]:
    """The API's import: rows are column → value objects; positions are 0-based row indexes."""
    columns = list(dict.fromkeys(name for row in rows for name in row))
    rejected: list[Reject] = []
    job = _Job(
        engine,
        source_name,
        mapping,
        columns,
        "the rows",
        processor or Processor(engine),
        limits,
        echo,
        position_label="row",
        origin={"api": True},
    )
    numbered: list[Row] = [(i, row, [], None) for i, row in enumerate(rows)]
    with _progress(False) as bar:
        summary = _run(
            job, numbered, len(rows), lambda reject, _cells: rejected.append(reject), bar, "import"
        )
    return summary, rejected
