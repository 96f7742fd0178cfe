"""Edges that arrive out of canonical order (a late event, or an earlier copy of a known edge).

Identity resolution must not depend on arrival order (`identity.graph`). The cheap cases are
handled in place: an edge that joins distinct groups within the limits (`safe_out_of_order`), an
older edge inside one group (`relink_within_group`: Kruskal's exchange), an edge moved earlier
that made all its joins already (`redate_in_place`), a new anchor (`fix_anchor`). Anything else
recomputes the connected component canonically from its stored edges (`recompute_component`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from opencdp import logs
from opencdp.identity.graph import Edge, EdgeKey, Link, Resolution, profile_id_for, resolve
from opencdp.identity.identifiers import Identifier
from opencdp.process.working_set import WorkingProfile, forest_path, iso_text, pair_row
from opencdp.profiles.state import ProfileState
from opencdp.store.schema import (
    consent_history,
    event_owners,
    events,
    identities,
    identity_conflicts,
    identity_edge_members,
    identity_edges,
    identity_links,
    profile_events,
    profiles,
    sources,
)

if TYPE_CHECKING:
    from opencdp.process.chunk import Chunk

log = logs.get("opencdp.processor")


def safe_out_of_order(chunk: Chunk, edge: Edge, touched: set[str]) -> bool:
    """Whether an edge older than its groups' newest can still be applied incrementally.

    It can when the canonical order would give the same groups, links and conflicts: its known
    identifiers sit in distinct groups (so it links the same pairs at any time) and the joined
    groups with its new identifiers stay within the limits (so no join before or after it
    changes outcome). A new anchor is then fixed by `fix_anchor`."""
    known = [i for i in edge.identifiers if chunk.pid(i) is not None]
    if len(known) != len(touched):
        return False
    if not touched:
        return True
    if _marked(chunk, edge, touched):
        return False
    counts: dict[str, int] = {}
    for pid in touched:
        for kind, n in chunk.profiles[pid].counts.items():
            counts[kind] = counts.get(kind, 0) + n
    for ident in edge.identifiers:
        if chunk.pid(ident) is None:
            counts[ident.type] = counts.get(ident.type, 0) + 1
    return all(counts.get(kind, 0) <= limit for kind, limit in chunk.rules.limits.items())


def _marked(chunk: Chunk, edge: Edge, touched: set[str]) -> bool:
    """Whether a rejection is in play: the edge or one of its profiles holds a rejected identifier.

    Then the cheap in-place strategies are not taken: moving a join earlier may change not only
    whether a later join is refused but why (`limit:…` is checked before `rejected`, and a group
    that grew earlier can exceed a limit where it only held a rejected pair before). The canonical
    recomputation decides instead; rejections are few, so this is rare."""
    if not chunk.rejected:
        return False
    return any(i in chunk.rejected for i in edge.identifiers) or any(chunk.marks_of(p) for p in touched)


def fix_anchor(chunk: Chunk, edge: Edge) -> None:
    """If an identifier of the edge now dates from before its group's anchor, it becomes the anchor."""
    pid = chunk.pid(edge.identifiers[0])
    if pid is None or any(chunk.pid(i) != pid for i in edge.identifiers):
        return
    candidate = min(edge.identifiers, key=Identifier.sort_key)
    if (edge.key, candidate.sort_key()) < chunk.profiles[pid].anchor_key:
        _reanchor(chunk, pid, candidate, edge.key)


def _reanchor(chunk: Chunk, pid: str, ident: Identifier, key: EdgeKey) -> None:
    """A lone identifier now dates from an earlier event and becomes its group's anchor: the
    group keeps its members and state but takes the id derived from the new anchor."""
    old = chunk.profiles[pid]
    new_id = profile_id_for(ident)
    fresh = WorkingProfile(new_id, (key, ident.sort_key()), ident, old.last_key, dict(old.counts), old.state)
    old.state, old.merged_into = ProfileState(), new_id
    chunk.profiles[new_id] = fresh
    chunk.redirect(pid, new_id)
    chunk.changed(pid, new_id)


def relink_within_group(chunk: Chunk, edge: Edge, touched: set[str]) -> bool:
    """An older edge among identifiers that are already one group changes only which link
    explains the group (Kruskal: it replaces the newest link on the path it closes)."""
    if len(touched) != 1 or any(chunk.pid(i) is None for i in edge.identifiers):
        return False
    if _marked(chunk, edge, touched):
        return False
    pid = next(iter(touched))
    adjacent: dict[Identifier, list[tuple[Identifier, int, EdgeKey]]] = {}
    for link_id, r in chunk.links_of(pid):
        left, right = (
            Identifier(r["left_type"], r["left_value"]),
            Identifier(r["right_type"], r["right_value"]),
        )
        link_key: EdgeKey = (r["ts"], r["message_id"], r["source_id"])
        adjacent.setdefault(left, []).append((right, link_id, link_key))
        adjacent.setdefault(right, []).append((left, link_id, link_key))
    head = edge.identifiers[0]
    for other in edge.identifiers[1:]:
        path = forest_path(adjacent, head, other)
        if path is None:
            return False
        newest = max(path, key=lambda step: step[1])
        if newest[1] <= edge.key:
            continue  # already joined before this edge: it stays redundant
        chunk.delete_link(newest[0])
        for node in list(adjacent):
            adjacent[node] = [step for step in adjacent[node] if step[1] != newest[0]]
        link = Link(edge.event_id, edge.rule, head, other, edge.key)
        new_id = chunk.add_link({"profile_id": pid, **pair_row(link)})
        adjacent.setdefault(head, []).append((other, new_id, edge.key))
        adjacent.setdefault(other, []).append((head, new_id, edge.key))
    fix_anchor(chunk, edge)
    return True


def redate_in_place(chunk: Chunk, edge: Edge, old_event_id: int) -> bool:
    """An edge moved earlier keeps its joins when it already made every join it asks for (it
    still comes first for them): only its links' dates and maybe the anchor change."""
    if len(edge.identifiers) > 1:
        pids = {chunk.pid(i) for i in edge.identifiers}
        if len(pids) != 1:
            return False  # some join of this edge was refused: recompute the conflict
        if _marked(chunk, edge, {p for p in pids if p is not None}):
            return False
        chunk.write_links()  # the links are counted and moved in the database
        made = chunk.conn.execute(
            sa.select(sa.func.count())
            .select_from(identity_links)
            .where(identity_links.c.event_id == old_event_id)
        ).scalar_one()
        if int(made) != len(edge.identifiers) - 1:
            return False
        chunk.conn.execute(
            identity_links.update()
            .where(identity_links.c.event_id == old_event_id)
            .values(event_id=edge.event_id, ts=edge.key[0], message_id=edge.key[1], source_id=edge.key[2])
        )
    fix_anchor(chunk, edge)
    return True


def _component(conn: sa.Connection, start: set[int]) -> tuple[set[int], set[int]]:
    """Identity ids and edge ids of the connected component around `start` identities."""
    frontier = set(start)
    members: set[int] = set()
    edge_ids: set[int] = set()
    while frontier:
        members |= frontier
        new_edges = {
            r[0]
            for r in conn.execute(
                sa.select(identity_edge_members.c.edge_id).where(
                    identity_edge_members.c.identity_id.in_(list(frontier))
                )
            )
        } - edge_ids
        edge_ids |= new_edges
        frontier = (
            {
                r[0]
                for r in conn.execute(
                    sa.select(identity_edge_members.c.identity_id).where(
                        identity_edge_members.c.edge_id.in_(list(new_edges))
                    )
                )
            }
            - members
            if new_edges
            else set()
        )
    return members, edge_ids


def _stored_edges(conn: sa.Connection, edge_ids: set[int]) -> list[Edge]:
    rows = conn.execute(
        sa.select(
            identity_edges.c.id,
            identity_edges.c.event_id,
            identity_edges.c.ts,
            identity_edges.c.message_id,
            identity_edges.c.source_id,
            identity_edges.c.rule,
            identity_edge_members.c.position,
            identities.c.type,
            identities.c.value,
        )
        .join(identity_edge_members, identity_edge_members.c.edge_id == identity_edges.c.id)
        .join(identities, identities.c.id == identity_edge_members.c.identity_id)
        .where(identity_edges.c.id.in_(list(edge_ids)))
    ).all()
    parts: dict[int, list[Any]] = {}
    for row in rows:
        parts.setdefault(row.id, []).append(row)
    return [
        Edge(
            (r[0].ts, r[0].message_id, r[0].source_id),
            r[0].event_id,
            tuple(Identifier(m.type, m.value) for m in sorted(r, key=lambda m: m.position)),
            r[0].rule,
        )
        for r in parts.values()
    ]


def recompute_component(chunk: Chunk, edge: Edge) -> None:
    """Resolve the edge's connected component again, canonically, and rewrite its groups."""
    recompute_around(chunk, edge.identifiers)


def recompute_around(chunk: Chunk, identifiers: Iterable[Identifier]) -> set[str]:
    """Resolve the connected component of these (cached) identifiers again, canonically, with the
    chunk's rejections, and rewrite its groups; returns the component's live profile ids."""
    chunk.flush()
    conn = chunk.conn
    members, edge_ids = _component(conn, {chunk.ident[i][0] for i in identifiers if i in chunk.ident})
    if not edge_ids:
        return set()
    edges = _stored_edges(conn, edge_ids)
    resolution = resolve(edges, chunk.rules.limits, partners=chunk.partners)
    ident_rows = conn.execute(
        sa.select(identities.c.id, identities.c.type, identities.c.value, identities.c.profile_id).where(
            identities.c.id.in_(list(members))
        )
    ).all()
    by_ident = {Identifier(r.type, r.value): r for r in ident_rows}
    old_ids = {r.profile_id for r in ident_rows if r.profile_id}
    chunk.load_profiles(old_ids)
    groups = resolution.groups()
    new_ids = {g.profile_id for g in groups}
    conn.execute(identity_links.delete().where(identity_links.c.profile_id.in_(list(old_ids | new_ids))))
    pairs = [(i.type, i.value) for i in by_ident]
    for start in range(0, len(pairs), 400):
        part = pairs[start : start + 400]
        conn.execute(
            identity_conflicts.delete().where(
                sa.or_(
                    sa.tuple_(identity_conflicts.c.left_type, identity_conflicts.c.left_value).in_(part),
                    sa.tuple_(identity_conflicts.c.right_type, identity_conflicts.c.right_value).in_(part),
                )
            )
        )
    chunk.record(resolution)
    moves: list[dict[str, Any]] = []
    for group in groups:
        pid = group.profile_id
        for ident in group.members:
            if by_ident[ident].profile_id != pid:
                moves.append({"iid": by_ident[ident].id, "pid": pid})
            if ident in chunk.ident:
                chunk.ident[ident][1] = pid
                chunk.marks_changed()
        profile = WorkingProfile(pid, group.anchor_key, group.anchor, group.last_key, dict(group.counts))
        member_ids = [by_ident[i].id for i in group.members]
        profile.state = _refold(conn, member_ids)
        owned = sa.select(event_owners.c.event_id).where(event_owners.c.identity_id.in_(member_ids))
        conn.execute(
            profile_events.update().where(profile_events.c.event_id.in_(owned)).values(profile_id=pid)
        )
        conn.execute(
            consent_history.update().where(consent_history.c.event_id.in_(owned)).values(profile_id=pid)
        )
        chunk.profiles[pid] = profile
        chunk.revive(pid)
        chunk.changed(pid)
    if moves:
        conn.execute(
            identities.update()
            .where(identities.c.id == sa.bindparam("iid"))
            .values(profile_id=sa.bindparam("pid")),
            moves,
        )
    for old in sorted(old_ids - new_ids):
        loser = chunk.profiles[old]
        target = resolution.group_of[loser.anchor].profile_id
        loser.merged_into, loser.state = target, ProfileState()
        chunk.redirect(old, target)
        chunk.changed(old)
    _repoint_merged(chunk, resolution, old_ids | new_ids)
    log.debug("component recomputed", identities=len(members), edges=len(edges), profiles=len(groups))
    return new_ids


def _repoint_merged(chunk: Chunk, resolution: Resolution, ids: set[str]) -> None:
    """Profiles merged away earlier follow their anchor: after a split (an unmerge, a late edge
    that refuses a join) an old id resolves to the profile that holds its anchor identifier now."""
    rows = chunk.conn.execute(
        sa.select(profiles.c.id, profiles.c.anchor, profiles.c.merged_into).where(
            profiles.c.merged_into.in_(sorted(ids)), profiles.c.id.not_in(sorted(ids))
        )
    ).all()
    for row in rows:
        group = resolution.group_of.get(Identifier(row.anchor[2], row.anchor[3]))
        if group is None or group.profile_id == row.merged_into:
            continue
        chunk.conn.execute(
            profiles.update().where(profiles.c.id == row.id).values(merged_into=group.profile_id)
        )
        if (cached := chunk.profiles.get(row.id)) is not None:
            cached.merged_into = group.profile_id


def _refold(conn: sa.Connection, identity_ids: list[int]) -> ProfileState:
    """A profile's state folded again from every event its identities own."""
    state = ProfileState()
    stmt = (
        sa.select(
            events.c.payload, events.c.timestamp, events.c.message_id, events.c.source_id, sources.c.name
        )
        .join(event_owners, event_owners.c.event_id == events.c.id)
        .join(sources, sources.c.id == events.c.source_id)
        .where(event_owners.c.identity_id.in_(identity_ids))
    )
    for row in conn.execute(stmt):
        state.apply(row.payload, iso_text(row.timestamp), row.message_id, row.source_id, row.name)
    return state
