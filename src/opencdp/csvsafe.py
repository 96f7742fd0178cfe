"""CSV lines that are safe to open in a spreadsheet: every CSV export writes through `line`.

Exported cells carry text that anyone with a write key can choose (user ids, e-mails, traits).
Excel, LibreOffice and Google Sheets run a cell starting with `=`, `+`, `-` or `@` (or a tab or
carriage return before one) as a formula, which can exfiltrate data or start programs. Such text
gets a leading `'`, which spreadsheets show as text and hide. Numbers stay numbers: a negative
number is not a formula. Header cells go through the same rule.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import orjson

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> str:
    """One value as the text of one cell, neutralised."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) and math.isfinite(value):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict | list):
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()  # starts with { or [
    else:
        text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def line(values: Iterable[Any]) -> str:
    """One CSV record (RFC 4180, CRLF line end) with every cell neutralised."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([cell(v) for v in values])
    return out.getvalue()
