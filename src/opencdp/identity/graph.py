"""The canonical, order-independent resolution of an identity graph.

An *edge* is the set of identifiers that arrived together in one event. Edges are applied in a
canonical order (event time, then message id), each one trying to join its identifiers into one
group; a join that would give a group more identifiers of a type than the rules allow is refused
and reported as a conflict. Because the order is canonical, the result depends only on which
events exist, never on the order in which they arrived. The processor applies an edge
incrementally when it is the newest its groups have seen (the same as this algorithm would) and
re-runs this algorithm on the connected component when a late event arrives.

An operator's *rejections* (pairs of identifiers that must never be one person: an undone merge)
are an input like the limits: a join that would put both identifiers of a rejected pair into one
group is refused as a conflict with rule `rejected`. Only identifiers named by some rejection are
tracked (a group's `marks`), and the check runs only when both groups hold some, so resolving
without rejections costs what it did.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from opencdp.identity.identifiers import Identifier

_NAMESPACE = uuid.UUID("6f0c8a4e-3b7d-5a1e-9c2f-0d4b8e6a1c37")

#: (event timestamp as ISO text, message id, source id): the canonical order of edges.
EdgeKey = tuple[str, str, int]
#: A rejected pair: two identifiers that must never be in one group (in `Identifier` order).
Rejection = tuple[Identifier, Identifier]
#: The rule of a join refused because an operator rejected it.
REJECTED = "rejected"


def rejected_pair(a: Identifier, b: Identifier) -> Rejection:
    """A pair as rejections store it: sorted in `Identifier` order (unordered in meaning)."""
    return (a, b) if a <= b else (b, a)


def partners_of(rejections: Iterable[Rejection]) -> dict[Identifier, frozenset[Identifier]]:
    """Each identifier named by a rejection -> the identifiers it must never be joined with."""
    partners: dict[Identifier, set[Identifier]] = {}
    for a, b in rejections:
        if a != b:
            partners.setdefault(a, set()).add(b)
            partners.setdefault(b, set()).add(a)
    return {ident: frozenset(others) for ident, others in partners.items()}


def profile_id_for(anchor: Identifier) -> str:
    """A profile's id derives from its anchor (its earliest identifier): stable and order-independent."""
    return str(uuid.uuid5(_NAMESPACE, f"{anchor.type}:{anchor.value}"))


@dataclass(frozen=True)
class Edge:
    key: EdgeKey
    event_id: int
    identifiers: tuple[Identifier, ...]  # sorted by Identifier.sort_key
    rule: str = "same_event"


@dataclass(frozen=True)
class Link:
    """An accepted join: why two identifiers are one person."""

    event_id: int
    rule: str
    left: Identifier
    right: Identifier
    key: EdgeKey


@dataclass(frozen=True)
class Conflict:
    """A refused join: `rule` names the limit it would have broken."""

    event_id: int
    rule: str
    left: Identifier
    right: Identifier
    key: EdgeKey


@dataclass
class Group:
    anchor_key: tuple[EdgeKey, tuple[int, str, str]]
    anchor: Identifier
    members: set[Identifier] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)
    last_key: EdgeKey = ("", "", 0)
    #: the members (all of them, also where `members` is partial) named by some rejection
    marks: set[Identifier] = field(default_factory=set)

    @property
    def profile_id(self) -> str:
        return profile_id_for(self.anchor)


class Resolution:
    """Union-find with merge protection. Use `apply(edge)` in canonical order."""

    def __init__(
        self,
        limits: dict[str, int],
        rejections: Iterable[Rejection] = (),
        partners: dict[Identifier, frozenset[Identifier]] | None = None,
    ) -> None:
        """`partners` (from `partners_of`) instead of `rejections` when one set of rejections
        serves many resolutions (the processor makes one per edge)."""
        self.limits = limits
        self.partners = partners if partners is not None else partners_of(rejections)
        self.group_of: dict[Identifier, Group] = {}
        self.links: list[Link] = []
        self.conflicts: list[Conflict] = []

    def groups(self) -> list[Group]:
        unique = {id(g): g for g in self.group_of.values()}
        return sorted(unique.values(), key=lambda g: g.anchor_key)

    def add_group(self, group: Group) -> None:
        """Seed an existing group (incremental processing)."""
        for member in group.members:
            self.group_of[member] = group

    def apply(self, edge: Edge) -> None:
        for ident in edge.identifiers:
            if ident not in self.group_of:
                group = Group(
                    (edge.key, ident.sort_key()), ident, {ident}, Counter({ident.type: 1}), edge.key
                )
                if ident in self.partners:
                    group.marks.add(ident)
                self.group_of[ident] = group
        head = edge.identifiers[0]
        for other in edge.identifiers[1:]:
            self._join(head, other, edge)
        for ident in edge.identifiers:
            group = self.group_of[ident]
            group.last_key = max(group.last_key, edge.key)

    def _join(self, a: Identifier, b: Identifier, edge: Edge) -> None:
        ga, gb = self.group_of[a], self.group_of[b]
        if ga is gb:
            return
        combined = ga.counts + gb.counts
        for kind, limit in sorted(self.limits.items()):
            if combined[kind] > limit:
                self.conflicts.append(Conflict(edge.event_id, f"limit:{kind}<={limit}", a, b, edge.key))
                return
        if ga.marks and gb.marks and self.rejects(ga.marks, gb.marks):
            self.conflicts.append(Conflict(edge.event_id, REJECTED, a, b, edge.key))
            return
        keep, lose = (ga, gb) if ga.anchor_key <= gb.anchor_key else (gb, ga)
        keep.members |= lose.members
        keep.marks |= lose.marks
        keep.counts = combined
        keep.last_key = max(keep.last_key, lose.last_key)
        for member in lose.members:
            self.group_of[member] = keep
        self.links.append(Link(edge.event_id, edge.rule, a, b, edge.key))

    def rejects(self, marks: set[Identifier], others: set[Identifier]) -> bool:
        """Whether some identifier of `marks` was rejected with some identifier of `others`."""
        small, large = (marks, others) if len(marks) <= len(others) else (others, marks)
        return any(not self.partners[m].isdisjoint(large) for m in small)


def resolve(
    edges: Iterable[Edge],
    limits: dict[str, int],
    rejections: Iterable[Rejection] = (),
    partners: dict[Identifier, frozenset[Identifier]] | None = None,
) -> Resolution:
    """The canonical resolution of a set of edges (the oracle the processor must agree with)."""
    resolution = Resolution(limits, rejections, partners)
    for edge in sorted(edges, key=lambda e: (e.key, e.identifiers)):
        resolution.apply(edge)
    return resolution


#: The built-in source whose `Identity Matched` events record probabilistic merges (`opencdp.match`).
MATCH_SOURCE = "opencdp-match"
MATCH_EVENT = "Identity Matched"


def edge_rule(call_type: str, payload: dict[str, object], source: str | None) -> str:
    """Why an event's identifiers are one person: an alias call, a probabilistic match (only
    from the matching job's own source, so no client can label its joins so), or the same event."""
    if call_type == "alias":
        return "alias"
    if source == MATCH_SOURCE and call_type == "track" and payload.get("event") == MATCH_EVENT:
        return "probabilistic"
    return "same_event"


def edge_for(event_id: int, key: EdgeKey, identifiers: Sequence[Identifier], rule: str) -> Edge:
    return Edge(key, event_id, tuple(identifiers), rule)
