"""The review queue of probabilistic matching: pairs a match run scored between the review and the
auto-merge thresholds wait here (`match_candidates.status = "pending"`) for a person to decide.

A candidate names two identifiers (the profiles' anchors when it was scored); profiles move with
merges, identifiers do not, so a pair is always shown with the profiles its identifiers belong to
*now*. Those may already be one profile (another event joined them since): then the only decision
is "dismiss".

Decisions (docs/matching.md, "Reviewing pairs"):
- accept: appends the `Identity Matched` event that merges them (the processor then merges the
  profiles with rule `probabilistic`, like an auto-merge); status "accepted", with the event's id;
- reject: status "rejected"; later runs never propose the pair again. Nothing is unmerged;
- skip: status "skipped"; it leaves the front of the queue (pending pairs come first) and stays
  reviewable;
- dismiss: for a pair that is already one profile: status "merged" (it is), without an event.

Every decision is audited (action `match.review`, the candidate's id, the decision, the event id).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.access import audit
from opencdp.identity.identifiers import Identifier, IdentityRules
from opencdp.log.append import LogAppender
from opencdp.log.lock import lock_log
from opencdp.match.merges import append_merge, merge_properties
from opencdp.profiles.reader import ProfileNotFound, get_profile
from opencdp.store.dialect import take_write_lock
from opencdp.store.schema import identities, match_candidates, profiles

#: Every status, in queue order: what waits for a person first.
STATUSES = ("pending", "skipped", "accepted", "rejected", "merged")
#: Statuses a person may still decide.
REVIEWABLE = frozenset({"pending", "skipped"})
#: What `list_candidates` accepts besides a status: "queue" (pending, then skipped) and "all".
LISTINGS = ("queue", "all", *STATUSES)
#: decision → the status it leaves.
DECISIONS = {"accept": "accepted", "reject": "rejected", "skip": "skipped", "dismiss": "merged"}
AUDIT_ACTION = "match.review"


class ReviewError(ValueError):
    """A decision that cannot be made; the message says why (shown as is)."""

    #: The HTTP status that fits (400 a bad request, 409 the pair's state does not allow it).
    status = 409


class CandidateNotFound(ReviewError):
    status = 404


class InvalidDecision(ReviewError):
    status = 400


# --- Reading -------------------------------------------------------------------------------------


def _rank() -> sa.ColumnElement[int]:
    c = match_candidates.c.status
    return sa.case((c == "pending", 0), (c == "skipped", 1), else_=2)


def _order() -> list[sa.ColumnElement[Any]]:
    return [_rank(), match_candidates.c.probability.desc(), match_candidates.c.id]


def _where(listing: str) -> sa.ColumnElement[bool]:
    if listing not in LISTINGS:
        raise InvalidDecision(f"status must be one of {', '.join(LISTINGS)}")
    if listing == "all":
        return sa.true()
    if listing == "queue":
        return match_candidates.c.status.in_(sorted(REVIEWABLE))
    return match_candidates.c.status == listing


def candidate_out(row: Any) -> dict[str, Any]:
    return {
        "id": int(row.id),
        "model": row.model,
        "left": {"type": row.left_type, "value": row.left_value},
        "right": {"type": row.right_type, "value": row.right_value},
        "probability": float(row.probability),
        "match_weight": float(row.match_weight),
        "comparisons": [_comparison(c) for c in row.comparisons or []],
        "explanation": row.explanation,
        "status": row.status,
        "scored_at": row.scored_at,
        "decided_by": row.decided_by,
        "decided_at": row.decided_at,
        "event_id": row.event_id,
    }


def _comparison(item: Any) -> dict[str, Any]:
    """One comparison with every key present, whatever a run stored."""
    found = item if isinstance(item, dict) else {"label": str(item)}
    return {key: found.get(key) for key in ("field", "label", "level", "bayes_factor")} | found


def counts(conn: sa.Connection) -> dict[str, int]:
    """Candidates per status (every status, zeros included)."""
    found: dict[str, int] = dict(
        conn.execute(
            sa.select(match_candidates.c.status, sa.func.count()).group_by(match_candidates.c.status)
        ).all()
    )
    return {status: int(found.get(status, 0)) for status in STATUSES}


def list_candidates(
    engine: sa.Engine, status: str = "pending", limit: int = 50, offset: int = 0
) -> dict[str, Any]:
    """A page of candidates in queue order (pending, then skipped, then decided; within each the
    most probable first), the number that match and the counts per status."""
    where = _where(status)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(match_candidates).where(where).order_by(*_order()).limit(limit).offset(offset)
        ).all()
        per_status = counts(conn)
    counted = {"all": STATUSES, "queue": tuple(sorted(REVIEWABLE))}.get(status, (status,))
    total = sum(per_status[s] for s in counted)
    return {
        "candidates": [candidate_out(r) for r in rows],
        "total": total,
        "counts": per_status,
        "limit": limit,
        "offset": offset,
    }


def _find(conn: sa.Connection, candidate_id: int, lock: bool = False) -> Any:
    stmt = sa.select(match_candidates).where(match_candidates.c.id == candidate_id)
    row = conn.execute(stmt.with_for_update() if lock else stmt).first()
    if row is None:
        raise CandidateNotFound(f"there is no match candidate {candidate_id}")
    return row


def _neighbour(conn: sa.Connection, row: Any, forward: bool) -> int | None:
    """The next (or previous) reviewable candidate in queue order."""
    c = match_candidates.c
    rank = 0 if row.status == "pending" else 1
    after = sa.or_(
        _rank() > rank,
        sa.and_(_rank() == rank, c.probability < row.probability),
        sa.and_(_rank() == rank, c.probability == row.probability, c.id > row.id),
    )
    stmt = sa.select(c.id).where(c.status.in_(sorted(REVIEWABLE)), after if forward else sa.not_(after))
    stmt = stmt.where(c.id != row.id)
    order = _order() if forward else [_rank().desc(), c.probability, c.id.desc()]
    found = conn.execute(stmt.order_by(*order).limit(1)).scalar()
    return int(found) if found is not None else None


def _front(conn: sa.Connection) -> int | None:
    found = conn.execute(
        sa.select(match_candidates.c.id).where(_where("queue")).order_by(*_order()).limit(1)
    ).scalar()
    return int(found) if found is not None else None


def queue_front(engine: sa.Engine) -> int | None:
    """The candidate a reviewer should see first, if any."""
    with engine.connect() as conn:
        return _front(conn)


def _profile_of(conn: sa.Connection, ident: Identifier) -> str | None:
    """The profile an identifier belongs to now (None when it has none: erased, or not processed)."""
    found = conn.execute(
        sa.select(identities.c.profile_id).where(
            identities.c.type == ident.type, identities.c.value == ident.value
        )
    ).scalar()
    for _ in range(8):  # merges are flattened: at most one hop, but never loop on bad data
        if found is None:
            return None
        merged = conn.execute(sa.select(profiles.c.merged_into).where(profiles.c.id == found)).first()
        if merged is None or merged.merged_into is None:
            return str(found)
        found = merged.merged_into
    return str(found)


def identifiers_of(row: Any) -> tuple[Identifier, Identifier]:
    return Identifier(row.left_type, row.left_value), Identifier(row.right_type, row.right_value)


@dataclass
class Side:
    identifier: Identifier
    profile_id: str | None
    profile: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "identifier": {"type": self.identifier.type, "value": self.identifier.value},
            "profile_id": self.profile_id,
            "profile": self.profile,
        }


def _field(name: str, kind: str, left: Any, right: Any) -> dict[str, Any]:
    if left is None and right is None:
        state = "same"
    elif left is None:
        state = "right_only"
    elif right is None:
        state = "left_only"
    else:
        state = "same" if left == right else "differs"
    return {"name": name, "kind": kind, "left": left, "right": right, "state": state}


def compare(left: dict[str, Any] | None, right: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The two profiles' fields side by side: traits (their union), identifiers per type, first
    and last seen and event counts, each with whether it is the same, differs or is on one side."""
    a, b = left or {}, right or {}
    rows: list[dict[str, Any]] = []
    ta, tb = a.get("traits", {}), b.get("traits", {})
    for name in sorted(set(ta) | set(tb)):
        va = ta[name]["value"] if name in ta else None
        vb = tb[name]["value"] if name in tb else None
        rows.append(_field(name, "trait", va, vb))
    ia: dict[str, list[str]] = {}
    ib: dict[str, list[str]] = {}
    for found, out in ((a, ia), (b, ib)):
        for ident in found.get("identifiers", []):
            out.setdefault(ident["type"], []).append(ident["value"])
    for kind in sorted(set(ia) | set(ib)):
        rows.append(_field(kind, "identifier", ia.get(kind), ib.get(kind)))
    for name in ("first_seen", "last_seen"):
        rows.append(_field(name, "activity", a.get(name), b.get(name)))
    ea, eb = a.get("event_counts") or {}, b.get("event_counts") or {}
    total = _field("events", "activity", sum(ea.values()) if a else None, sum(eb.values()) if b else None)
    rows.append(total)
    return rows


def protection_problem(
    left: dict[str, Any] | None, right: dict[str, Any] | None, rules: IdentityRules
) -> str | None:
    """Why merge protection would refuse the merge (the processor would record a conflict and keep
    two profiles), or None."""
    if not left or not right:
        return None
    per_type: dict[str, set[str]] = {}
    for side in (left, right):
        for ident in side.get("identifiers", []):
            per_type.setdefault(ident["type"], set()).add(ident["value"])
    for kind, values in sorted(per_type.items()):
        limit = rules.limits.get(kind)
        if limit is not None and len(values) > limit:
            return f"merge protection refuses it: together they have {len(values)} {kind} (at most {limit})"
    return None


def pair(engine: sa.Engine, candidate_id: int, rules: IdentityRules | None = None) -> dict[str, Any]:
    """One candidate with both current profiles and their fields side by side, what may be decided
    and the neighbours in the queue (`previous_id`, `next_id`)."""
    with engine.connect() as conn:
        row = _find(conn, candidate_id)
        left_id, right_id = identifiers_of(row)
        ids = (_profile_of(conn, left_id), _profile_of(conn, right_id))
        previous_id = _neighbour(conn, row, False) if row.status in REVIEWABLE else None
        next_id = _neighbour(conn, row, True) if row.status in REVIEWABLE else None
    sides = []
    for ident, pid in zip((left_id, right_id), ids, strict=True):
        try:
            found = get_profile(engine, pid) if pid else None
        except ProfileNotFound:  # erased between the two reads
            found, pid = None, None
        sides.append(Side(ident, pid, found))
    same = sides[0].profile_id is not None and sides[0].profile_id == sides[1].profile_id
    problem = protection_problem(sides[0].profile, sides[1].profile, rules or IdentityRules.from_env())
    return {
        "candidate": candidate_out(row),
        "left": sides[0].as_dict(),
        "right": sides[1].as_dict(),
        "same_profile": same,
        "missing": [str(s.identifier) for s in sides if s.profile_id is None],
        "fields": compare(sides[0].profile, sides[1].profile),
        "warning": None if same else problem,
        "allowed": allowed(row.status, same, missing=any(s.profile_id is None for s in sides)),
        "previous_id": previous_id,
        "next_id": next_id,
    }


def allowed(status: str, same_profile: bool, missing: bool = False) -> list[str]:
    """The decisions a pair in this state takes."""
    if status not in REVIEWABLE:
        return []
    if same_profile:
        return ["dismiss"]
    if missing:
        return ["reject", "skip"]
    return ["accept", "reject", "skip"]


# --- Deciding ------------------------------------------------------------------------------------


def decide(
    engine: sa.Engine,
    candidate_id: int,
    decision: str,
    actor: str,
    rules: IdentityRules | None = None,
    appender: LogAppender | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Decide one pair, in one transaction with its merge event (accept) and its audit entry.
    `actor` names who decided ("user:3", "key:7", "cli"). Raises a `ReviewError` saying why not.
    Returns the decided candidate and `next_id`: the pair to review next (the one after it in
    queue order, else the queue's front)."""
    if decision not in DECISIONS:
        raise InvalidDecision(f"decision must be one of {', '.join(DECISIONS)}")
    rules = rules or IdentityRules.from_env()
    moment = now or datetime.now(UTC)
    with engine.begin() as conn:
        take_write_lock(conn)  # SQLite: a writer from the start (the read below decides the write)
        if decision == "accept":
            # The log lock before the candidate's row lock: everyone else who appends takes the
            # log lock first too, so a merge never waits in the opposite order (no deadlock).
            lock_log(conn)
        row = _find(conn, candidate_id, lock=True)
        if row.status not in REVIEWABLE:
            by = f" by {row.decided_by}" if row.decided_by else ""
            raise ReviewError(f"candidate {candidate_id} is already decided: {row.status}{by}")
        left, right = identifiers_of(row)
        left_pid, right_pid = _profile_of(conn, left), _profile_of(conn, right)
        same = left_pid is not None and left_pid == right_pid
        missing = left_pid is None or right_pid is None
        if decision not in allowed(row.status, same, missing):
            if same:
                why = "both identifiers already belong to one profile: the only decision is dismiss"
            elif decision == "dismiss":
                why = "dismiss is for pairs that are already one profile; accept, reject or skip"
            else:
                why = "an identifier of this pair no longer belongs to any profile: reject or skip"
            raise ReviewError(f"candidate {candidate_id}: {why}")
        event_id = None
        if decision == "accept":
            problem = _protection(conn, left_pid, right_pid, rules)
            if problem:
                raise ReviewError(f"candidate {candidate_id}: {problem}")
            appender = appender or LogAppender.for_engine(engine, rules)
            event_id = append_merge(
                conn, appender, left, right, merge_properties(row, f"review:{actor}"), moment
            )
            if event_id is None:
                raise ReviewError(f"candidate {candidate_id}: one of the two people was erased; no merge")
        conn.execute(
            match_candidates.update()
            .where(match_candidates.c.id == candidate_id)
            .values(status=DECISIONS[decision], decided_by=actor, decided_at=moment, event_id=event_id)
        )
        detail = {"decision": decision, "event_id": event_id}
        audit.record(conn, actor, AUDIT_ACTION, "match_candidate", str(candidate_id), detail)
        decided = _find(conn, candidate_id)
        # the one after it in queue order; at the end of the queue, its front (skipped pairs, say)
        next_id = _neighbour(conn, row, True) or _front(conn)
    return candidate_out(decided) | {"next_id": next_id}


def _protection(conn: sa.Connection, left: str | None, right: str | None, rules: IdentityRules) -> str | None:
    if left is None or right is None:
        return None
    found = conn.execute(
        sa.select(identities.c.profile_id, identities.c.type, identities.c.value).where(
            identities.c.profile_id.in_([left, right])
        )
    ).all()
    sides = {
        pid: {"identifiers": [{"type": r.type, "value": r.value} for r in found if r.profile_id == pid]}
        for pid in (left, right)
    }
    return protection_problem(sides[left], sides[right], rules)
