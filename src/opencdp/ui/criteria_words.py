"""Criteria problems in words for the segment builder: "Number of times must be 0 or more"
instead of `and.0.count.value: Input should be greater than or equal to 0`.

Each problem keeps its path (the builder finds the input that produced that part of the
document and shows the words beside it) and gets the name of that input as people see it.
"""

from __future__ import annotations

import re

from opencdp.segments.language import CriteriaError

#: The builder's inputs, by the path of the field inside one condition.
LABELS = {
    "count.value": "Number of times",
    "count.op": "How often",
    "within_days": "Number of days",
    "first_occurred.value": "When",
    "first_occurred.op": "When",
    "first_occurred.tz": "Time zone",
    "last_occurred.value": "When",
    "last_occurred.op": "When",
    "last_occurred.tz": "Time zone",
    "event": "Event",
    "type": "Event type",
    "trait": "Trait",
    "computed": "Computed trait",
    "predicted": "Predicted trait",
    "segment": "Segment",
    "op": "Operator",
    "value": "Value",
    "property": "Property",
    "on": "Date",
    "after": "Date",
    "on_or_after": "Date",
    "before": "Date",
    "on_or_before": "Date",
    "between": "Dates",
    "between.0": "First day",
    "between.1": "Last day",
    "in_month": "Month",
    "tz": "Time zone",
    "value.0": "First day",
    "value.1": "Last day",
}

_PYDANTIC = [
    (re.compile(r"Input should be greater than or equal to (\S+)"), "must be {0} or more"),
    (re.compile(r"Input should be greater than (\S+)"), "must be more than {0}"),
    (re.compile(r"Input should be less than or equal to (\S+)"), "must be {0} or less"),
    (re.compile(r"Input should be less than (\S+)"), "must be less than {0}"),
    (re.compile(r"Input should be a valid integer.*"), "must be a whole number"),
    (re.compile(r"Input should be a valid number.*"), "must be a number"),
    (re.compile(r"Input should be a valid string"), "must be text"),
    (re.compile(r"Input should be a valid (list|array)"), "must be a list"),
    (re.compile(r"Input should be (.+)"), "must be {0}"),
    (re.compile(r"Field required"), "is missing"),
    (re.compile(r"String should have at least 1 character"), "must not be empty"),
    (re.compile(r"String should match pattern .*"), "has characters that are not allowed"),
    (re.compile(r"Extra inputs are not permitted"), "is not part of a condition here"),
]


def split_path(path: str) -> tuple[str, str]:
    """`and.0.not.count.value` → (`and.0.not`, `count.value`): the condition, and the field in it."""
    parts = path.split(".") if path else []
    i = 0
    while i < len(parts):
        if parts[i] in ("and", "or") and i + 1 < len(parts) and parts[i + 1].isdigit():
            i += 2
        elif parts[i] == "not":
            i += 1
        else:
            break
    return ".".join(parts[:i]), ".".join(parts[i:])


def _label(field: str) -> str:
    where = re.fullmatch(r"where\.\d+(?:\.(.*))?", field)
    if where:
        inner = where.group(1) or ""
        return "Property filter" + (f" {LABELS[inner].lower()}" if inner in LABELS else "")
    return LABELS.get(field, "")


def in_words(path: str, problem: str) -> dict[str, str]:
    """One problem as {"path", "field", "message"}: the message starts with the input's name."""
    _, field = split_path(path)
    label = _label(field)
    for pattern, words in _PYDANTIC:
        found = pattern.fullmatch(problem)
        if found:
            said = words.format(*found.groups())
            return {"path": path, "field": label, "message": f"{label or 'This condition'} {said}"}
    message = problem[:1].upper() + problem[1:]
    return {"path": path, "field": label, "message": f"{label}: {problem}" if label else message}


def problems_in_words(exc: Exception) -> list[dict[str, str]]:
    if isinstance(exc, CriteriaError):
        return [in_words(p["path"], p["problem"]) for p in exc.problems]
    text = str(exc)
    return [{"path": "", "field": "", "message": text[:1].upper() + text[1:]}]
