"""Size limits of criteria (with referenced segments expanded) and SQL whose depth grows with log(n).

Regression: a segment of 700 OR'ed conditions, valid alone, referenced twice by another, gave
SQLite "Expression tree is too large (maximum depth 1000)" at every processed chunk, and a 500 on
/api/segments/preview from about 1,000 conditions.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.access.keys import create_api_key
from opencdp.segments import store
from opencdp.segments.compiler import Compiler, members_query
from opencdp.segments.language import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    CriteriaLimitError,
    Or,
    TraitCondition,
    parse_criteria,
)
from opencdp.store.schema import profiles
from opencdp.system import OpenCDP
from tests.segment_helpers import NOW, load, profile


def ors(n: int, offset: int = 0) -> dict[str, Any]:
    return {"or": [{"trait": "n", "op": "eq", "value": i + offset} for i in range(n)]}


def nested(depth: int) -> dict[str, Any]:
    """`depth` levels of and/or/not around one condition."""
    document: dict[str, Any] = {"trait": "n", "op": "eq", "value": 1}
    for level in range(depth):
        document = [{"or": [document]}, {"and": [document]}, {"not": document}][level % 3]
    return document


def max_parentheses(sql: str) -> int:
    depth = deepest = 0
    for ch in sql:
        depth += (ch == "(") - (ch == ")")
        deepest = max(deepest, depth)
    return deepest


def test_limits_are_checked_while_parsing() -> None:
    parse_criteria(ors(MAX_CONDITIONS))
    with pytest.raises(CriteriaLimitError) as too_many:
        parse_criteria(ors(MAX_CONDITIONS + 1))
    assert too_many.value.problems[0]["path"] == f"or.{MAX_CONDITIONS}"
    assert f"at most {MAX_CONDITIONS}" in too_many.value.problems[0]["problem"]
    parse_criteria(nested(MAX_DEPTH))
    with pytest.raises(CriteriaLimitError, match=f"at most {MAX_DEPTH} levels"):
        parse_criteria(nested(MAX_DEPTH + 1))
    with pytest.raises(CriteriaLimitError):  # far too deep: refused without recursing through it all
        parse_criteria(nested(5000))


def test_referenced_segments_count_towards_the_limits() -> None:
    saved = {"half": ors(MAX_CONDITIONS // 2), "deep": nested(MAX_DEPTH - 1)}
    members_query(parse_criteria({"or": [{"segment": "half"}, {"segment": "half"}]}), NOW, saved.get)
    with pytest.raises(CriteriaLimitError, match="counting the conditions of referenced segments"):
        members_query(
            parse_criteria(
                {"or": [{"segment": "half"}, {"segment": "half"}, {"trait": "x", "op": "exists"}]}
            ),
            NOW,
            saved.get,
        )
    members_query(parse_criteria({"and": [{"segment": "deep"}]}), NOW, saved.get)
    with pytest.raises(CriteriaLimitError, match="levels inside referenced segments"):
        members_query(parse_criteria({"and": [{"or": [{"segment": "deep"}]}]}), NOW, saved.get)


def test_and_or_compile_to_balanced_trees_that_sqlalchemy_does_not_flatten() -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    for dialect in (sqlite.dialect(), postgresql.dialect()):
        depths = []
        for n in (8, 64, 512):
            condition = Or.model_construct(or_=[TraitCondition(trait="n", value=i) for i in range(n)])
            expression = Compiler(NOW, max_conditions=n).compile(condition)
            sql = str(sa.select(profiles.c.id).where(expression).compile(dialect=dialect))
            depths.append(max_parentheses(sql))
        # 8x the conditions adds three levels of parentheses (log2), not 8x the depth
        assert depths[1] - depths[0] == 3 and depths[2] - depths[1] == 3, depths
    four = Compiler(NOW).compile(parse_criteria({"and": [{"trait": k, "op": "exists"} for k in "abcd"]}))
    sql = str(four.compile(dialect=sqlite.dialect()))
    assert re.fullmatch(r"\(\S.* AND .*\S\) AND \(\S.* AND .*\S\)", sql), sql  # (a AND b) AND (c AND d)


def test_thousands_of_conditions_evaluate_on_sqlite_without_the_depth_error(tmp_path: Any) -> None:
    """Without balanced trees SQLite refuses this query (depth > 1,000); the limits would refuse
    it first, so they are raised here to test the SQL itself."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'deep.db'}")
    from opencdp.store.schema import metadata

    metadata.create_all(engine)
    load(engine, {"p1": profile({"n": 2999}), "p2": profile({"n": -1})})
    condition = Or.model_construct(or_=[TraitCondition(trait="n", value=i) for i in range(3000)])
    expression = Compiler(NOW, max_conditions=3000).compile(condition)
    with engine.connect() as conn:
        found = conn.execute(sa.select(profiles.c.id).where(expression)).scalars().all()
    assert found == ["p1"]
    engine.dispose()


def test_a_segment_at_the_limits_is_saved_and_evaluated(cdp: OpenCDP) -> None:
    load(cdp.engine, {"p1": profile({"n": 150}), "p2": profile({"n": 500})})
    store.save(cdp.engine, "half", ors(MAX_CONDITIONS // 2))
    store.save(cdp.engine, "other half", ors(MAX_CONDITIONS // 2, offset=MAX_CONDITIONS // 2))
    both = store.save(cdp.engine, "both", {"or": [{"segment": "half"}, {"segment": "other half"}]})
    deep = store.save(cdp.engine, "deep", nested(MAX_DEPTH))
    from opencdp.segments.queries import member_count

    assert member_count(cdp.engine, both.name) == 1  # p1 (150 is in the second half)
    assert member_count(cdp.engine, deep.name) == 2  # three nots around "n is 1": both


def test_api_refuses_oversized_criteria_with_400_never_500(
    client: TestClient, cdp: OpenCDP, admin_key: str
) -> None:
    auth = {"Authorization": f"Bearer {admin_key}"}
    read = {"Authorization": f"Bearer {create_api_key(cdp.engine, 'read', 'reader')[1]}"}
    for n in (1000, 20_000):
        response = client.post("/api/segments/preview", json={"criteria": ors(n)}, headers=read)
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["error"] == "invalid_criteria"
        assert body["errors"][0]["field"] == f"criteria.or.{MAX_CONDITIONS}"
        assert f"at most {MAX_CONDITIONS}" in body["errors"][0]["problem"]
    too_deep = client.post("/api/segments/validate", json={"criteria": nested(MAX_DEPTH + 1)}, headers=read)
    assert too_deep.status_code == 400 and "levels of and/or/not" in too_deep.json()["message"]

    # The regression: 700 OR'ed conditions (refused alone now) and a smaller one referenced twice.
    refused = client.post("/api/segments", json={"name": "big", "criteria": ors(700)}, headers=auth)
    assert refused.status_code == 400 and "at most 200" in refused.json()["message"]
    half = client.post("/api/segments", json={"name": "big", "criteria": ors(150)}, headers=auth)
    assert half.status_code == 201, half.text
    twice = {"or": [{"segment": "big"}, {"segment": "big"}]}
    for path, body in (
        ("/api/segments", {"name": "twice", "criteria": twice}),
        ("/api/segments/preview", {"criteria": twice}),
    ):
        response = client.post(path, json=body, headers=auth)
        assert response.status_code == 400, response.text
        error = response.json()["errors"][0]
        assert error["field"] == "criteria" and "counting the conditions of referenced" in error["problem"]
    assert [s["name"] for s in client.get("/api/segments", headers=auth).json()] == ["big"]
