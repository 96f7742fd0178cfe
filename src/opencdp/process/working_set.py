"""The working set of one processing transaction: profiles as the processor holds them, and the
small helpers (fixed-width times, edge signatures, paths in the link forest) it needs."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opencdp.identity.graph import Conflict, EdgeKey, Group, Link
from opencdp.identity.identifiers import Identifier
from opencdp.profiles.state import ProfileState


def iso_text(moment: datetime) -> str:
    """Fixed-width UTC text: sorts exactly like the instants it names."""
    m = moment.astimezone(UTC)
    day = f"{m.year:04d}-{m.month:02d}-{m.day:02d}"
    return f"{day}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}.{m.microsecond:06d}Z"


def parse_iso(text: str | None) -> datetime | None:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) if text else None


@dataclass
class WorkingProfile:
    id: str
    anchor_key: tuple[Any, ...]
    anchor: Identifier
    last_key: EdgeKey
    counts: dict[str, int]
    state: ProfileState = field(default_factory=ProfileState)
    merged_into: str | None = None

    def as_group(self, members: set[Identifier], marks: Iterable[Identifier] = ()) -> Group:
        """The profile as a resolution group seeded with some of its members; `marks` must be
        every identifier of the profile named by a rejection (not only those in `members`)."""
        return Group(
            self.anchor_key, self.anchor, set(members), Counter(self.counts), self.last_key, set(marks)
        )

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "merged_into": self.merged_into,
            "anchor": [
                list(self.anchor_key[0]),
                list(self.anchor_key[1]),
                self.anchor.type,
                self.anchor.value,
            ],
            "last_edge_key": list(self.last_key),
            "identity_counts": self.counts,
            "traits": self.state.traits,
            "trait_meta": self.state.trait_meta,
            "event_counts": self.state.event_counts,
            "consent": {purpose: record[0] for purpose, record in self.state.consent.items()},
            "consent_meta": self.state.consent,
            "first_seen": parse_iso(self.state.first_seen),
            "last_seen": parse_iso(self.state.last_seen),
            "updated_at": datetime.now(UTC),
        }


def profile_from_row(row: Any) -> WorkingProfile:
    anchor = row.anchor
    state = ProfileState(
        dict(row.traits),
        dict(row.trait_meta),
        dict(row.event_counts),
        iso_text(row.first_seen) if row.first_seen else None,
        iso_text(row.last_seen) if row.last_seen else None,
        {k: list(v) for k, v in (row.consent_meta or {}).items()},
    )
    return WorkingProfile(
        row.id,
        (tuple(anchor[0]), tuple(anchor[1])),
        Identifier(anchor[2], anchor[3]),
        tuple(row.last_edge_key),
        dict(row.identity_counts),
        state,
        row.merged_into,
    )


def forest_path(
    adjacent: dict[Identifier, list[tuple[Identifier, int, EdgeKey]]], start: Identifier, goal: Identifier
) -> list[tuple[int, EdgeKey]] | None:
    """The links on the unique path between two identifiers of a spanning forest (None: not connected)."""
    previous: dict[Identifier, tuple[Identifier, int, EdgeKey] | None] = {start: None}
    queue = [start]
    while queue:
        node = queue.pop()
        if node == goal:
            path = []
            while (step := previous[node]) is not None:
                path.append((step[1], step[2]))
                node = step[0]
            return path
        for neighbour, link_id, key in adjacent.get(node, []):
            if neighbour not in previous:
                previous[neighbour] = (node, link_id, key)
                queue.append(neighbour)
    return None


def signature(ids: list[Identifier], rule: str) -> str:
    text = rule + "\x1d" + "\x1f".join(f"{i.type}\x1e{i.value}" for i in ids)
    return hashlib.sha256(text.encode()).hexdigest()


def pair_row(pair: Link | Conflict) -> dict[str, Any]:
    """The columns identity links and conflicts share: which two identifiers, by which event."""
    return {
        "event_id": pair.event_id,
        "rule": pair.rule,
        "left_type": pair.left.type,
        "left_value": pair.left.value,
        "right_type": pair.right.type,
        "right_value": pair.right.value,
        "ts": pair.key[0],
        "message_id": pair.key[1],
        "source_id": pair.key[2],
    }
