"""One processing transaction: the identities and profiles a chunk of events touches, how each
event changes them, and how the changes are written back in bulk.

Writes are deferred to `flush` and sent one statement per table (executemany), not one per event:
new edges, identities' new profiles, owners, facts, consents and profile rows. Merges are deferred
the same way: a merged profile is only *redirected* (old → survivor) in memory, and `flush`
moves everything that pointed at it with one statement per table. Events that arrive out of order
are handled by `late_edges`.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Any

import sqlalchemy as sa

from opencdp import logs
from opencdp.identity.graph import Edge, EdgeKey, Rejection, Resolution, edge_for, edge_rule, partners_of
from opencdp.identity.identifiers import Identifier, IdentityRules
from opencdp.privacy.consent import extract_consent
from opencdp.process import late_edges
from opencdp.process.quiet import quiet_name, read_by_definitions
from opencdp.process.working_set import WorkingProfile, iso_text, pair_row, profile_from_row, signature
from opencdp.profiles.state import ProfileState
from opencdp.store.dialect import insert_ignoring_duplicates, upsert
from opencdp.store.schema import (
    consent_history,
    event_owners,
    identities,
    identity_conflicts,
    identity_edge_members,
    identity_edges,
    identity_links,
    identity_rejections,
    profile_events,
    profiles,
)

log = logs.get("opencdp.processor")
_NO_MARKS: frozenset[Identifier] = frozenset()

#: Rows that name a profile and must follow it when it is merged into another.
_FOLLOW_MERGES = (
    (identities, identities.c.profile_id),
    (identity_links, identity_links.c.profile_id),
    (profiles, profiles.c.merged_into),
    (profile_events, profile_events.c.profile_id),
    (consent_history, consent_history.c.profile_id),
)
#: Written by the processor; `computed` and `computed_at` are the derived step's
#: (process/derived.py) and are kept.
_PROFILE_COLUMNS = [
    c.name
    for c in profiles.columns
    if c.name not in ("id", "computed", "computed_at", "predicted", "predicted_meta")
]
_REDATE_EDGE = (
    identity_edges.update()
    .where(identity_edges.c.signature == sa.bindparam("sig"))
    .values(
        event_id=sa.bindparam("eid"),
        ts=sa.bindparam("ts_"),
        message_id=sa.bindparam("mid"),
        source_id=sa.bindparam("sid"),
    )
)
_STORED_LINKS = sa.select(identity_links).where(
    identity_links.c.profile_id.in_(sa.bindparam("pids", expanding=True))
)


class Chunk:
    """The working set of one transaction: caches of identities and profiles it touches."""

    def __init__(self, conn: sa.Connection, rules: IdentityRules) -> None:
        self.conn = conn
        self.rules = rules
        self.dialect = conn.dialect.name
        self.ident: dict[Identifier, list[Any]] = {}  # -> [identity id, profile id (maybe redirected)]
        self.profiles: dict[str, WorkingProfile] = {}
        self.dirty: set[str] = set()
        self.signatures: dict[str, tuple[EdgeKey, int]] = {}  # -> (edge key, event id)
        self.owners: list[dict[str, int]] = []
        self.facts: list[dict[str, Any]] = []
        #: event id -> the profile that owns it, for the events written so far (what triggers need)
        self.event_profiles: dict[int, str] = {}
        self.consents: list[dict[str, Any]] = []
        #: written at flush, in bulk: new edges (by signature) and identities' new profile ids
        self.pending_edges: dict[str, dict[str, Any]] = {}
        self.pending_profile_ids: dict[int, str] = {}
        #: stored edges that now date from an earlier event (by signature), written at flush
        self.redated_edges: dict[str, dict[str, Any]] = {}
        #: merged profile -> survivor, not yet written (keys and values never overlap)
        self.redirects: dict[str, str] = {}
        #: identity links as this chunk sees them, by id (negative: made in this chunk, not written
        #: yet), for the profiles whose stored links were loaded; stored links to delete at flush
        self.links: dict[int, dict[str, Any]] = {}
        self.links_loaded: set[str] = set()
        self.deleted_links: list[int] = []
        self._next_link = -1
        #: every profile this chunk changed (live or merged away): its derived state needs updating
        self.touched: set[str] = set()
        #: profiles changed by anything but quiet events (process/quiet.py), and the quiet events'
        #: names by profile: a profile only in `quiet` may keep its derived state
        self.loud: set[str] = set()
        self.quiet: dict[str, set[str]] = {}
        #: the operator's rejected pairs (`load_rejections`; few), the identifiers they name, and
        #: the ids of those not applied yet
        self.rejections: list[Rejection] = []
        self.partners: dict[Identifier, frozenset[Identifier]] = {}
        self.rejected: frozenset[Identifier] = frozenset()
        self.pending_rejections: list[int] = []
        #: profile -> its rejected identifiers, built on first use and dropped when identifiers
        #: move (`marks_changed`)
        self._marks: dict[str, set[Identifier]] | None = None

    # -- rejections (undone merges) --------------------------------------------------------------
    def load_rejections(self) -> None:
        """Every rejection, once per chunk (they are few): an input to the resolution like the
        log. Their identifiers are preloaded with the chunk's so `pid()` follows merges and a
        group built from some of a profile's members still knows all its rejected identifiers."""
        rows = self.conn.execute(
            sa.select(
                identity_rejections.c.id,
                identity_rejections.c.left_type,
                identity_rejections.c.left_value,
                identity_rejections.c.right_type,
                identity_rejections.c.right_value,
                identity_rejections.c.applied_at,
            ).order_by(identity_rejections.c.id)
        ).all()
        self.rejections = [
            (Identifier(r.left_type, r.left_value), Identifier(r.right_type, r.right_value)) for r in rows
        ]
        self.partners = partners_of(self.rejections)
        self.rejected = frozenset(self.partners)
        self.pending_rejections = [r.id for r in rows if r.applied_at is None]
        self._marks = None

    def marks_of(self, pid: str) -> AbstractSet[Identifier]:
        """The identifiers of a profile that some rejection names (do not change the set)."""
        if self._marks is None:
            self._marks = {}
            for ident in self.rejected:
                if ident in self.ident and (owner := self.pid(ident)) is not None:
                    self._marks.setdefault(owner, set()).add(ident)
        return self._marks.get(pid, _NO_MARKS)

    def marks_changed(self) -> None:
        """Identifiers moved between profiles: `marks_of` is built again when next asked."""
        self._marks = None

    # -- profile ids through pending merges ------------------------------------------------------
    def find(self, pid: str) -> str:
        return self.redirects.get(pid, pid)

    def pid(self, ident: Identifier) -> str | None:
        """The live profile an identifier (already cached) belongs to, None if none yet."""
        entry = self.ident[ident]
        if entry[1] is not None and entry[1] in self.redirects:
            entry[1] = self.redirects[entry[1]]
        return entry[1]

    def redirect(self, old: str, new: str) -> None:
        """Everything that pointed at a merged profile now points at the survivor (written at flush)."""
        if self._marks is not None:  # the merged profile's rejected identifiers are the survivor's
            if new in self.redirects:
                self._marks = None
            elif moved := self._marks.pop(old, None):
                self._marks.setdefault(new, set()).update(moved)
        self.redirects.pop(new, None)  # the survivor is live (again)
        for key, target in self.redirects.items():
            if target == old:
                self.redirects[key] = new
        self.redirects[old] = new

    def revive(self, pid: str) -> None:
        """A profile id that is live again (a recomputed group) must no longer be redirected."""
        self._marks = None
        self.redirects.pop(pid, None)

    def write_redirects(self) -> None:
        if not self.redirects:
            return
        moves = [{"old": old, "new": new} for old, new in sorted(self.redirects.items())]
        for table, column in _FOLLOW_MERGES:
            self.conn.execute(
                table.update()
                .where(column == sa.bindparam("old"))
                .values({column.name: sa.bindparam("new")}),
                moves,
            )
        find = self.find
        for row in (*self.facts, *self.consents, *self.links.values()):
            row["profile_id"] = find(row["profile_id"])
        for entry in self.ident.values():
            if entry[1] is not None:
                entry[1] = find(entry[1])
        for identity_id, target in self.pending_profile_ids.items():
            self.pending_profile_ids[identity_id] = find(target)
        for cached in self.profiles.values():
            if cached.merged_into is not None:
                cached.merged_into = find(cached.merged_into)
        self.redirects = {}

    # -- identity links (why identifiers are one profile) ---------------------------------------
    def add_link(self, row: dict[str, Any]) -> int:
        """A new link, written at flush; returns its provisional (negative) id."""
        link_id = self._next_link
        self._next_link -= 1
        self.links[link_id] = row
        return link_id

    def delete_link(self, link_id: int) -> None:
        del self.links[link_id]
        if link_id > 0:
            self.deleted_links.append(link_id)

    def links_of(self, pid: str) -> list[tuple[int, dict[str, Any]]]:
        """The links of a live profile, including those of profiles merged into it in this chunk."""
        names = [pid, *(old for old, new in self.redirects.items() if new == pid)]
        missing = [name for name in names if name not in self.links_loaded]
        if missing:
            for row in self.conn.execute(_STORED_LINKS, {"pids": missing}).mappings():
                self.links[row["id"]] = {k: v for k, v in row.items() if k != "id"}
            self.links_loaded.update(missing)
        find = self.find
        return [(link_id, row) for link_id, row in self.links.items() if find(row["profile_id"]) == pid]

    def write_links(self) -> None:
        if self.deleted_links:
            self.conn.execute(
                identity_links.delete().where(identity_links.c.id == sa.bindparam("link_id")),
                [{"link_id": link_id} for link_id in self.deleted_links],
            )
        new = [row for link_id, row in sorted(self.links.items(), reverse=True) if link_id < 0]
        if new:
            self.conn.execute(identity_links.insert(), new)
        self.links, self.links_loaded, self.deleted_links, self._next_link = {}, set(), [], -1

    # -- loading ---------------------------------------------------------------------------------
    def preload(self, all_ids: set[Identifier], sigs: set[str]) -> None:
        # one type at a time: "(type, value) IN (…)" made SQLite scan every identity (16 ms per
        # chunk at 40,000 of them), "type = ? AND value IN (…)" looks each one up in the unique index
        by_type: dict[str, list[str]] = {}
        for ident in all_ids:
            by_type.setdefault(ident.type, []).append(ident.value)
        for kind, values in sorted(by_type.items()):
            for start in range(0, len(values), 400):
                rows = self.conn.execute(
                    sa.select(identities.c.id, identities.c.value, identities.c.profile_id).where(
                        identities.c.type == kind, identities.c.value.in_(values[start : start + 400])
                    )
                )
                for row in rows:
                    self.ident[Identifier(kind, row.value)] = [row.id, row.profile_id]
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
        self.load_profiles({v[1] for v in self.ident.values() if v[1]})

    def load_profiles(self, ids: set[str]) -> None:
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

    # -- applying one event ----------------------------------------------------------------------
    def apply(self, event: Any, ids: list[Identifier]) -> None:
        payload = event.payload
        if not ids:
            return  # nothing identifies a person (e.g. only placeholder values): kept in the log only
        ts = iso_text(event.timestamp)
        key: EdgeKey = (ts, event.message_id, event.source_id)
        edge = edge_for(event.id, key, ids, edge_rule(event.type, payload, event.source))
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
                self.redated_edges[sig] = {
                    "sig": sig,
                    "eid": event.id,
                    "ts_": key[0],
                    "mid": key[1],
                    "sid": key[2],
                }
            if not late_edges.redate_in_place(self, edge, known[1]):
                late_edges.recompute_component(self, edge)
        elif known is None:
            self.signatures[sig] = (key, event.id)
            self._store_edge(edge, sig)
            touched = {p for i in ids if (p := self.pid(i))}
            if all(self.profiles[p].last_key <= key for p in touched) or late_edges.safe_out_of_order(
                self, edge, touched
            ):
                self._apply_incrementally(edge, touched)
                late_edges.fix_anchor(self, edge)
            elif not late_edges.relink_within_group(self, edge, touched):
                late_edges.recompute_component(self, edge)
        owner_identity = self.ident[ids[0]][0]
        owner_profile = self.pid(ids[0])
        assert owner_profile is not None
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
        quiet = quiet_name(event.type, payload)
        if quiet is None:
            self.loud.add(owner_profile)
        else:
            self.quiet.setdefault(owner_profile, set()).add(quiet)

    def changed(self, *profile_ids: str) -> None:
        """Profiles whose identity or state changed (created, merged, relinked): their row is
        written and their derived state refreshed."""
        self.dirty.update(profile_ids)
        self.loud.update(profile_ids)

    def derived_touched(self) -> set[str]:
        """The touched profiles whose computed traits and memberships may have changed: all but
        those changed only by quiet events that no definition reads."""
        quiet = {p: names for p, names in self.quiet.items() if p not in self.loud}
        if not quiet:
            return set(self.touched)
        read = read_by_definitions(self.conn, set().union(*quiet.values()))
        return self.touched - {p for p, names in quiet.items() if not names & read}

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
        resolution = Resolution(self.rules.limits, partners=self.partners)
        for pid in sorted(touched):
            members = {i for i in edge.identifiers if self.pid(i) == pid}
            marks = self.marks_of(pid) if self.rejected else ()
            resolution.add_group(self.profiles[pid].as_group(members, marks))
        resolution.apply(edge)
        self.record(resolution)
        for group in {id(g): g for g in (resolution.group_of[i] for i in edge.identifiers)}.values():
            pid = group.profile_id
            survivor = self.profiles.get(pid)
            if survivor is None or survivor.merged_into is not None:
                survivor = self.profiles[pid] = WorkingProfile(
                    pid, group.anchor_key, group.anchor, group.last_key, {}
                )
                self.revive(pid)
            old = {p for i in group.members if (p := self.pid(i))} - {pid}
            for loser_id in sorted(old):
                loser = self.profiles[loser_id]
                survivor.state.absorb(loser.state)
                loser.merged_into = pid
                loser.state = ProfileState()
                self.redirect(loser_id, pid)
                self.changed(loser_id)
            survivor.counts = dict(group.counts)
            survivor.last_key = group.last_key
            for ident in group.members:
                if (before := self.pid(ident)) != pid:
                    self.pending_profile_ids[self.ident[ident][0]] = pid
                    self.ident[ident][1] = pid
                    if self._marks is not None and ident in self.rejected:
                        if before is not None:
                            self._marks.get(before, set()).discard(ident)
                        self._marks.setdefault(pid, set()).add(ident)
            self.changed(pid)

    def record(self, resolution: Resolution) -> None:
        """Write a resolution's accepted links and refused joins."""
        for link in resolution.links:
            self.add_link({"profile_id": resolution.group_of[link.left].profile_id, **pair_row(link)})
        if resolution.conflicts:
            stmt = insert_ignoring_duplicates(
                self.dialect,
                identity_conflicts,
                ["event_id", "left_type", "left_value", "right_type", "right_value"],
            )
            self.conn.execute(stmt, [pair_row(c) for c in resolution.conflicts])
            for conflict in resolution.conflicts:
                log.debug("merge refused", rule=conflict.rule, event_id=conflict.event_id)

    # -- writing back ----------------------------------------------------------------------------
    def flush(self) -> None:
        self.write_redirects()
        self.write_links()
        if self.redated_edges:
            self.conn.execute(_REDATE_EDGE, list(self.redated_edges.values()))
            self.redated_edges = {}
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
            self.event_profiles.update((f["event_id"], f["profile_id"]) for f in self.facts)
            self.facts = []
        if self.consents:
            self.conn.execute(consent_history.insert(), self.consents)
            self.consents = []
        self.touched |= self.dirty
        if self.dirty:
            self.conn.execute(
                upsert(self.dialect, profiles, ["id"], _PROFILE_COLUMNS),
                [self.profiles[p].row() for p in sorted(self.dirty)],
            )
            self.dirty.clear()
