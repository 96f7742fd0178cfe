"""Reading CSV and JSON Lines files with physical line numbers, and writing the rejects file.

Files are read twice: a quick scan first (header or field names, row count for the progress bar,
encoding and CSV syntax errors), so that a file that cannot be imported fails before any row is
written; then the rows are streamed, so memory does not grow with the file.
"""

from __future__ import annotations

import csv
from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import orjson

from opencdp.imports.mapping import ImportFailed, ImportMapping
from opencdp.imports.rows import Reject

Format = Literal["csv", "jsonl"]

#: One input row: its first physical line, the record (column → raw value), the raw cells as read
#: (for the rejects file) and, for a row that cannot even be read as a record, why.
Row = tuple[int, dict[str, Any] | None, list[Any], str | None]


def detect_format(path: Path) -> Format:
    return "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv"


@dataclass(frozen=True)
class Scan:
    """What the first pass learned: the columns, where they were found and how many rows follow."""

    columns: list[str]
    rows: int
    where: str


def _csv_records(path: Path, mapping: ImportMapping) -> Generator[tuple[int, list[str]], None, None]:
    """(first physical line, cells) per non-blank CSV record; quoted fields may span lines."""
    with path.open(newline="", encoding=mapping.encoding) as handle:
        reader = csv.reader(handle, delimiter=mapping.delimiter)
        last = 0
        try:
            for cells in reader:
                start, last = last + 1, reader.line_num
                if cells and any(c.strip() for c in cells):
                    yield start, cells
        except csv.Error as exc:
            raise ImportFailed(f"{path.name}, line {reader.line_num}: not valid CSV: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ImportFailed(
                f"{path.name}, line {reader.line_num + 1}: not {mapping.encoding} text ({exc.reason}); "
                "set encoding in the mapping"
            ) from None


def _jsonl_lines(path: Path, mapping: ImportMapping) -> Generator[tuple[int, str], None, None]:
    number = 0
    try:
        with path.open(encoding=mapping.encoding) as handle:
            for number, line in enumerate(handle, 1):  # `number` names the line on a decoding error
                if line.strip():
                    yield number, line
    except UnicodeDecodeError as exc:
        raise ImportFailed(
            f"{path.name}, line {number + 1}: not {mapping.encoding} text ({exc.reason}); "
            "set encoding in the mapping"
        ) from None


def _header(path: Path, mapping: ImportMapping) -> tuple[int, list[str]]:
    with closing(_csv_records(path, mapping)) as records:
        first = next(records, None)
    if first is None:
        raise ImportFailed(f"{path.name}, line 1: the file is empty; a CSV file starts with a header line")
    line, cells = first
    header = [c.strip() for c in cells]
    for i, name in enumerate(header):
        if name and name in header[:i]:
            raise ImportFailed(f"{path.name}, line {line}: column {name!r} appears twice in the header")
    return line, header


def scan(path: Path, file_format: Format, mapping: ImportMapping) -> Scan:
    """The first pass; raises ImportFailed (with the line number) when the file cannot be read."""
    if not path.is_file():
        raise ImportFailed(f"{path}: no such file")
    if file_format == "csv":
        line, header = _header(path, mapping)
        rows = sum(1 for _ in _csv_records(path, mapping)) - 1
        return Scan(header, rows, f"{path.name}, line {line} (the header)")
    seen: dict[str, None] = {}
    rows = 0
    for _, text in _jsonl_lines(path, mapping):
        rows += 1
        try:
            record = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue  # rejected with its line number in the second pass
        if isinstance(record, dict):
            seen.update(dict.fromkeys(record))
    if not rows:
        raise ImportFailed(f"{path.name}: the file has no records")
    return Scan(list(seen), rows, path.name)


def read_rows(
    path: Path, file_format: Format, mapping: ImportMapping, columns: list[str]
) -> Generator[Row, None, None]:
    """The second pass: every data row with its first physical line number."""
    if file_format == "csv":
        with closing(_csv_records(path, mapping)) as records:
            next(records)  # the header, checked by scan()
            width = len(columns)
            for line, cells in records:
                if len(cells) != width:
                    yield line, None, cells, f"has {len(cells)} fields, the header has {width}"
                else:
                    yield line, dict(zip(columns, cells, strict=True)), cells, None
        return
    for line, text in _jsonl_lines(path, mapping):
        try:
            record = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            yield line, None, [], f"not valid JSON ({exc})"
            continue
        if not isinstance(record, dict):
            yield line, None, [], f"must be a JSON object, got {type(record).__name__}"
            continue
        yield line, record, [record.get(c) for c in columns], None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


class RejectsFile:
    """`line_number, reason, <the original columns>`: fix the rows there and import that file.

    Written for every completed import (only the header when nothing was rejected), so the file
    next to the input always belongs to the last run."""

    def __init__(self, path: Path, columns: list[str], delimiter: str) -> None:
        self.path = path
        self.columns = columns
        self.delimiter = delimiter
        self.count = 0
        self._handle: TextIO | None = None
        self._writer: Any = None

    def _open(self) -> None:
        self._handle = self.path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._handle, delimiter=self.delimiter)
        self._writer.writerow(["line_number", "reason", *self.columns])

    def write(self, reject: Reject, cells: list[Any]) -> None:
        if self._handle is None:
            self._open()
        self._writer.writerow([reject.position, reject.reason, *(_cell(c) for c in cells)])
        self.count += 1

    def finish(self) -> None:
        """The import completed: make sure the file exists, even with no rejected row."""
        if self._handle is None:
            self._open()
        self.close()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
