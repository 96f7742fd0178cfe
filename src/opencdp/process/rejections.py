"""Applying the operator's rejections (undone merges) to the identity graph.

A rejection names two identifiers that must never be one person (`identity_rejections`). It is
an input to the canonical resolution like the log: every chunk loads them all (`Chunk.
load_rejections`), and a rejection not applied yet makes the processor resolve the connected
component of its identifiers again (`late_edges.recompute_around`), which refolds the profiles
from their events and moves events and consents to the profiles that now own them. Withdrawing
one ("allow again") recomputes the same component without it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from opencdp import logs
from opencdp.identity.identifiers import Identifier
from opencdp.process import late_edges
from opencdp.store.schema import identity_rejections

if TYPE_CHECKING:
    from opencdp.process.chunk import Chunk

log = logs.get("opencdp.processor")

#: the cheap check an idle processor makes: is some rejection waiting to be applied?
PENDING = sa.select(identity_rejections.c.id).where(identity_rejections.c.applied_at.is_(None)).limit(1)


def has_pending(conn: sa.Connection) -> bool:
    return conn.execute(PENDING).first() is not None


def recompute_pairs(chunk: Chunk, pairs: list[tuple[Identifier, Identifier]]) -> set[str]:
    """Resolve again the components of these identifiers with the chunk's rejections; returns
    the live profiles of those components."""
    idents = {i for pair in pairs for i in pair}
    missing = idents - set(chunk.ident)
    if missing:
        chunk.preload(missing, set())
    profiles = late_edges.recompute_around(chunk, sorted(idents))
    chunk.flush()
    return profiles


def apply_pending(chunk: Chunk) -> set[str]:
    """Apply the rejections `load_rejections` found pending; marks them applied."""
    if not chunk.pending_rejections:
        return set()
    rows = chunk.conn.execute(
        sa.select(identity_rejections).where(identity_rejections.c.id.in_(chunk.pending_rejections))
    ).all()
    pairs = [(Identifier(r.left_type, r.left_value), Identifier(r.right_type, r.right_value)) for r in rows]
    profiles = recompute_pairs(chunk, pairs)
    chunk.conn.execute(
        identity_rejections.update()
        .where(identity_rejections.c.id.in_(chunk.pending_rejections))
        .values(applied_at=datetime.now(UTC))
    )
    log.info("rejections applied", rejections=len(rows), profiles=len(profiles))
    chunk.pending_rejections = []
    return profiles
