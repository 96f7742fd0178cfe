"""Probabilistic matching end to end: planted duplicates with no shared identifier are merged
through `Identity Matched` events, decisions stand, merge protection holds, rebuild reproduces."""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

import pytest
import sqlalchemy as sa

from opencdp.match import runner
from opencdp.match.config import MatchConfig
from opencdp.match.model import ModelError
from opencdp.match.synthetic import records
from opencdp.process.processor import reset_derived_state
from opencdp.store.schema import events, identities, identity_links, match_candidates
from opencdp.system import OpenCDP
from tests.identity_helpers import log_messages, process

N = 600


def _import(engine: sa.Engine, rows: list[Any], user_ids: dict[str, str] | None = None) -> None:
    messages = []
    for n, record in enumerate(rows):
        message: dict[str, Any] = {
            "type": "identify",
            "anonymousId": f"crm-{record.record_id}",
            "messageId": f"import-{record.record_id}",
            "timestamp": f"2026-05-01T10:{n // 60 % 60:02d}:{n % 60:02d}Z",
            "traits": record.traits,
            "context": {"externalIds": [{"type": "crm_id", "id": record.record_id}]},
        }
        if user_ids and record.record_id in user_ids:
            message["userId"] = user_ids[record.record_id]
        messages.append(message)
    log_messages(engine, messages)
    process(engine)


def _partition(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(identities.c.value, identities.c.profile_id).where(identities.c.type == "crm_id")
        ).all()
    return dict(rows)


def _scores(partition: dict[str, str], people: dict[str, int]) -> tuple[float, float]:
    """Pairwise precision and recall of the profiles against the planted truth."""
    by_profile, by_person = defaultdict(list), defaultdict(list)
    for record_id, pid in partition.items():
        by_profile[pid].append(record_id)
        by_person[people[record_id]].append(record_id)

    def pairs(groups: dict[Any, list[str]]) -> set[tuple[str, str]]:
        return {p for g in groups.values() for p in itertools.combinations(sorted(g), 2)}

    found, truth = pairs(by_profile), pairs(by_person)
    true_positives = len(found & truth)
    return true_positives / max(len(found), 1), true_positives / max(len(truth), 1)


@pytest.fixture
def planted(system: OpenCDP) -> tuple[OpenCDP, dict[str, int]]:
    rows = list(records(N, duplicate_share=0.25, seed=11))
    _import(system.engine, rows)
    return system, {r.record_id: r.person for r in rows}


def test_planted_duplicates_become_one_profile_with_the_reasons(
    planted: tuple[OpenCDP, dict[str, int]],
) -> None:
    system, people = planted
    engine = system.engine
    before = _partition(engine)
    assert len(set(before.values())) == N  # no identifier is shared: every record is a profile

    summary = runner.run(engine)
    process(engine)

    assert summary.trained and summary.profiles == N
    assert {"first_name", "last_name", "date_of_birth", "postcode"} <= set(summary.fields)
    assert all(rule["pairs"] >= 0 for rule in summary.blocking) and summary.blocking
    precision, recall = _scores(_partition(engine), people)
    assert precision >= 0.98 and recall >= 0.9, (precision, recall)
    with engine.connect() as conn:
        link = conn.execute(
            sa.select(identity_links).where(identity_links.c.rule == "probabilistic").limit(1)
        ).first()
        merged = conn.execute(sa.select(match_candidates).where(match_candidates.c.status == "merged")).all()
        event = conn.execute(sa.select(events.c.payload).where(events.c.id == link.event_id)).scalar_one()
    assert link is not None and len(merged) == summary.auto_merges > 0
    assert all(row.event_id is not None for row in merged)
    props = event["properties"]
    assert props["match_probability"] >= 0.95 and "match probability" in props["explanation"]
    assert props["decided_by"] == "match" and "same" in props["explanation"]


def test_a_second_run_respects_what_was_decided_and_rebuild_reproduces(
    planted: tuple[OpenCDP, dict[str, int]],
) -> None:
    system, _ = planted
    engine = system.engine
    first = runner.run(engine)
    process(engine)
    after_first = _partition(engine)

    second = runner.run(engine)
    process(engine)
    assert not second.trained  # the stored model is reused
    assert second.auto_merges == 0 and second.queued_for_review == 0
    assert second.decided_before == first.queued_for_review
    assert _partition(engine) == after_first

    reset_derived_state(engine)
    process(engine)
    assert _partition(engine) == after_first


def test_dry_run_writes_nothing(planted: tuple[OpenCDP, dict[str, int]]) -> None:
    system, _ = planted
    engine = system.engine
    summary = runner.run(engine, dry_run=True)
    assert summary.would_merge and len(summary.would_merge) == summary.auto_merges
    assert all("match probability" in m["explanation"] for m in summary.would_merge)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(match_candidates)).scalar_one() == 0
        probabilistic = identity_links.c.rule == "probabilistic"
        assert conn.execute(sa.select(sa.func.count()).where(probabilistic)).scalar_one() == 0


def test_merge_protection_holds_for_probabilistic_merges(system: OpenCDP) -> None:
    """Two records of one person that are two accounts (two user ids) are never merged."""
    rows = list(records(300, duplicate_share=0.3, seed=5))
    twins = [r for r in rows if r.record_id.endswith("-1")][:5]
    user_ids = {r.record_id: f"user-{r.record_id}" for r in twins}
    user_ids.update({f"c{r.person}": f"user-c{r.person}" for r in twins})
    _import(system.engine, rows, user_ids)
    summary = runner.run(system.engine)
    process(system.engine)
    partition = _partition(system.engine)
    assert summary.merge_protection >= 1
    for twin in twins:
        assert partition[twin.record_id] != partition[f"c{twin.person}"]


def test_a_cancelled_run_writes_no_merge(planted: tuple[OpenCDP, dict[str, int]]) -> None:
    system, _ = planted
    summary = runner.run(system.engine, confirm=lambda s: False)
    assert summary.cancelled and summary.auto_merges > 0
    with system.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(match_candidates)).scalar_one() == 0


def test_too_little_to_match_on_is_refused_with_the_reason(system: OpenCDP) -> None:
    log_messages(
        system.engine,
        [{"type": "identify", "userId": f"u{i}", "traits": {"plan": "pro"}} for i in range(30)],
    )
    process(system.engine)
    with pytest.raises(ModelError, match="at least two of"):
        runner.run(system.engine)


def test_configuration_names_the_wrong_field() -> None:
    with pytest.raises(ValueError, match=r"blocking\[0\] names the unknown field 'nickname'"):
        MatchConfig.model_validate({"blocking": [["nickname"]]})
    with pytest.raises(ValueError, match="review must not be above auto_merge"):
        MatchConfig.model_validate({"thresholds": {"auto_merge": 0.6, "review": 0.9}})
