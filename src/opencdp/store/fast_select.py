"""Fixed SELECTs run on the DBAPI cursor of a checked-out connection.

For the decide API's handful of indexed reads per decision, SQLAlchemy's per-execution work (an
execution context, a result object and its row processing) cost more than the database's lookups
themselves. A `FastSelect` is compiled once from an ordinary Core statement, so the SQL is still
written in one place for both engines; each run binds the parameters through the column types'
bind processors and converts each row through their result processors, as SQLAlchemy would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

Processor = Callable[[Any], Any] | None


class FastSelect:
    """One compiled SELECT: `rows(conn, params)` gives its rows as tuples of Python values."""

    def __init__(self, statement: sa.Select[Any], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        expanding = sorted(name for name, bind in compiled.binds.items() if bind.expanding)
        if expanding:
            raise ValueError(
                f"an IN list is rendered per execution ({', '.join(expanding)}): "
                "write it as OR-ed equalities for a FastSelect"
            )
        self.sql = str(compiled)
        self.compiled = compiled
        self.positional = bool(compiled.positional)
        self.order: list[str] = list(compiled.positiontup or [])
        self.binds: dict[str, Processor] = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        self.results: list[Processor] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.selected_columns
        ]

    def rows(self, conn: sa.Connection, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        values = self.compiled.construct_params(dict(params or {}))
        for name, process in self.binds.items():
            if process is not None and name in values:
                values[name] = process(values[name])
        args: Any = [values[name] for name in self.order] if self.positional else values
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self.sql, args)
            raw = cursor.fetchall()
        finally:
            cursor.close()
        results = self.results
        if not any(results):
            return [tuple(row) for row in raw]
        return [tuple(v if p is None else p(v) for p, v in zip(results, row, strict=True)) for row in raw]

    def first(self, conn: sa.Connection, params: Mapping[str, Any] | None = None) -> tuple[Any, ...] | None:
        found = self.rows(conn, params)
        return found[0] if found else None
