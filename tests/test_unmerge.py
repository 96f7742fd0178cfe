"""Undoing a merge in the processor, on SQLite and PostgreSQL: live processing + a rejection
applied == `rebuild` == fresh processing with the rejection present from the start, and a
rejected link is as if the events that made it had never joined anything."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opencdp.config import Settings
from opencdp.identity.graph import profile_id_for, rejected_pair
from opencdp.identity.identifiers import Identifier
from opencdp.process.processor import Processor, reset_derived_state
from opencdp.profiles.reader import get_profile
from opencdp.profiles.unmerge import UnmergeError, reject
from opencdp.segments import store as segment_store
from opencdp.store.database import create_engine
from opencdp.store.schema import (
    identity_links,
    identity_rejections,
    match_candidates,
    metadata,
    segment_memberships,
    segments,
    sources,
)
from opencdp.system import OpenCDP
from tests.identity_helpers import RULES, log_messages, process, profile_of, world
from tests.test_identity import event_sets


def ts(day: int, minute: int = 0) -> str:
    return f"2026-05-{day:02d}T10:{minute:02d}:00Z"


def state(engine: sa.Engine) -> dict[str, Any]:
    """`world` plus segment memberships (by profile id: ids derive from anchors, so they compare)."""
    with engine.connect() as conn:
        members = {
            (r.name, r.profile_id)
            for r in conn.execute(
                sa.select(segments.c.name, segment_memberships.c.profile_id)
                .join(segments, segments.c.id == segment_memberships.c.segment_id)
                .where(segment_memberships.c.exited_at.is_(None))
            )
        }
    return world(engine) | {"members": members}


def ident(text: str) -> Identifier:
    kind, _, value = text.partition(":")
    return Identifier(kind, value)


SHARED = [
    {"type": "identify", "userId": "u1", "anonymousId": "a1", "traits": {"plan": "gold"}, "timestamp": ts(1)},
    {"type": "track", "userId": "u1", "event": "Order Completed", "timestamp": ts(2)},
    # the refused event: it carries only identifiers
    {"type": "alias", "previousId": "a1", "userId": "u2", "messageId": "alias-1", "timestamp": ts(3)},
    {"type": "identify", "userId": "u2", "traits": {"plan": "free"}, "timestamp": ts(4)},
]


def _messages(n: int = 0) -> list[dict[str, Any]]:
    return [dict(m, messageId=m.get("messageId", f"s{i}")) for i, m in enumerate(SHARED[: n or None])]


def test_unmerge_splits_a_profile_and_rebuild_agrees(system: OpenCDP) -> None:
    engine = system.engine
    log_messages(engine, _messages())
    process(engine)
    # u1 and u2 may not be one profile (a user_id each): the alias merged a1 into one of them
    pid = profile_of(engine, "anonymous_id", "a1")
    with engine.connect() as conn:
        link = conn.execute(
            sa.select(identity_links).where(
                identity_links.c.profile_id == pid, identity_links.c.rule == "alias"
            )
        ).first()
    assert link is None  # the alias was refused by the user_id limit: a1 stays with u1
    with engine.connect() as conn:
        link = conn.execute(sa.select(identity_links).where(identity_links.c.profile_id == pid)).one()
    rejection = reject(engine, pid, link_id=link.id, reason="shared tablet", created_by="test")
    assert rejection["applied_at"] is None and rejection["reason"] == "shared tablet"
    Processor(engine, RULES).run_until_caught_up()  # no new events: only the rejection to apply
    with engine.connect() as conn:
        assert conn.execute(sa.select(identity_rejections.c.applied_at)).scalar() is not None
    assert profile_of(engine, "anonymous_id", "a1") != profile_of(engine, "user_id", "u1")
    live = state(engine)
    reset_derived_state(engine)
    process(engine)
    assert state(engine) == live


def test_a_rejected_link_is_as_if_the_joining_event_never_came(system: OpenCDP) -> None:
    """An alias alone joins u2 with a1; rejecting (u2, a1) gives the world of a log without it."""
    engine = system.engine
    messages = [
        {"type": "identify", "anonymousId": "a1", "traits": {"plan": "gold"}, "timestamp": ts(1)},
        {"type": "track", "anonymousId": "a1", "event": "Viewed", "timestamp": ts(2)},
        {"type": "alias", "previousId": "a1", "userId": "u2", "timestamp": ts(3)},
        {"type": "identify", "userId": "u2", "traits": {"plan": "free"}, "timestamp": ts(4)},
        {"type": "track", "userId": "u2", "event": "Order Completed", "timestamp": ts(5)},
    ]
    messages = [dict(m, messageId=f"j{i}") for i, m in enumerate(messages)]
    log_messages(engine, messages)
    process(engine)
    pid = profile_of(engine, "user_id", "u2")
    assert profile_of(engine, "anonymous_id", "a1") == pid
    segment_store.save(engine, "gold", {"trait": "plan", "op": "eq", "value": "gold"})
    reject(engine, pid, left=ident("user_id:u2"), right=ident("anonymous_id:a1"), reason="not them")
    process(engine)
    after = state(engine)
    a1, u2 = profile_of(engine, "anonymous_id", "a1"), profile_of(engine, "user_id", "u2")
    assert a1 != u2
    assert ("gold", a1) in after["members"]  # a1's own trait again, and its segment
    # the same database, emptied, that never saw the alias (it carried only identifiers)
    _emptied(engine)
    log_messages(engine, [m for m in messages if m["type"] != "alias"])
    process(engine)
    segment_store.save(engine, "gold", {"trait": "plan", "op": "eq", "value": "gold"})
    never = state(engine)
    assert after["profiles"][a1] == never["profiles"][a1]
    for key in ("identifiers", "traits", "identity_counts"):  # the alias still counts as u2's event
        assert after["profiles"][u2][key] == never["profiles"][u2][key]
    assert after["members"] == never["members"]


def test_profiles_merged_away_earlier_follow_their_anchor(system: OpenCDP) -> None:
    """x merged into u1, then u1 into a1; unmerging (u1, a1) makes x's old id resolve to u1 again."""
    engine = system.engine
    messages = [
        {"type": "page", "anonymousId": "a1", "timestamp": ts(1)},
        {"type": "identify", "userId": "u1", "timestamp": ts(2)},
        {
            "type": "identify",
            "traits": {"email": "x@example.com"},
            "anonymousId": "x-only",
            "timestamp": ts(3),
        },
        {"type": "identify", "userId": "u1", "anonymousId": "x-only", "timestamp": ts(4)},
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "timestamp": ts(5)},
    ]
    log_messages(engine, [dict(m, messageId=f"r{i}") for i, m in enumerate(messages)])
    process(engine)
    old_x = profile_id_for(ident("email:x@example.com"))  # the anchor: e-mail sorts before anonymous ids
    pid = profile_of(engine, "anonymous_id", "a1")
    assert profile_of(engine, "user_id", "u1") == pid and get_profile(engine, old_x)["id"] == pid
    reject(engine, pid, left=ident("user_id:u1"), right=ident("anonymous_id:a1"))
    process(engine)
    u1 = profile_of(engine, "user_id", "u1")
    assert u1 != pid and get_profile(engine, old_x)["id"] == u1
    assert old_x not in get_profile(engine, pid)["merged_ids"]
    assert state(engine)["merged_resolve_to_live"]


def test_bad_unmerge_input_names_the_field(system: OpenCDP) -> None:
    engine = system.engine
    log_messages(engine, [*_messages(2), dict(SHARED[3], messageId="x")])
    process(engine)
    pid = profile_of(engine, "user_id", "u1")
    other = profile_of(engine, "user_id", "u2")
    with engine.connect() as conn:
        foreign = conn.execute(
            sa.select(identity_links.c.id).where(identity_links.c.profile_id == other)
        ).scalar()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"link_id": 999_999}, "link_id"),
        ({"left": ident("user_id:u1"), "right": ident("user_id:u2")}, "right"),
        ({"left": ident("user_id:nobody"), "right": ident("anonymous_id:a1")}, "left"),
        ({"left": ident("user_id:u1"), "right": ident("user_id:u1")}, "right"),
        ({"left": ident("user_id:u\x001"), "right": ident("anonymous_id:a1")}, "left.value"),
        ({"link_id": 1, "reason": "bad\x00"}, "reason"),
        ({}, "link_id"),
    ]
    if foreign is not None:
        cases.append(({"link_id": foreign}, "link_id"))
    for kwargs, field in cases:
        with pytest.raises(UnmergeError) as caught:
            reject(engine, pid, **kwargs)
        assert caught.value.field == field, kwargs


def test_rejecting_marks_the_match_candidate_and_allow_again_restores(system: OpenCDP) -> None:
    engine = system.engine
    messages = [dict(m, messageId=f"k{i}") for i, m in enumerate(SHARED[:2])]
    log_messages(engine, messages)
    process(engine)
    before = state(engine)
    pid = profile_of(engine, "user_id", "u1")
    a, b = rejected_pair(ident("user_id:u1"), ident("anonymous_id:a1"))
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            match_candidates.insert().values(
                model="people",
                left_type=a.type,
                left_value=a.value,
                right_type=b.type,
                right_value=b.value,
                probability=0.99,
                match_weight=7.0,
                comparisons=[],
                explanation="x",
                status="pending",
                scored_at=now,
            )
        )
    rejection = reject(engine, pid, left=a, right=b, created_by="user:1")
    with engine.connect() as conn:
        assert conn.execute(sa.select(match_candidates.c.status)).scalar() == "rejected"
    process(engine)
    assert profile_of(engine, "user_id", "u1") != profile_of(engine, "anonymous_id", "a1")
    live = Processor(engine, RULES).allow_again(rejection["id"])
    assert live is not None and len(live) == 1
    Processor(engine, RULES).refresh_all_queued()
    assert state(engine) == before
    assert Processor(engine, RULES).allow_again(rejection["id"]) is None


# -- the property: live + reject == rebuild == fresh with the rejection from the start ----------


def _emptied(engine: sa.Engine) -> None:
    """Every row gone but the source's (consent records name the source by id: on PostgreSQL a
    source made again would get a new one)."""
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            if table is not sources:
                conn.execute(table.delete())


@pytest.fixture
def scratch(database_url: str, tmp_path: Any) -> Any:
    engine = create_engine(Settings(data_dir=tmp_path, database_url=database_url))
    from opencdp.store.database import migrate

    migrate(engine)
    yield engine
    engine.dispose()


def _deliver(engine: sa.Engine, messages: list[dict[str, Any]], chunk: int) -> None:
    for start in range(0, len(messages), 4):
        log_messages(engine, messages[start : start + 4])
        process(engine, chunk_size=chunk)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=event_sets(), seed=st.integers(0, 10_000), chunk=st.sampled_from([1, 3, 500]))
def test_live_unmerge_equals_rebuild_equals_fresh(
    scratch: sa.Engine, messages: list[dict[str, Any]], seed: int, chunk: int
) -> None:
    engine = scratch
    rng = random.Random(seed)
    cut = rng.randint(1, len(messages))
    _emptied(engine)
    segment_store.save(engine, "gold", {"trait": "plan", "op": "eq", "value": "gold"})
    _deliver(engine, messages[:cut], chunk)
    with engine.connect() as conn:
        links = conn.execute(sa.select(identity_links).order_by(identity_links.c.id)).all()
    if not links:
        return
    link = links[rng.randrange(len(links))]
    left, right = Identifier(link.left_type, link.left_value), Identifier(link.right_type, link.right_value)
    reject(engine, link.profile_id, link_id=link.id, reason="test")
    _deliver(engine, messages[cut:], chunk)
    process(engine)
    live = state(engine)
    assert live["merged_resolve_to_live"]
    groups = [p["identifiers"] for p in live["profiles"].values()]
    assert not any(str(left) in g and str(right) in g for g in groups)
    reset_derived_state(engine)
    process(engine)
    assert state(engine) == live
    # fresh: the rejection first, then the same log arriving in another order
    shuffled = list(messages)
    rng.shuffle(shuffled)
    _emptied(engine)
    segment_store.save(engine, "gold", {"trait": "plan", "op": "eq", "value": "gold"})
    a, b = rejected_pair(left, right)
    with engine.begin() as conn:
        conn.execute(
            identity_rejections.insert().values(
                left_type=a.type,
                left_value=a.value,
                right_type=b.type,
                right_value=b.value,
                created_at=datetime.now(UTC),
            )
        )
    _deliver(engine, shuffled, chunk)
    assert state(engine) == live
