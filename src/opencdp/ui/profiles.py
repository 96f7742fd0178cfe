"""Profile search and lists (the 360° view's own reads are in profile_view.py).

Search looks in three places, best matches first: an exact identifier (normalised like the
processor does, so `Anna@Example.com` or `0151 …` find the profile), then identifiers containing
the text, then profiles with a trait value containing it. The last two scan their table: fine to
a few hundred thousand profiles; a search index is the next step beyond that.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from opencdp.identity.identifiers import IdentityRules
from opencdp.store.schema import identities, profiles

LIMIT = 50


def _briefs(conn: sa.Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    out: dict[str, dict[str, Any]] = {
        r.id: {
            "id": r.id,
            "traits": r.traits or {},
            "last_seen": r.last_seen,
            "events": sum((r.event_counts or {}).values()),
            "identifiers": {},
        }
        for r in conn.execute(
            sa.select(profiles.c.id, profiles.c.traits, profiles.c.last_seen, profiles.c.event_counts).where(
                profiles.c.id.in_(ids), profiles.c.merged_into.is_(None)
            )
        )
    }
    for r in conn.execute(
        sa.select(identities.c.profile_id, identities.c.type, identities.c.value)
        .where(identities.c.profile_id.in_(list(out)))
        .order_by(identities.c.type, identities.c.value)
    ):
        out[r.profile_id]["identifiers"].setdefault(r.type, []).append(r.value)
    return out


def recent(engine: sa.Engine, limit: int = 25) -> list[dict[str, Any]]:
    """The most recently active profiles (what to show before anyone searches)."""
    with engine.connect() as conn:
        ids = [
            r[0]
            for r in conn.execute(
                sa.select(profiles.c.id)
                .where(profiles.c.merged_into.is_(None))
                .order_by(profiles.c.last_seen.desc().nulls_last(), profiles.c.id)
                .limit(limit)
            )
        ]
        found = _briefs(conn, ids)
    return [found[i] | {"match": ""} for i in ids if i in found]


def search(engine: sa.Engine, rules: IdentityRules, text: str, limit: int = LIMIT) -> list[dict[str, Any]]:
    needle = text.strip()
    if not needle:
        return recent(engine)
    lowered = needle.lower()
    exact = {needle, lowered}
    for kind in ("email", "phone"):
        ident = rules.normalise(kind, needle)
        if ident is not None:
            exact.add(ident.value)
    hits: dict[str, str] = {}  # profile id → why it matched, in the order found
    with engine.connect() as conn:
        if conn.execute(sa.select(profiles.c.id).where(profiles.c.id == needle)).first():
            hits[needle] = "profile id"
        for r in conn.execute(
            sa.select(identities.c.profile_id, identities.c.type, identities.c.value)
            .where(identities.c.value.in_(sorted(exact)), identities.c.profile_id.is_not(None))
            .limit(limit)
        ):
            hits.setdefault(r.profile_id, f"{r.type} {r.value}")
        if len(hits) < limit:
            for r in conn.execute(
                sa.select(identities.c.profile_id, identities.c.type, identities.c.value)
                .where(
                    sa.func.lower(identities.c.value).contains(lowered, autoescape=True),
                    identities.c.profile_id.is_not(None),
                )
                .order_by(identities.c.value)
                .limit(limit)
            ):
                hits.setdefault(r.profile_id, f"{r.type} {r.value}")
        if len(hits) < limit:
            rows = conn.execute(
                sa.select(profiles.c.id, profiles.c.traits)
                .where(
                    profiles.c.merged_into.is_(None),
                    sa.func.lower(sa.cast(profiles.c.traits, sa.Text)).contains(lowered, autoescape=True),
                )
                .order_by(profiles.c.id)
                .limit(limit * 4)
            )
            for match in rows:
                name = next((k for k, v in (match.traits or {}).items() if lowered in str(v).lower()), None)
                if name is not None:  # the text may have matched a trait *name*, not a value
                    hits.setdefault(match.id, f"trait {name}")
        found = _briefs(conn, list(hits)[: limit * 2])
    # identities of merged-away profiles point at the survivor already; drop any that do not exist
    return [found[pid] | {"match": why} for pid, why in hits.items() if pid in found][:limit]


def display_name(brief: dict[str, Any]) -> str:
    """What to call a profile in lists: a name, else an e-mail or user id, else 'Anonymous visitor'."""
    traits, idents = brief.get("traits") or {}, brief.get("identifiers") or {}
    name = " ".join(str(traits[k]) for k in ("first_name", "last_name") if traits.get(k))
    if name:
        return name
    if isinstance(traits.get("name"), str) and traits["name"]:
        return str(traits["name"])
    for kind in ("email", "user_id", "phone"):
        if idents.get(kind):
            return str(idents[kind][0])
    return "Anonymous visitor"
