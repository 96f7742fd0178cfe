"""Rejections in the pure identity graph: a rejected pair is never one group, the result equals
resolving without the refused edges, and it does not depend on the order of edges."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from opencdp.identity.graph import REJECTED, Edge, Rejection, Resolution, rejected_pair, resolve
from opencdp.identity.identifiers import Identifier

LIMITS = {"user_id": 1, "email": 2}
POOL = [
    *(Identifier("user_id", f"u{n}") for n in range(3)),
    *(Identifier("email", f"e{n}") for n in range(3)),
    *(Identifier("anonymous_id", f"a{n}") for n in range(4)),
]


@st.composite
def graphs(draw: st.DrawFn, width: int = 2) -> list[Edge]:
    n = draw(st.integers(1, 16))
    edges = []
    for i in range(n):
        size = draw(st.integers(2, width))
        chosen = draw(st.lists(st.sampled_from(POOL), min_size=size, max_size=size, unique=True))
        key = (f"2026-05-{draw(st.integers(1, 4)):02d}", f"m{i}", 1)
        edges.append(Edge(key, i + 1, tuple(sorted(chosen, key=Identifier.sort_key))))
    return edges


def partition(resolution: Resolution) -> set[frozenset[Identifier]]:
    return {frozenset(g.members) for g in resolution.groups()}


def _respects(resolution: Resolution, rejections: list[Rejection]) -> None:
    for group in resolution.groups():
        for kind, limit in LIMITS.items():
            assert sum(1 for m in group.members if m.type == kind) <= limit
        for a, b in rejections:
            assert not (a in group.members and b in group.members)


@settings(max_examples=150, deadline=None)
@given(edges=graphs(), pick=st.integers(0, 1000), extra=st.booleans(), seed=st.integers(0, 1000))
def test_rejecting_a_link_equals_resolving_without_the_refused_edges(
    edges: list[Edge], pick: int, extra: bool, seed: int
) -> None:
    before = resolve(edges, LIMITS)
    if not before.links:
        return
    link = before.links[pick % len(before.links)]
    rejections = [rejected_pair(link.left, link.right)]
    if extra:  # a second, arbitrary rejection
        rng = random.Random(seed)
        a, b = rng.sample(POOL, 2)
        rejections.append(rejected_pair(a, b))
    after = resolve(edges, LIMITS, rejections)
    assert after.group_of[link.left] is not after.group_of[link.right]
    _respects(after, rejections)
    refused = {c.event_id for c in after.conflicts if c.rule == REJECTED}
    assert refused
    without = resolve([e for e in edges if e.event_id not in refused], LIMITS)
    # identifiers seen only in refused edges stay alone; everything else is grouped the same
    alone = {frozenset({i}) for i in after.group_of if i not in without.group_of}
    assert partition(after) == partition(without) | alone
    assert {(x.left, x.right, x.event_id) for x in after.links} == {
        (x.left, x.right, x.event_id) for x in without.links
    }
    assert {(c.left, c.right, c.event_id, c.rule) for c in after.conflicts if c.rule != REJECTED} == {
        (c.left, c.right, c.event_id, c.rule) for c in without.conflicts
    }
    # the order edges are given in does not matter
    shuffled = list(edges)
    random.Random(seed).shuffle(shuffled)
    again = resolve(shuffled, LIMITS, list(reversed(rejections)))
    assert partition(again) == partition(after)
    assert [g.profile_id for g in again.groups()] == [g.profile_id for g in after.groups()]
    assert again.links == after.links and again.conflicts == after.conflicts


@settings(max_examples=100, deadline=None)
@given(edges=graphs(width=4), pick=st.integers(0, 1000), seed=st.integers(0, 1000))
def test_rejections_hold_with_edges_of_many_identifiers(edges: list[Edge], pick: int, seed: int) -> None:
    before = resolve(edges, LIMITS)
    if not before.links:
        return
    link = before.links[pick % len(before.links)]
    rejections = [rejected_pair(link.left, link.right)]
    after = resolve(edges, LIMITS, rejections)
    assert after.group_of[link.left] is not after.group_of[link.right]
    _respects(after, rejections)
    shuffled = list(edges)
    random.Random(seed).shuffle(shuffled)
    again = resolve(shuffled, LIMITS, rejections)
    assert partition(again) == partition(after)
    assert again.links == after.links and again.conflicts == after.conflicts


def test_groups_without_marks_skip_the_check() -> None:
    """The common case costs nothing: no rejections, no marks, no check."""
    a, b, c = Identifier("user_id", "u"), Identifier("email", "e"), Identifier("anonymous_id", "x")
    resolution = resolve([Edge(("1", "m1", 1), 1, (a, c)), Edge(("2", "m2", 1), 2, (b, c))], LIMITS, [(a, b)])
    assert not resolution.groups()[0].marks.isdisjoint({a, b})
    assert [x.rule for x in resolution.conflicts] == [REJECTED]
    plain = resolve([Edge(("1", "m1", 1), 1, (a, c))], LIMITS)
    assert all(not g.marks for g in plain.groups())
