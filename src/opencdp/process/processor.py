"""The processor: reads the event log in order and keeps identities and profiles up to date.

Each chunk of events is applied in one transaction together with the checkpoint, so a crash
never applies an event twice or skips one. Processors are serialised by a lock (see
`store.dialect.lock_for_processing`); because identity resolution is order-independent
(`identity.graph`), any number of processors, a rebuild and live processing all give the same
profiles.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp import logs
from opencdp.identity.graph import Edge, EdgeKey, Resolution, edge_for, resolve
from opencdp.identity.identifiers import Identifier, IdentityRules
from opencdp.privacy.consent import extract_consent
from opencdp.process.working_set import (
    WorkingProfile,
    forest_path,
    iso_text,
    profile_from_row,
    signature,
)
from opencdp.profiles.state import ProfileState
from opencdp.store.dialect import insert_ignoring_duplicates, lock_for_processing, upsert
from opencdp.store.schema import (
    DERIVED_TABLES,
    consent_history,
    event_owners,
    events,
    identities,
    identity_conflicts,
    identity_edge_members,
    identity_edges,
    identity_links,
    processor_state,
    profile_events,
    profiles,
    sources,
)

log = logs.get("opencdp.processor")
PROCESSOR = "profiles"


class _Chunk:
    """The working set of one transaction: caches of identities and profiles it touches."""

    def __init__(self, conn: sa.Connection, rules: IdentityRules) -> None:
        self.conn = conn
        self.rules = rules
        self.dialect = conn.dialect.name
        self.ident: dict[Identifier, list[Any]] = {}  # -> [identity id, profile id]
        self.profiles: dict[str, WorkingProfile] = {}
        self.dirty: set[str] = set()
        self.signatures: dict[str, tuple[EdgeKey, int]] = {}  # -> (edge key, event id)
        self.owners: list[dict[str, int]] = []
        self.facts: list[dict[str, Any]] = []
        self.consents: list[dict[str, Any]] = []
        #: written at flush, in bulk: new edges (by signature) and identities' new profile ids
        self.pending_edges: dict[str, dict[str, Any]] = {}
        self.pending_profile_ids: dict[int, str] = {}
        #: every profile this chunk changed (live or merged away): its derived state needs updating
        self.touched: set[str] = set()

    # -- loading ---------------------------------------------------------------------------------
    def preload(self, all_ids: set[Identifier], sigs: set[str]) -> None:
        pairs = [(i.type, i.value) for i in all_ids]
        for start in range(0, len(pairs), 400):
            part = pairs[start : start + 400]
            rows = self.conn.execute(
                sa.select(
                    identities.c.id, identities.c.type, identities.c.value, identities.c.profile_id
                ).where(sa.tuple_(identities.c.type, identities.c.value).in_(part))
            )
            for row in rows:
                self.ident[Identifier(row.type, row.value)] = [row.id, row.profile_id]
        sig_list = list(sigs)
        for start in range(0, len(sig_list), 400):
            edge_rows: Any = self.conn.execute(
                sa.select(
                    identity_edges.c.signature,
                    identity_edges.c.ts,
                    identity_edges.c.message_id,
                    identity_edges.c.source_id,
                    identity_edges.c.event_id,
                ).where(identity_edges.c.signature.in_(sig_list[start : start + 400]))
            )
            self.signatures.update((r[0], ((r[1], r[2], r[3]), r[4])) for r in edge_rows)
        self._load_profiles({v[1] for v in self.ident.values() if v[1]})

    def _load_profiles(self, ids: set[str]) -> None:
        missing = [i for i in ids if i not in self.profiles]
        for start in range(0, len(missing), 400):
            for row in self.conn.execute(
                sa.select(profiles).where(profiles.c.id.in_(missing[start : start + 400]))
            ):
                self.profiles[row.id] = profile_from_row(row)

    def insert_identities(self, first_seen: dict[Identifier, int]) -> None:
        """Create every identifier this chunk sees for the first time, in one statement."""
        new = [i for i in first_seen if i not in self.ident]
        if not new:
            return
        stmt = identities.insert().returning(identities.c.id, identities.c.type, identities.c.value)
        rows = self.conn.execute(
            stmt,
            [
                {"type": i.type, "value": i.value, "profile_id": None, "first_event_id": first_seen[i]}
                for i in new
            ],
        )
        for row in rows:
            self.ident[Identifier(row.type, row.value)] = [row.id, None]

    def _identity(self, ident: Identifier, event_id: int) -> list[Any]:
        found = self.ident.get(ident)
        if found is None:
            new_id = self.conn.execute(
                identities.insert().values(
                    type=ident.type, value=ident.value, profile_id=None, first_event_id=event_id
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            found = self.ident[ident] = [new_id, None]
        return found

    # -- applying one event ----------------------------------------------------------------------
    def apply(self, event: Any, ids: list[Identifier]) -> None:
        payload = event.payload
        if not ids:
            return  # nothing identifies a person (e.g. only placeholder values): kept in the log only
        ts = iso_text(event.timestamp)
        key: EdgeKey = (ts, event.message_id, event.source_id)
        for ident in ids:
            self._identity(ident, event.id)
        edge = edge_for(event.id, key, ids, event.type)
        sig = signature(ids, edge.rule)
        known = self.signatures.get(sig)
        if known is not None and key < known[0]:
            # The same identifiers were seen together before, but this event is earlier: the edge
            # now dates from it, which may change the canonical outcome.
            self.signatures[sig] = (key, event.id)
            pending = self.pending_edges.get(sig)
            if pending is not None:
                pending.update(event_id=event.id, ts=key[0], message_id=key[1], source_id=key[2])
            else:
                self.conn.execute(
                    identity_edges.update()
                    .where(identity_edges.c.signature == sig)
                    .values(event_id=event.id, ts=key[0], message_id=key[1], source_id=key[2])
                )
            if not self._redate_in_place(edge, known[1]):
                self._recompute_component(edge)
        elif known is None:
            self.signatures[sig] = (key, event.id)
            self._store_edge(edge, sig)
            touched = {self.ident[i][1] for i in ids if self.ident[i][1]}
            if all(self.profiles[p].last_key <= key for p in touched) or self._safe_out_of_order(
                edge, touched
            ):
                self._apply_incrementally(edge, touched)
                self._fix_anchor(edge)
            elif not self._relink_within_group(edge, touched):
                self._recompute_component(edge)
        owner_identity, owner_profile = self.ident[ids[0]]
        self.owners.append({"event_id": event.id, "identity_id": owner_identity})
        for change in extract_consent(payload):
            self.consents.append(
                {
                    "event_id": event.id,
                    "purpose": change.purpose,
                    "profile_id": owner_profile,
                    "granted": change.granted,
                    "version": change.version,
                    "ts": event.timestamp,
                    "source_id": event.source_id,
                }
            )
        properties = payload.get("properties")
        self.facts.append(
            {
                "event_id": event.id,
                "profile_id": owner_profile,
                "type": event.type,
                "name": payload.get("event") if event.type == "track" else payload.get("name"),
                "ts": event.timestamp,
                "source_id": event.source_id,
                "properties": properties if isinstance(properties, dict) else {},
            }
        )
        self.profiles[owner_profile].state.apply(payload, ts, event.message_id, event.source_id, event.source)
        self.dirty.add(owner_profile)

    def _reanchor(self, pid: str, ident: Identifier, key: EdgeKey) -> None:
        """A lone identifier now dates from an earlier event and becomes its group's anchor: the
        group keeps its members and state but takes the id derived from the new anchor."""
        from opencdp.identity.graph import profile_id_for

        old = self.profiles[pid]
        new_id = profile_id_for(ident)
        fresh = WorkingProfile(
            new_id, (key, ident.sort_key()), ident, old.last_key, dict(old.counts), old.state
        )
        old.state, old.merged_into = ProfileState(), new_id
        self.profiles[new_id] = fresh
        self._retarget(pid, new_id)
        self.dirty |= {pid, new_id}

    def _relink_within_group(self, edge: Edge, touched: set[str]) -> bool:
        """An older edge among identifiers that are already one group changes only which link
        explains the group (Kruskal: it replaces the newest link on the path it closes)."""
        if len(touched) != 1 or any(self.ident[i][1] is None for i in edge.identifiers):
            return False
        pid = next(iter(touched))
        rows = self.conn.execute(
            sa.select(
                identity_links.c.id,
                identity_links.c.left_type,
                identity_links.c.left_value,
                identity_links.c.right_type,
                identity_links.c.right_value,
                identity_links.c.ts,
                identity_links.c.message_id,
                identity_links.c.source_id,
            ).where(identity_links.c.profile_id == pid)
        ).all()
        adjacent: dict[Identifier, list[tuple[Identifier, int, EdgeKey]]] = {}
        for r in rows:
            left, right = Identifier(r.left_type, r.left_value), Identifier(r.right_type, r.right_value)
            link_key: EdgeKey = (r.ts, r.message_id, r.source_id)
            adjacent.setdefault(left, []).append((right, r.id, link_key))
            adjacent.setdefault(right, []).append((left, r.id, link_key))
        head = edge.identifiers[0]
        for other in edge.identifiers[1:]:
            path = forest_path(adjacent, head, other)
            if path is None:
                return False
            newest = max(path, key=lambda step: step[1])
            if newest[1] <= edge.key:
                continue  # already joined before this edge: it stays redundant
            self.conn.execute(identity_links.delete().where(identity_links.c.id == newest[0]))
            for node in list(adjacent):
                adjacent[node] = [step for step in adjacent[node] if step[1] != newest[0]]
            new_id = self.conn.execute(
                identity_links.insert(),
                {
                    "profile_id": pid,
                    "event_id": edge.event_id,
                    "rule": edge.rule,
                    "left_type": head.type,
                    "left_value": head.value,
                    "right_type": other.type,
                    "right_value": other.value,
                    "ts": edge.key[0],
                    "message_id": edge.key[1],
                    "source_id": edge.key[2],
                },
            ).inserted_primary_key[0]  # type: ignore[index]
            adjacent.setdefault(head, []).append((other, new_id, edge.key))
            adjacent.setdefault(other, []).append((head, new_id, edge.key))
        self._fix_anchor(edge)
        return True

    def _redate_in_place(self, edge: Edge, old_event_id: int) -> bool:
        """An edge moved earlier keeps its joins when it already made every join it asks for (it
        still comes first for them): only its links' dates and maybe the anchor change."""
        if len(edge.identifiers) > 1:
            if len({self.ident[i][1] for i in edge.identifiers}) != 1:
                return False  # some join of this edge was refused: recompute the conflict
            made = self.conn.execute(
                sa.select(sa.func.count())
                .select_from(identity_links)
                .where(identity_links.c.event_id == old_event_id)
            ).scalar_one()
            if int(made) != len(edge.identifiers) - 1:
                return False
            self.conn.execute(
                identity_links.update()
                .where(identity_links.c.event_id == old_event_id)
                .values(event_id=edge.event_id, ts=edge.key[0], message_id=edge.key[1], source_id=edge.key[2])
            )
        self._fix_anchor(edge)
        return True

    def _fix_anchor(self, edge: Edge) -> None:
        """If an identifier of the edge now dates from before its group's anchor, it becomes the anchor."""
        pid = self.ident[edge.identifiers[0]][1]
        if pid is None or any(self.ident[i][1] != pid for i in edge.identifiers):
            return
        candidate = min(edge.identifiers, key=Identifier.sort_key)
        if (edge.key, candidate.sort_key()) < self.profiles[pid].anchor_key:
            self._reanchor(pid, candidate, edge.key)

    def _safe_out_of_order(self, edge: Edge, touched: set[str]) -> bool:
        """Whether an edge older than its groups' newest can still be applied incrementally.

        It can when the canonical order would give the same groups, links and conflicts: its known
        identifiers sit in distinct groups (so it links the same pairs at any time) and the joined
        groups with its new identifiers stay within the limits (so no join before or after it
        changes outcome). A new anchor is then fixed by `_fix_anchor`."""
        known = [i for i in edge.identifiers if self.ident[i][1] is not None]
        if len(known) != len(touched):
            return False
        if not touched:
            return True
        groups = [self.profiles[p] for p in touched]
        counts: dict[str, int] = {}
        for group in groups:
            for kind, n in group.counts.items():
                counts[kind] = counts.get(kind, 0) + n
        new = [i for i in edge.identifiers if self.ident[i][1] is None]
        for ident in new:
            counts[ident.type] = counts.get(ident.type, 0) + 1
        return all(counts.get(kind, 0) <= limit for kind, limit in self.rules.limits.items())

    def _store_edge(self, edge: Edge, sig: str) -> None:
        self.pending_edges[sig] = {
            "signature": sig,
            "event_id": edge.event_id,
            "ts": edge.key[0],
            "message_id": edge.key[1],
            "source_id": edge.key[2],
            "rule": edge.rule,
            "members": [self.ident[i][0] for i in edge.identifiers],
        }

    def _apply_incrementally(self, edge: Edge, touched: set[str]) -> None:
        """The edge is the newest its groups have seen: exactly what the canonical order would do."""
        resolution = Resolution(self.rules.limits)
        for pid in sorted(touched):
            members = {i for i in edge.identifiers if self.ident[i][1] == pid}
            resolution.add_group(self.profiles[pid].as_group(members))
        resolution.apply(edge)
        self._record(resolution)
        for group in {id(g): g for g in (resolution.group_of[i] for i in edge.identifiers)}.values():
            pid = group.profile_id
            survivor = self.profiles.get(pid)
            if survivor is None:
                survivor = self.profiles[pid] = WorkingProfile(
                    pid, group.anchor_key, group.anchor, group.last_key, {}
                )
            old = {self.ident[i][1] for i in group.members if self.ident[i][1]} - {pid}
            for loser_id in sorted(old):
                loser = self.profiles[loser_id]
                survivor.state.absorb(loser.state)
                loser.merged_into = pid
                loser.state = ProfileState()
                self._retarget(loser_id, pid)
                self.dirty.add(loser_id)
            survivor.counts = dict(group.counts)
            survivor.last_key = group.last_key
            for ident in group.members:
                if self.ident[ident][1] != pid:
                    self.pending_profile_ids[self.ident[ident][0]] = pid
                    self.ident[ident][1] = pid
            self.dirty.add(pid)

    def _retarget(self, old: str, new: str) -> None:
        """Everything that pointed at a merged profile now points at the survivor."""
        self.conn.execute(identities.update().where(identities.c.profile_id == old).values(profile_id=new))
        self.conn.execute(
            identity_links.update().where(identity_links.c.profile_id == old).values(profile_id=new)
        )
        self.conn.execute(profiles.update().where(profiles.c.merged_into == old).values(merged_into=new))
        self.conn.execute(
            profile_events.update().where(profile_events.c.profile_id == old).values(profile_id=new)
        )
        self.conn.execute(
            consent_history.update().where(consent_history.c.profile_id == old).values(profile_id=new)
        )
        for fact in (*self.facts, *self.consents):
            if fact["profile_id"] == old:
                fact["profile_id"] = new
        for entry in self.ident.values():
            if entry[1] == old:
                entry[1] = new
        for identity_id, pid in self.pending_profile_ids.items():
            if pid == old:
                self.pending_profile_ids[identity_id] = new
        for cached in self.profiles.values():
            if cached.merged_into == old:
                cached.merged_into = new
                self.dirty.add(cached.id)

    def _record(self, resolution: Resolution) -> None:
        if resolution.links:
            self.conn.execute(
                identity_links.insert(),
                [
                    {
                        "profile_id": resolution.group_of[link.left].profile_id,
                        "event_id": link.event_id,
                        "rule": link.rule,
                        "left_type": link.left.type,
                        "left_value": link.left.value,
                        "right_type": link.right.type,
                        "right_value": link.right.value,
                        "ts": link.key[0],
                        "message_id": link.key[1],
                        "source_id": link.key[2],
                    }
                    for link in resolution.links
                ],
            )
        if resolution.conflicts:
            stmt = insert_ignoring_duplicates(
                self.dialect,
                identity_conflicts,
                ["event_id", "left_type", "left_value", "right_type", "right_value"],
            )
            self.conn.execute(
                stmt,
                [
                    {
                        "event_id": c.event_id,
                        "rule": c.rule,
                        "left_type": c.left.type,
                        "left_value": c.left.value,
                        "right_type": c.right.type,
                        "right_value": c.right.value,
                        "ts": c.key[0],
                        "message_id": c.key[1],
                        "source_id": c.key[2],
                    }
                    for c in resolution.conflicts
                ],
            )
            for conflict in resolution.conflicts:
                log.debug("merge refused", rule=conflict.rule, event_id=conflict.event_id)

    # -- late events: canonical recomputation of a connected component -------------------------
    def _recompute_component(self, edge: Edge) -> None:
        self.flush()
        conn = self.conn
        frontier = {self.ident[i][0] for i in edge.identifiers}
        members: set[int] = set()
        edge_ids: set[int] = set()
        while frontier:
            members |= frontier
            batch = list(frontier)
            new_edges = {
                r[0]
                for r in conn.execute(
                    sa.select(identity_edge_members.c.edge_id).where(
                        identity_edge_members.c.identity_id.in_(batch)
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
        edges = [
            Edge(
                (r[0].ts, r[0].message_id, r[0].source_id),
                r[0].event_id,
                tuple(Identifier(m.type, m.value) for m in sorted(r, key=lambda m: m.position)),
                r[0].rule,
            )
            for r in parts.values()
        ]
        resolution = resolve(edges, self.rules.limits)
        ident_rows = conn.execute(
            sa.select(identities.c.id, identities.c.type, identities.c.value, identities.c.profile_id).where(
                identities.c.id.in_(list(members))
            )
        ).all()
        by_ident = {Identifier(r.type, r.value): r for r in ident_rows}
        old_ids = {r.profile_id for r in ident_rows if r.profile_id}
        self._load_profiles(old_ids)
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
                        sa.tuple_(identity_conflicts.c.right_type, identity_conflicts.c.right_value).in_(
                            part
                        ),
                    )
                )
            )
        self._record(resolution)
        for group in groups:
            pid = group.profile_id
            for ident in group.members:
                if by_ident[ident].profile_id != pid:
                    conn.execute(
                        identities.update()
                        .where(identities.c.id == by_ident[ident].id)
                        .values(profile_id=pid)
                    )
                if ident in self.ident:
                    self.ident[ident][1] = pid
            profile = WorkingProfile(pid, group.anchor_key, group.anchor, group.last_key, dict(group.counts))
            member_ids = [by_ident[i].id for i in group.members]
            profile.state = self._refold(member_ids)
            owned = sa.select(event_owners.c.event_id).where(event_owners.c.identity_id.in_(member_ids))
            conn.execute(
                profile_events.update().where(profile_events.c.event_id.in_(owned)).values(profile_id=pid)
            )
            conn.execute(
                consent_history.update().where(consent_history.c.event_id.in_(owned)).values(profile_id=pid)
            )
            self.profiles[pid] = profile
            self.dirty.add(pid)
        for old in sorted(old_ids - new_ids):
            loser = self.profiles[old]
            target = resolution.group_of[loser.anchor].profile_id
            loser.merged_into, loser.state = target, ProfileState()
            self._retarget(old, target)
            self.dirty.add(old)
        log.debug("component recomputed", identities=len(members), edges=len(edges), profiles=len(groups))

    def _refold(self, identity_ids: list[int]) -> ProfileState:
        state = ProfileState()
        stmt = (
            sa.select(
                events.c.payload, events.c.timestamp, events.c.message_id, events.c.source_id, sources.c.name
            )
            .join(event_owners, event_owners.c.event_id == events.c.id)
            .join(sources, sources.c.id == events.c.source_id)
            .where(event_owners.c.identity_id.in_(identity_ids))
        )
        for row in self.conn.execute(stmt):
            state.apply(row.payload, iso_text(row.timestamp), row.message_id, row.source_id, row.name)
        return state

    def flush(self) -> None:
        if self.pending_edges:
            pending = list(self.pending_edges.values())
            self.pending_edges = {}
            stmt = identity_edges.insert().returning(identity_edges.c.id, identity_edges.c.signature)
            fields = ("signature", "event_id", "ts", "message_id", "source_id", "rule")
            rows = [{c: e[c] for c in fields} for e in pending]
            edge_ids = {r.signature: r.id for r in self.conn.execute(stmt, rows)}
            self.conn.execute(
                identity_edge_members.insert(),
                [
                    {"edge_id": edge_ids[e["signature"]], "identity_id": member, "position": n}
                    for e in pending
                    for n, member in enumerate(e["members"])
                ],
            )
        if self.pending_profile_ids:
            updates = [{"iid": iid, "pid": pid} for iid, pid in self.pending_profile_ids.items()]
            self.pending_profile_ids = {}
            self.conn.execute(
                identities.update()
                .where(identities.c.id == sa.bindparam("iid"))
                .values(profile_id=sa.bindparam("pid")),
                updates,
            )
        if self.owners:
            self.conn.execute(event_owners.insert(), self.owners)
            self.owners = []
        if self.facts:
            self.conn.execute(profile_events.insert(), self.facts)
            self.facts = []
        if self.consents:
            self.conn.execute(consent_history.insert(), self.consents)
            self.consents = []
        self.touched |= self.dirty
        if self.dirty:
            columns = [c.name for c in profiles.columns if c.name != "id"]
            self.conn.execute(
                upsert(self.dialect, profiles, ["id"], columns),
                [self.profiles[p].row() for p in sorted(self.dirty)],
            )
            self.dirty.clear()


def read_checkpoint(conn: sa.Connection) -> int:
    """The id of the last event the processor applied (0 before the first)."""
    return int(
        conn.execute(
            sa.select(processor_state.c.last_event_id).where(processor_state.c.name == PROCESSOR)
        ).scalar()
        or 0
    )


class Processor:
    """Applies the event log to identities and profiles, chunk by chunk."""

    def __init__(self, engine: sa.Engine, rules: IdentityRules | None = None, chunk_size: int = 500) -> None:
        self.engine = engine
        self.rules = rules or IdentityRules.from_env()
        self.chunk_size = chunk_size

    def run_once(self) -> int:
        """Process up to one chunk; returns how many events were applied (0: caught up)."""
        with self.engine.begin() as conn:
            conn.execute(
                insert_ignoring_duplicates(conn.dialect.name, processor_state, ["name"]),
                [{"name": PROCESSOR, "last_event_id": 0}],
            )
        with self.engine.begin() as conn:
            lock_for_processing(conn, PROCESSOR)
            last = conn.execute(
                sa.select(processor_state.c.last_event_id).where(processor_state.c.name == PROCESSOR)
            ).scalar_one()
            batch = conn.execute(
                sa.select(
                    events.c.id,
                    events.c.type,
                    events.c.message_id,
                    events.c.source_id,
                    events.c.timestamp,
                    events.c.payload,
                    sources.c.name.label("source"),
                )
                .join(sources, sources.c.id == events.c.source_id)
                .where(events.c.id > last)
                .order_by(events.c.id)
                .limit(self.chunk_size)
            ).all()
            if not batch:
                return 0
            chunk = _Chunk(conn, self.rules)
            extracted = [self.rules.extract(e.payload) for e in batch]
            chunk.preload(
                {i for ids in extracted for i in ids},
                {
                    signature(ids, "alias" if e.type == "alias" else "same_event")
                    for e, ids in zip(batch, extracted, strict=True)
                    if ids
                },
            )
            first_seen: dict[Identifier, int] = {}
            for event, ids in zip(batch, extracted, strict=True):
                for ident in ids:
                    first_seen.setdefault(ident, event.id)
            chunk.insert_identities(first_seen)
            for event, ids in zip(batch, extracted, strict=True):
                chunk.apply(event, ids)
            chunk.flush()
            update_derived_state(conn, chunk.touched)
            conn.execute(
                processor_state.update()
                .where(processor_state.c.name == PROCESSOR)
                .values(last_event_id=batch[-1].id)
            )
        return len(batch)

    def run_until_caught_up(self) -> int:
        total = 0
        while n := self.run_once():
            total += n
        return total

    def run_through(self, event_id: int) -> None:
        """Process at least up to `event_id` (others may help); unlike `run_until_caught_up` this
        ends under a steady stream of new events."""
        while self.checkpoint() < event_id and self.run_once():
            pass

    def newest_event_id(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0))).scalar_one())

    def checkpoint(self) -> int:
        with self.engine.connect() as conn:
            return read_checkpoint(conn)

    def backlog(self) -> int:
        last = self.checkpoint()
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(events).where(events.c.id > last)
                ).scalar_one()
            )


def update_derived_state(conn: sa.Connection, touched: set[str], now: datetime | None = None) -> None:
    """Computed traits and segment memberships of the profiles a chunk changed, in its transaction."""
    from opencdp.segments.memberships import refresh_segments
    from opencdp.traits.store import refresh_computed

    if not touched:
        return
    live = {
        r[0]
        for r in conn.execute(
            sa.select(profiles.c.id).where(
                profiles.c.id.in_(sorted(touched)), profiles.c.merged_into.is_(None)
            )
        )
    }
    now = now or datetime.now(UTC)
    refresh_computed(conn, live, now)
    refresh_segments(conn, touched, now)


def reset_derived_state(engine: sa.Engine) -> None:
    """Forget every identity and profile; the log stays. The next processing rebuilds them."""
    with engine.begin() as conn:
        for table in reversed(DERIVED_TABLES):
            conn.execute(table.delete())
