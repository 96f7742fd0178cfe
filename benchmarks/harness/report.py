"""Percentiles and result tables, for the console (rich) and for BENCHMARKS.md (Markdown)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table


def wide_console(width: int = 200) -> Console:
    """Wide enough for a results table when stdout is a pipe (rich would assume 80 columns)."""
    return Console(width=None if sys.stdout.isatty() else width)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(q / 100 * len(sorted_values) + 0.5))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}" if seconds < 0.01 else f"{seconds * 1000:.1f}"


def latency_cell(samples: Sequence[float], high: float = 99) -> str:
    """ "p50 …, p99 …, max … (n=…)" in milliseconds, from seconds."""
    ordered = sorted(samples)
    if not ordered:
        return "no samples"
    return (
        f"p50 {ms(percentile(ordered, 50))} ms, p{high:g} {ms(percentile(ordered, high))} ms, "
        f"max {ms(ordered[-1])} ms (n={len(ordered):,})"
    )


def acked_cell(rows: int, acknowledged: int) -> str:
    """The check every load benchmark ends with: the log holds exactly the events acknowledged."""
    return f"{'yes' if rows == acknowledged else 'NO'} ({rows:,} / {acknowledged:,})"


def rich_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> Table:
    """The first `left` columns left-aligned (labels), the rest right-aligned (numbers)."""
    table = Table(title=title)
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i < left else "right")
    for row in rows:
        table.add_row(*row)
    return table


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """The same table as GitHub Markdown, for pasting into BENCHMARKS.md."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * left + "--:|" * (len(columns) - left)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
