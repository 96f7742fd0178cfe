"""Calendar-date conditions: month boundaries, the inclusive last day, time zones at midnight,
the same members on SQLite and PostgreSQL as in the plain-Python oracle."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from opencdp.cli import main
from opencdp.config import Settings
from opencdp.segments.compiler import members_query
from opencdp.segments.language import CriteriaError, parse_criteria, to_document
from opencdp.segments.oracle import OracleEvent, OracleProfile
from opencdp.system import OpenCDP
from tests.segment_helpers import NOW, assert_selects


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _orders(*moments: str) -> list[OracleEvent]:
    return [OracleEvent("Order Completed", "track", _at(m), {}) for m in moments]


WORLD = {
    # the first and the last moment of March 1997
    "c1": OracleProfile(
        {"signup": "2026-01-01"}, {}, _orders("1997-03-01T00:00:00+00:00", "1997-03-31T23:59:59.999999+00:00")
    ),
    # a microsecond outside March on either side
    "c2": OracleProfile(
        {"signup": "2025-12-31"}, {}, _orders("1997-02-28T23:59:59.999999+00:00", "1997-04-01T00:00:00+00:00")
    ),
    # 1 December 00:00 UTC (01:00 in Berlin) and 15 December 23:30 UTC (16 December 00:30 in Berlin)
    "c3": OracleProfile(
        {"signup": "not a date"},
        {"first_order_at": "2026-01-01T00:00:00.5Z"},
        _orders("2026-12-01T00:00:00+00:00", "2026-12-15T23:30:00+00:00"),
    ),
    # 30 November 23:30 UTC: already 1 December in Berlin
    "c4": OracleProfile(
        {"signup": 20260101},
        {"first_order_at": "2025-12-31T23:59:59.5Z"},
        _orders("2026-11-30T23:30:00+00:00"),
    ),
    # Berlin's clocks go forward on 29 March 2026: that day ends at 22:00 UTC
    "c5": OracleProfile({}, {"first_order_at": "2026-03-29T21:59:59Z"}, _orders("2026-03-29T22:00:00+00:00")),
    "c6": OracleProfile({}, {"first_order_at": "2026-01-01T00:00:00+01:00"}, []),
}

ORDER = {"event": "Order Completed"}

CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({**ORDER, "in_month": "1997-03"}, {"c1"}),
    ({**ORDER, "in_month": "1997-03", "count": {"op": "eq", "value": 2}}, {"c1"}),
    ({**ORDER, "in_month": "1997-03", "count": {"op": "eq", "value": 0}}, {"c2", "c3", "c4", "c5", "c6"}),
    ({**ORDER, "before": "1997-03-01"}, {"c2"}),
    ({**ORDER, "on_or_before": "1997-02-28"}, {"c2"}),
    ({**ORDER, "after": "1997-03-31"}, {"c2", "c3", "c4", "c5"}),
    ({**ORDER, "on_or_after": "1997-04-01", "before": "1997-04-02"}, {"c2"}),
    ({**ORDER, "after": "1997-03-31", "on_or_before": "1997-04-01"}, {"c2"}),
    # between: both days included; in UTC c4's order is in November
    ({**ORDER, "between": ["2026-12-01", "2026-12-15"], "count": {"op": "eq", "value": 2}}, {"c3"}),
    ({**ORDER, "between": ["2026-12-01", "2026-12-15"]}, {"c3"}),
    # …in Berlin, c4's order is on 1 December and c3's second one on the 16th
    ({**ORDER, "between": ["2026-12-01", "2026-12-15"], "tz": "Europe/Berlin"}, {"c3", "c4"}),
    (
        {
            **ORDER,
            "between": ["2026-12-01", "2026-12-15"],
            "tz": "Europe/Berlin",
            "count": {"op": "eq", "value": 2},
        },
        set(),
    ),
    ({**ORDER, "on": "2026-12-16", "tz": "Europe/Berlin"}, {"c3"}),
    ({**ORDER, "on": "2026-12-16"}, set()),
    ({**ORDER, "on": "2026-03-29", "tz": "Europe/Berlin"}, set()),  # 22:00 UTC is 30 March, 00:00 CEST
    ({**ORDER, "on": "2026-03-30", "tz": "Europe/Berlin"}, {"c5"}),
    ({**ORDER, "first_occurred": {"op": "in_month", "value": "1997-03"}}, {"c1"}),
    ({**ORDER, "last_occurred": {"op": "before", "value": "2026-01-01"}}, {"c1", "c2"}),
    ({**ORDER, "last_occurred": {"op": "after", "value": "2026-11-30"}}, {"c3"}),
    ({**ORDER, "first_occurred": {"op": "on", "value": "2026-12-01", "tz": "Europe/Berlin"}}, {"c3", "c4"}),
    ({**ORDER, "first_occurred": {"op": "between", "value": ["1997-03-31", "1997-04-01"]}}, set()),
    ({**ORDER, "last_occurred": {"op": "between", "value": ["1997-03-31", "1997-04-01"]}}, {"c1", "c2"}),
    # date-valued text: UTC times by the second (the fraction never crosses a boundary) …
    ({"computed": "first_order_at", "op": "before", "value": "2026-01-01"}, {"c4"}),
    ({"computed": "first_order_at", "op": "on_or_after", "value": "2026-01-01"}, {"c3", "c5"}),
    ({"computed": "first_order_at", "op": "on", "value": "2026-01-01", "tz": "Asia/Tokyo"}, {"c3", "c4"}),
    ({"computed": "first_order_at", "op": "on", "value": "2026-03-29", "tz": "Europe/Berlin"}, {"c5"}),
    ({"computed": "first_order_at", "op": "in_month", "value": "2026-03"}, {"c5"}),
    # … calendar dates as days whatever the time zone; other text, numbers and offsets never match
    ({"trait": "signup", "op": "on", "value": "2026-01-01", "tz": "Pacific/Kiritimati"}, {"c1"}),
    ({"trait": "signup", "op": "before", "value": "2026-01-01"}, {"c2"}),
    ({"trait": "signup", "op": "between", "value": ["2025-12-31", "2026-01-01"]}, {"c1", "c2"}),
    ({"not": {"trait": "signup", "op": "on_or_after", "value": "1900-01-01"}}, {"c3", "c4", "c5", "c6"}),
    (
        {
            "event": "Order Completed",
            "where": [{"property": "delivered", "op": "exists"}],
            "in_month": "1997-03",
        },
        set(),
    ),
]


@pytest.mark.parametrize(("criteria", "expected"), CASES)
def test_calendar_conditions_on_every_engine(
    cdp: OpenCDP, criteria: dict[str, Any], expected: set[str]
) -> None:
    parsed = assert_selects(cdp.engine, WORLD, criteria, expected)
    assert to_document(parsed) == criteria  # stored as written


def test_calendar_values_are_bound_parameters(cdp: OpenCDP) -> None:
    query = members_query(parse_criteria({**ORDER, "in_month": "1997-03", "tz": "Europe/Berlin"}), NOW)
    sql = str(query.compile(cdp.engine))
    assert "1997" not in sql and "Berlin" not in sql


@pytest.mark.parametrize(
    ("document", "path", "words"),
    [
        ({**ORDER, "on": "2026-02-30"}, "on", "not a day of the calendar"),
        ({**ORDER, "before": "01.12.2026"}, "before", "write YYYY-MM-DD"),
        ({**ORDER, "on_or_after": 20261201}, "on_or_after", "valid string"),
        ({**ORDER, "in_month": "1997-13"}, "in_month", "01 to 12"),
        ({**ORDER, "between": ["2026-12-15", "2026-12-01"]}, "between", "the range is empty"),
        ({**ORDER, "between": ["2026-12-01"]}, "between", "two calendar dates"),
        ({**ORDER, "between": ["2026-12-01", "tomorrow"]}, "between.1", "not a calendar date"),
        ({**ORDER, "on_or_after": "2026-12-16", "before": "2026-12-16"}, "before", "the range is empty"),
        (
            {**ORDER, "after": "2026-12-15", "on_or_before": "2026-12-15"},
            "on_or_before",
            "the range is empty",
        ),
        ({**ORDER, "within_days": 30, "in_month": "2026-11"}, "in_month", "use one or the other"),
        ({**ORDER, "in_month": "2026-11", "before": "2026-11-20"}, "before", "stands alone"),
        ({**ORDER, "after": "2026-11-20", "on_or_after": "2026-11-20"}, "on_or_after", "only one of"),
        ({**ORDER, "tz": "Europe/Berlin"}, "tz", "use it with"),
        ({**ORDER, "on": "2026-12-01", "tz": "Mars/Olympus"}, "tz", "unknown time zone"),
        ({**ORDER, "on": "2026-12-01", "tz": "../../etc/passwd"}, "tz", "not a time zone name"),
        ({**ORDER, "on": "1850-01-01"}, "on", "from 1900 to 2999"),
        (
            {"and": [{**ORDER, "in_month": "2026-11", "last_occurred": {"op": "before_days", "value": 3}}]},
            "and.0.in_month",
            "carry their own dates",
        ),
        (
            {**ORDER, "last_occurred": {"op": "before", "value": "2026-1-1"}},
            "last_occurred.value",
            "YYYY-MM-DD",
        ),
        ({**ORDER, "last_occurred": {"op": "within_days", "value": -1}}, "last_occurred.value", "0 to 36500"),
        (
            {**ORDER, "last_occurred": {"op": "within_days", "value": 3, "tz": "UTC"}},
            "last_occurred.tz",
            "use it",
        ),
        ({"or": [{"computed": "first_order_at", "op": "before", "value": 3}]}, "or.0.value", "calendar date"),
        ({"trait": "signup", "op": "eq", "value": "x", "tz": "UTC"}, "tz", "use it with"),
    ],
)
def test_calendar_mistakes_name_the_field(document: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(CriteriaError) as caught:
        parse_criteria(document)
    problems = {p["path"]: p["problem"] for p in caught.value.problems}
    assert path in problems, problems
    assert words in problems[path]


def test_api_and_cli_refuse_calendar_mistakes_naming_the_field(
    client: TestClient, cdp: OpenCDP, admin_key: str, settings: Settings
) -> None:
    auth = {"Authorization": f"Bearer {admin_key}"}
    bad = client.post(
        "/api/segments/validate",
        json={"criteria": {"and": [{**ORDER, "within_days": 7, "between": ["2026-12-15", "2026-12-01"]}]}},
        headers=auth,
    )
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "criteria.and.0.between"
    assert "use one or the other" in bad.json()["errors"][0]["problem"]
    good = {**ORDER, "in_month": "2026-03", "tz": "Europe/Berlin"}
    assert client.post("/api/segments/validate", json={"criteria": good}, headers=auth).json() == {
        "valid": True
    }
    env = {"OPENCDP_DATABASE_URL": settings.database_url, "OPENCDP_DATA_DIR": str(settings.data_dir)}
    result = CliRunner().invoke(
        main, ["segments", "validate", json.dumps({**ORDER, "on": "2026-02-30"})], env=env
    )
    assert result.exit_code == 1
    assert "on: 2026-02-30 is not a day of the calendar" in result.output
