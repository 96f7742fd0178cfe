"""One bad segment or computed trait must not stop processing: it is marked failed and skipped.

Regression: a segment stored with 700 OR'ed conditions, referenced twice by another, made every
processor chunk fail and be retried forever (SQLite "Expression tree is too large"), for all
events, with nothing reported anywhere.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.process.schedule import refresh_all
from opencdp.segments import memberships, store
from opencdp.segments.queries import member_count
from opencdp.store import failures
from opencdp.store.schema import computed_trait_definitions, processor_state, profiles, segments
from opencdp.system import OpenCDP
from opencdp.traits import store as trait_store
from opencdp.traits.definitions import ComputedTrait, EventFilter
from tests.identity_helpers import log_messages, process

BIG = {"or": [{"trait": "n", "op": "eq", "value": i} for i in range(700)]}


class Recorder:
    """Stands in for the failures logger: what was logged, and whether with a traceback."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def exception(self, event: str, **kw: Any) -> None:
        self.lines.append(("traceback", f"{event} {kw}"))

    def warning(self, event: str, **kw: Any) -> None:
        self.lines.append(("line", f"{event} {kw}"))

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append(("info", f"{event} {kw}"))

    def debug(self, event: str, **kw: Any) -> None:
        """Not what an operator sees: another worker already reported the same failure."""


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    recorder = Recorder()
    monkeypatch.setattr(failures, "log", recorder)
    yield recorder


def insert_segment(cdp: OpenCDP, name: str, criteria: Any) -> None:
    """Straight into the table, around validation (as an older version or a script could)."""
    now = datetime.now(UTC)
    with cdp.engine.begin() as conn:
        conn.execute(
            segments.insert().values(
                name=name, description="", criteria=criteria, created_at=now, updated_at=now
            )
        )


def people(first: int, count: int) -> list[dict[str, Any]]:
    """Each identifies and visits once."""
    return [
        message
        for n in range(first, first + count)
        for message in (
            {
                "type": "identify",
                "userId": f"u{n}",
                "timestamp": "2026-05-01T10:00:00Z",
                "traits": {"n": n, "country": "DE"},
            },
            {"type": "track", "userId": f"u{n}", "event": "Visit", "timestamp": "2026-05-01T10:00:00Z"},
        )
    ]


def live_profiles(cdp: OpenCDP) -> int:
    with cdp.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(profiles).where(profiles.c.merged_into.is_(None))
            ).scalar_one()
        )


def backlog(cdp: OpenCDP) -> int:
    from opencdp.process.processor import Processor

    return Processor(cdp.engine).backlog()


def failed(cdp: OpenCDP, kind: failures.Kind) -> dict[str, failures.Failure]:
    with cdp.engine.connect() as conn:
        return failures.failures(conn, kind)


def test_an_oversized_segment_stored_around_validation_is_isolated(cdp: OpenCDP, logged: Recorder) -> None:
    store.save(cdp.engine, "germans", {"trait": "country", "op": "eq", "value": "DE"})
    insert_segment(cdp, "big", BIG)
    insert_segment(cdp, "twice", {"or": [{"segment": "big"}, {"segment": "big"}]})
    log_messages(cdp.engine, people(0, 30))
    process(cdp.engine, chunk_size=20)  # before the fix: every chunk failed, forever

    assert backlog(cdp) == 0 and live_profiles(cdp) == 30
    assert member_count(cdp.engine, "germans") == 30  # the good segment in the same chunks
    bad = failed(cdp, "segment")
    assert set(bad) == {"big", "twice"}
    assert "at most 200" in bad["twice"].error and bad["twice"].failed_at is not None
    # one traceback per definition when it starts failing; later chunks skip it without a word
    assert [kind for kind, _ in logged.lines] == ["traceback", "traceback"]

    log_messages(cdp.engine, people(30, 5))
    process(cdp.engine, chunk_size=10)
    assert live_profiles(cdp) == 35 and member_count(cdp.engine, "germans") == 35
    assert len(logged.lines) == 2

    refresh_all(cdp.engine)  # the scheduled refresh tries again: one line each, no traceback
    assert [kind for kind, _ in logged.lines[2:]] == ["line", "line"]
    assert set(failed(cdp, "segment")) == {"big", "twice"}

    store.save(cdp.engine, "big", {"or": BIG["or"][:100]}, replace=True)  # redefined: cleared
    assert set(failed(cdp, "segment")) == {"twice"}
    refresh_all(cdp.engine)  # 2 x 100 conditions: within the limits now
    assert failed(cdp, "segment") == {}
    assert member_count(cdp.engine, "twice") == 35
    assert logged.lines[-1][0] == "info" and "evaluates again" in logged.lines[-1][1]


def test_a_database_error_rolls_back_only_that_segment(
    cdp: OpenCDP, logged: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL an error aborts the transaction: the SAVEPOINT keeps the chunk's work."""
    store.save(cdp.engine, "germans", {"trait": "country", "op": "eq", "value": "DE"})
    store.save(cdp.engine, "broken", {"trait": "country", "op": "eq", "value": "broken"})
    real = memberships.members_query

    def members_query(
        criteria: Any, now: datetime, lookup: Any = None, profile_ids: Any = None
    ) -> sa.Select[Any]:
        query = real(criteria, now, lookup, profile_ids)
        if getattr(criteria, "value", None) == "broken":
            return query.where(sa.text("no_such_column = 1"))
        return query

    monkeypatch.setattr(memberships, "members_query", members_query)
    log_messages(cdp.engine, people(0, 12))
    process(cdp.engine, chunk_size=5)

    assert backlog(cdp) == 0 and live_profiles(cdp) == 12
    assert member_count(cdp.engine, "germans") == 12
    with cdp.engine.connect() as conn:
        assert conn.execute(sa.select(processor_state.c.last_event_id)).scalar_one() > 0
    error = failed(cdp, "segment")["broken"].error
    assert "no_such_column" in error and "SELECT" not in error  # the database's message, not the SQL
    assert [kind for kind, _ in logged.lines] == ["traceback"]

    monkeypatch.setattr(memberships, "members_query", real)
    refresh_all(cdp.engine)  # fine again: cleared
    assert failed(cdp, "segment") == {}


def test_a_failing_computed_trait_is_isolated(
    cdp: OpenCDP, logged: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    trait_store.define(
        cdp.engine, ComputedTrait(name="visits", kind="count", filter=EventFilter(event="Visit"))
    )
    log_messages(cdp.engine, people(0, 3))
    process(cdp.engine)
    with cdp.engine.begin() as conn:  # a definition that no longer validates (stored around the API)
        conn.execute(
            computed_trait_definitions.insert().values(
                name="median_revenue",
                definition={"name": "median_revenue", "kind": "median", "property": "revenue"},
                created_at=datetime.now(UTC),
            )
        )
    real = trait_store.compute

    def compute(definition: ComputedTrait, events: Any, now: datetime) -> Any:
        if definition.name == "visits":
            raise ZeroDivisionError("division by zero")
        return real(definition, events, now)

    monkeypatch.setattr(trait_store, "compute", compute)
    log_messages(cdp.engine, people(0, 3) + people(3, 2))
    process(cdp.engine, chunk_size=2)

    assert backlog(cdp) == 0 and live_profiles(cdp) == 5
    bad = failed(cdp, "trait")
    assert set(bad) == {"visits", "median_revenue"}
    assert bad["visits"].error == "ZeroDivisionError: division by zero"
    assert bad["median_revenue"].error.startswith("invalid definition: kind: Input should be")
    with cdp.engine.connect() as conn:
        computed = {r.id: r.computed for r in conn.execute(sa.select(profiles.c.id, profiles.c.computed))}
    assert all("visits" not in c for c in computed.values())  # no value while it fails
    assert all("engagement_score" in c and "order_count" in c for c in computed.values())  # others go on
    assert [kind for kind, _ in logged.lines] == ["traceback", "traceback"]
    with cdp.engine.connect() as conn:  # listings leave out what does not validate
        assert "median_revenue" not in {d.name for d in trait_store.definitions(conn)}

    monkeypatch.setattr(trait_store, "compute", real)
    refresh_all(cdp.engine)
    assert set(failed(cdp, "trait")) == {"median_revenue"}
    trait_store.remove(cdp.engine, "median_revenue")
    assert failed(cdp, "trait") == {}


def test_failed_definitions_are_shown_by_the_api_the_cli_and_health(
    cdp: OpenCDP, client: TestClient, admin_key: str, env_for: dict[str, str], logged: Recorder
) -> None:
    auth = {"Authorization": f"Bearer {admin_key}"}
    healthy = client.get("/api/health").json()
    assert (healthy["status"], healthy["reasons"], healthy["failed_definitions"]) == ("ok", [], [])
    store.save(cdp.engine, "germans", {"trait": "country", "op": "eq", "value": "DE"})
    insert_segment(cdp, "big", BIG)
    with cdp.engine.begin() as conn:
        conn.execute(
            computed_trait_definitions.insert().values(
                name="median_revenue",
                definition={"name": "median_revenue", "kind": "median", "property": "revenue"},
                created_at=datetime.now(UTC),
            )
        )
    log_messages(cdp.engine, people(0, 3))
    process(cdp.engine)

    health = client.get("/api/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "degraded" and body["database"] == cdp.engine.dialect.name
    reason = " ".join(body["reasons"])
    assert "segment 'big'" in reason and "computed trait 'median_revenue'" in reason
    assert [(f["kind"], f["name"]) for f in body["failed_definitions"]] == [
        ("segment", "big"),
        ("trait", "median_revenue"),
    ]
    listed = {s["name"]: s for s in client.get("/api/segments", headers=auth).json()}
    assert listed["germans"]["status"] == "ok" and listed["germans"]["error"] is None
    assert listed["big"]["status"] == "failed" and "at most 200" in listed["big"]["error"]
    one = client.get("/api/segments/big", headers=auth).json()
    assert one["status"] == "failed" and one["failed_at"]
    traits = client.get("/api/traits/computed", headers=auth).json()
    assert {d["status"] for d in traits["definitions"]} == {"ok"}
    assert [f["name"] for f in traits["failed"]] == ["median_revenue"]

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "opencdp", *args], env=env_for, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    segment_lines = {line.split("\t")[0]: line for line in run("segments", "list").splitlines()}
    assert segment_lines["germans"] == "germans\t3\t"
    assert "\tFAILED since " in segment_lines["big"] and "at most 200" in segment_lines["big"]
    trait_lines = {line.split("\t")[0]: line for line in run("traits", "list").splitlines()}
    assert "FAILED" in trait_lines["median_revenue"] and "kind" in trait_lines["median_revenue"]
    assert "FAILED" not in trait_lines["order_count"]

    client.delete("/api/segments/big", headers=auth)
    client.delete("/api/traits/computed/median_revenue", headers=auth)
    assert client.get("/api/health").json()["status"] == "ok"
