"""Undoing a merge: an operator rejects a link of a profile (two identifiers that are not one
person), lists the rejections and allows a pair again.

A rejection is stored in `identity_rejections` (not derived state: `rebuild` keeps it) and is
applied by the processor at its next step (`process.rejections`): the component is resolved
again as if no event had ever joined the pair. The same pair in `match_candidates` is marked
`rejected`, so the matching job never proposes it again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.identity.graph import rejected_pair
from opencdp.identity.identifiers import Identifier
from opencdp.profiles.reader import ProfileNotFound, resolve_profile_id
from opencdp.store.schema import identities, identity_links, identity_rejections, match_candidates

#: longest reason kept
MAX_REASON = 1000


class UnmergeError(ValueError):
    """Bad input for an unmerge, naming the field (`link_id`, `left`, `right`, `reason`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _clean(field: str, text: str | None) -> None:
    if text is not None and "\x00" in text:
        raise UnmergeError(field, "may not contain NUL characters")


def pair_of_link(conn: sa.Connection, profile_id: str, link_id: int) -> tuple[Identifier, Identifier]:
    """The two identifiers a link of this (surviving) profile joined."""
    row = conn.execute(sa.select(identity_links).where(identity_links.c.id == link_id)).first()
    if row is None:
        raise UnmergeError("link_id", f"no link {link_id}")
    if row.profile_id != profile_id:
        raise UnmergeError("link_id", f"link {link_id} is not a link of profile {profile_id}")
    return Identifier(row.left_type, row.left_value), Identifier(row.right_type, row.right_value)


def _check_member(conn: sa.Connection, field: str, profile_id: str, ident: Identifier) -> None:
    _clean(f"{field}.type", ident.type)
    _clean(f"{field}.value", ident.value)
    owner = conn.execute(
        sa.select(identities.c.profile_id).where(
            identities.c.type == ident.type, identities.c.value == ident.value
        )
    ).scalar()
    if owner != profile_id:
        raise UnmergeError(field, f"{ident.type} is not an identifier of profile {profile_id}")


def reject(
    engine: sa.Engine,
    profile_id: str,
    *,
    link_id: int | None = None,
    left: Identifier | None = None,
    right: Identifier | None = None,
    reason: str | None = None,
    created_by: str | None = None,
) -> dict[str, Any]:
    """Record that two identifiers of a profile are not one person (by a link of the profile or
    by the two identifiers); returns the rejection (applied by the processor's next step).
    Raises ProfileNotFound, or UnmergeError naming the bad field."""
    _clean("reason", reason)
    if reason is not None and len(reason) > MAX_REASON:
        raise UnmergeError("reason", f"at most {MAX_REASON} characters")
    with engine.begin() as conn:
        survivor = resolve_profile_id(conn, profile_id)
        if link_id is not None:
            a, b = pair_of_link(conn, survivor, link_id)
        elif left is not None and right is not None:
            _check_member(conn, "left", survivor, left)
            _check_member(conn, "right", survivor, right)
            if left == right:
                raise UnmergeError("right", "must differ from left")
            a, b = left, right
        else:
            raise UnmergeError("link_id", "give link_id, or left and right")
        a, b = rejected_pair(a, b)
        now = datetime.now(UTC)
        key = {"left_type": a.type, "left_value": a.value, "right_type": b.type, "right_value": b.value}
        existing = conn.execute(sa.select(identity_rejections).filter_by(**key)).first()
        if existing is None:
            conn.execute(
                identity_rejections.insert().values(
                    **key, reason=reason, created_by=created_by, created_at=now, applied_at=None
                )
            )
        conn.execute(
            match_candidates.update()
            .filter_by(**key)
            .values(status="rejected", decided_by=created_by, decided_at=now)
        )
        row = conn.execute(sa.select(identity_rejections).filter_by(**key)).one()
        return rejection_out(row) | {"profile_id": survivor, "created": existing is None}


def rejection_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "left": {"type": row.left_type, "value": row.left_value},
        "right": {"type": row.right_type, "value": row.right_value},
        "reason": row.reason,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "applied_at": row.applied_at,
    }


def list_rejections(conn: sa.Connection, idents: list[Identifier] | None = None) -> list[dict[str, Any]]:
    """Every rejection (newest first), or those naming one of `idents`."""
    stmt = sa.select(identity_rejections).order_by(identity_rejections.c.id.desc())
    if idents is not None:
        if not idents:
            return []
        pairs = [(i.type, i.value) for i in idents]
        stmt = stmt.where(
            sa.or_(
                sa.tuple_(identity_rejections.c.left_type, identity_rejections.c.left_value).in_(pairs),
                sa.tuple_(identity_rejections.c.right_type, identity_rejections.c.right_value).in_(pairs),
            )
        )
    return [rejection_out(r) for r in conn.execute(stmt)]


def get_rejection(conn: sa.Connection, rejection_id: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(identity_rejections).where(identity_rejections.c.id == rejection_id)).first()
    return None if row is None else rejection_out(row)


def profile_ids_of(conn: sa.Connection, idents: list[Identifier]) -> list[str]:
    """The profiles that hold these identifiers now (sorted, without repeats)."""
    found = set()
    for ident in idents:
        pid = conn.execute(
            sa.select(identities.c.profile_id).where(
                identities.c.type == ident.type, identities.c.value == ident.value
            )
        ).scalar()
        if pid:
            found.add(pid)
    return sorted(found)


__all__ = ["ProfileNotFound", "UnmergeError", "get_rejection", "list_rejections", "reject", "rejection_out"]
