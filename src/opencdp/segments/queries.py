"""Answers about segments: preview (count + sample, nothing saved), member lists and CSV export."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.csvsafe import line
from opencdp.privacy.consent import consenting_profiles, require_purpose
from opencdp.segments.reach import has_identifier
from opencdp.segments.store import checked_query, get
from opencdp.store.schema import identities, profiles, segment_memberships


def preview(
    engine: sa.Engine, criteria: Any, sample_size: int = 10, now: datetime | None = None
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        query = checked_query(conn, criteria, now=now)[1]  # built once: big criteria cost to build
        count = conn.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
        ids = (
            [r[0] for r in conn.execute(query.order_by(profiles.c.id).limit(sample_size))]
            if sample_size
            else []
        )
        sample = _brief(conn, ids)
    return {"count": int(count), "sample": sample, "evaluated_at": now}


def _brief(conn: sa.Connection, ids: Sequence[str]) -> list[dict[str, Any]]:
    if not ids:
        return []
    rows = {
        r.id: r
        for r in conn.execute(
            sa.select(profiles.c.id, profiles.c.traits, profiles.c.computed, profiles.c.last_seen).where(
                profiles.c.id.in_(list(ids))
            )
        )
    }
    idents: dict[str, list[dict[str, str]]] = {}
    for r in conn.execute(
        sa.select(identities.c.profile_id, identities.c.type, identities.c.value)
        .where(identities.c.profile_id.in_(list(ids)))
        .order_by(identities.c.type, identities.c.value)
    ):
        idents.setdefault(r.profile_id, []).append({"type": r.type, "value": r.value})
    return [
        {
            "id": pid,
            "identifiers": idents.get(pid, []),
            "traits": rows[pid].traits,
            "computed": rows[pid].computed or {},
            "last_seen": rows[pid].last_seen,
        }
        for pid in ids
        if pid in rows
    ]


def members(
    engine: sa.Engine, name: str, after: str | None, limit: int, purpose: str | None
) -> dict[str, Any]:
    """Current members that consented to `purpose` — required for anything that leaves the system;
    None only for internal counts (the dashboard's and the API's segment sizes)."""
    segment = get(engine, name)
    with engine.connect() as conn:
        where = [segment_memberships.c.segment_id == segment.id, segment_memberships.c.exited_at.is_(None)]
        if purpose is not None:
            where.append(_consented(require_purpose(conn, purpose)))
        stmt = (
            sa.select(segment_memberships.c.profile_id, segment_memberships.c.entered_at)
            .where(*where)
            .order_by(segment_memberships.c.profile_id)
            .limit(limit)
        )
        if after:
            stmt = stmt.where(segment_memberships.c.profile_id > after)
        rows = conn.execute(stmt).all()
        total = conn.execute(
            sa.select(sa.func.count()).select_from(segment_memberships).where(*where)
        ).scalar_one()
        briefs = {b["id"]: b for b in _brief(conn, [r.profile_id for r in rows])}
    return {
        "segment": segment.name,
        "purpose": purpose,
        "total": int(total),
        "members": [
            {
                "profile_id": r.profile_id,
                "entered_at": r.entered_at,
                **{k: briefs.get(r.profile_id, {}).get(k) for k in ("identifiers", "traits", "computed")},
            }
            for r in rows
        ],
        "next_after": rows[-1].profile_id if len(rows) == limit else None,
    }


def member_count(engine: sa.Engine, name: str) -> int:
    """All current members, consent or not (a number, not data about anyone)."""
    return int(members(engine, name, None, 1, None)["total"])


def _consented(purpose: str) -> sa.ColumnElement[bool]:
    """Opt-in: only a recorded, granted consent counts."""
    return segment_memberships.c.profile_id.in_(consenting_profiles(purpose))


def export_csv(
    engine: sa.Engine,
    name: str,
    traits: Sequence[str],
    computed: Sequence[str],
    purpose: str,
    identifier_types: Sequence[str] = ("user_id", "email", "phone"),
    needs: str | None = None,
    predicted: Sequence[str] = (),
) -> Iterator[str]:
    """Current members that consented to `purpose`, as CSV streamed in pages (profile id, entered time,
    identifiers, chosen traits, computed and predicted traits). Consent is checked per page, so a
    withdrawal applies at once.
    `needs`: only members with an identifier of this type (reach.CHANNELS: an e-mail export needs
    an e-mail address) — the same filters reach.reach counts."""
    segment = get(engine, name)
    with engine.connect() as conn:
        purpose = require_purpose(conn, purpose)
    header = ["profile_id", "entered_at", *identifier_types, *traits, *(f"computed.{c}" for c in computed)]
    header += [f"predicted.{p}" for p in predicted]
    yield line(header)
    after = ""
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    segment_memberships.c.profile_id,
                    segment_memberships.c.entered_at,
                    profiles.c.traits,
                    profiles.c.computed,
                    profiles.c.predicted,
                )
                .join(profiles, profiles.c.id == segment_memberships.c.profile_id)
                .where(
                    segment_memberships.c.segment_id == segment.id,
                    segment_memberships.c.exited_at.is_(None),
                    segment_memberships.c.profile_id > after,
                    _consented(purpose),
                    has_identifier(needs) if needs else sa.true(),
                )
                .order_by(segment_memberships.c.profile_id)
                .limit(1000)
            ).all()
            if not rows:
                return
            idents: dict[tuple[str, str], list[str]] = {}
            for r in conn.execute(
                sa.select(identities.c.profile_id, identities.c.type, identities.c.value)
                .where(
                    identities.c.profile_id.in_([row.profile_id for row in rows]),
                    identities.c.type.in_(list(identifier_types)),
                )
                .order_by(identities.c.value)
            ):
                idents.setdefault((r.profile_id, r.type), []).append(r.value)
        for row in rows:
            values = [row.profile_id, row.entered_at.isoformat()]
            values += [";".join(idents.get((row.profile_id, t), [])) for t in identifier_types]
            values += [row.traits.get(t) for t in traits]
            values += [(row.computed or {}).get(c) for c in computed]
            values += [(row.predicted or {}).get(p) for p in predicted]
            yield line(values)
        after = rows[-1].profile_id
