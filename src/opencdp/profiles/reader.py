"""Reading profiles: by id (merged ids resolve to the survivor), by any identifier, the event
timeline and the merge history that explains why identifiers are one person."""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa

from opencdp.identity.identifiers import IdentityRules
from opencdp.predict.store import all_models, predicted_traits
from opencdp.store.schema import (
    event_owners,
    events,
    identities,
    identity_conflicts,
    identity_links,
    profiles,
    sources,
)


class ProfileNotFound(LookupError):
    pass


def resolve_profile_id(conn: sa.Connection, profile_id: str) -> str:
    """Follow `merged_into` to the surviving profile (merges are flattened, so at most one hop)."""
    for _ in range(8):
        row = conn.execute(sa.select(profiles.c.merged_into).where(profiles.c.id == profile_id)).first()
        if row is None:
            raise ProfileNotFound(f"no profile {profile_id!r}")
        if row.merged_into is None:
            return profile_id
        profile_id = row.merged_into
    return profile_id


def _identifiers(conn: sa.Connection, profile_id: str) -> list[dict[str, str]]:
    rows = conn.execute(
        sa.select(identities.c.type, identities.c.value)
        .where(identities.c.profile_id == profile_id)
        .order_by(identities.c.type, identities.c.value)
    )
    return [{"type": r.type, "value": r.value} for r in rows]


def get_profile(engine: sa.Engine, profile_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        survivor = resolve_profile_id(conn, profile_id)
        row = conn.execute(sa.select(profiles).where(profiles.c.id == survivor)).one()
        merged = [
            r[0]
            for r in conn.execute(
                sa.select(profiles.c.id).where(profiles.c.merged_into == survivor).order_by(profiles.c.id)
            )
        ]
        return {
            "id": survivor,
            "requested_id": profile_id,
            "merged_ids": merged,
            "identifiers": _identifiers(conn, survivor),
            "traits": {
                name: {"value": value, "timestamp": meta[0], "message_id": meta[1], "source": meta[3]}
                for name, value in sorted(row.traits.items())
                for meta in [row.trait_meta[name]]
            },
            "computed": computed_traits(row.computed, row.computed_at),
            "predicted": predicted_traits(row.predicted, row.predicted_meta, all_models(conn)),
            "first_seen": row.first_seen,
            "last_seen": row.last_seen,
            "event_counts": row.event_counts,
            "updated_at": row.updated_at,
            "rejections": profile_rejections(conn, survivor),
        }


def computed_traits(values: dict[str, Any] | None, computed_at: Any) -> dict[str, dict[str, Any]]:
    """Computed traits by name, each `{"value", "computed_at"}`: a value with the moment it was
    computed (its time windows end then), so predicted traits can join with their own times."""
    return {
        name: {"value": value, "computed_at": computed_at} for name, value in sorted((values or {}).items())
    }


def find_profile_id(engine: sa.Engine, rules: IdentityRules, kind: str, value: str) -> str:
    ident = rules.normalise(kind, value)
    if ident is None:
        raise ProfileNotFound(f"{kind} {value!r} is not a usable identifier (blocked or malformed)")
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(identities.c.profile_id).where(
                identities.c.type == ident.type, identities.c.value == ident.value
            )
        ).first()
    if row is None or row.profile_id is None:
        raise ProfileNotFound(f"no profile has {ident.type} {ident.value!r}")
    return str(row.profile_id)


#: The timeline's orders: when it happened (event time) or when it arrived (log order).
TimelineOrder = Literal["time", "arrival"]


def timeline_rows(
    conn: sa.Connection, profile_id: str, order: TimelineOrder, before: int | None, limit: int
) -> list[dict[str, Any]]:
    """Events owned by the (surviving) profile, newest first by event time or by arrival; `before` is
    the id of the last event shown: the next page starts after it in the same order."""
    stmt = (
        sa.select(
            events.c.id,
            events.c.type,
            events.c.event,
            events.c.timestamp,
            events.c.received_at,
            events.c.message_id,
            sources.c.name.label("source"),
            events.c.payload,
        )
        .join(event_owners, event_owners.c.event_id == events.c.id)
        .join(identities, identities.c.id == event_owners.c.identity_id)
        .join(sources, sources.c.id == events.c.source_id)
        .where(identities.c.profile_id == profile_id)
        .limit(limit)
    )
    if order == "arrival":
        stmt = stmt.order_by(events.c.id.desc())
        if before is not None:
            stmt = stmt.where(events.c.id < before)
    else:
        stmt = stmt.order_by(events.c.timestamp.desc(), events.c.id.desc())
        if before is not None:
            at = conn.execute(sa.select(events.c.timestamp).where(events.c.id == before)).scalar()
            if at is not None:
                stmt = stmt.where(
                    sa.or_(events.c.timestamp < at, sa.and_(events.c.timestamp == at, events.c.id < before))
                )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def timeline(
    engine: sa.Engine, profile_id: str, before_id: int | None, limit: int, order: TimelineOrder = "arrival"
) -> tuple[str, list[dict[str, Any]]]:
    """The profile's events (a merged id resolves to the survivor), a page at a time."""
    with engine.connect() as conn:
        survivor = resolve_profile_id(conn, profile_id)
        return survivor, timeline_rows(conn, survivor, order, before_id, limit)


def profile_rejections(conn: sa.Connection, profile_id: str) -> list[dict[str, Any]]:
    """The operator's rejected pairs (undone merges) naming an identifier of this profile."""
    from opencdp.identity.identifiers import Identifier
    from opencdp.profiles.unmerge import list_rejections

    own = [Identifier(i["type"], i["value"]) for i in _identifiers(conn, profile_id)]
    return list_rejections(conn, own)


def _match_properties(conn: sa.Connection, event_ids: list[int]) -> dict[int, dict[str, Any]]:
    """`explanation` and `match_probability` of the `Identity Matched` events of probabilistic links."""
    if not event_ids:
        return {}
    found = {}
    for row in conn.execute(sa.select(events.c.id, events.c.payload).where(events.c.id.in_(event_ids))):
        properties = row.payload.get("properties") if isinstance(row.payload, dict) else None
        if isinstance(properties, dict):
            probability = properties.get("match_probability")
            explanation = properties.get("explanation")
            found[row.id] = {
                "explanation": explanation if isinstance(explanation, str) else None,
                "match_probability": probability
                if isinstance(probability, int | float) and not isinstance(probability, bool)
                else None,
            }
    return found


def merge_history(engine: sa.Engine, profile_id: str) -> dict[str, Any]:
    """Every accepted link (the event and the rule that joined two identifiers), every refused
    one, and the operator's rejections (undone merges) that name one of its identifiers."""
    with engine.connect() as conn:
        survivor = resolve_profile_id(conn, profile_id)
        links = conn.execute(
            sa.select(identity_links)
            .where(identity_links.c.profile_id == survivor)
            .order_by(identity_links.c.ts, identity_links.c.id)
        ).all()
        own = {(i["type"], i["value"]) for i in _identifiers(conn, survivor)}
        pairs = list(own)
        conflicts = (
            conn.execute(
                sa.select(identity_conflicts)
                .where(
                    sa.or_(
                        sa.tuple_(identity_conflicts.c.left_type, identity_conflicts.c.left_value).in_(pairs),
                        sa.tuple_(identity_conflicts.c.right_type, identity_conflicts.c.right_value).in_(
                            pairs
                        ),
                    )
                )
                .order_by(identity_conflicts.c.ts, identity_conflicts.c.id)
            ).all()
            if pairs
            else []
        )
        merged = [
            r[0] for r in conn.execute(sa.select(profiles.c.id).where(profiles.c.merged_into == survivor))
        ]
        matched = _match_properties(conn, sorted({r.event_id for r in links if r.rule == "probabilistic"}))
        rejections = profile_rejections(conn, survivor)

    def link(r: Any) -> dict[str, Any]:
        match = matched.get(r.event_id, {})
        return pair(r) | {
            "id": r.id,
            "explanation": _explain(r, match.get("explanation")),
            "match_probability": match.get("match_probability"),
        }

    def pair(r: Any) -> dict[str, Any]:
        return {
            "event_id": r.event_id,
            "rule": r.rule,
            "timestamp": r.ts,
            "left": {"type": r.left_type, "value": r.left_value},
            "right": {"type": r.right_type, "value": r.right_value},
        }

    return {
        "id": survivor,
        "merged_ids": merged,
        "links": [link(r) for r in links],
        "conflicts": [pair(r) | {"explanation": _refused(r.rule)} for r in conflicts],
        "rejections": rejections,
    }


def _refused(rule: str) -> str:
    if rule == "rejected":
        return "refused: an operator rejected this pair (unmerge)"
    return f"refused: {rule.removeprefix('limit:')} per profile"


def _explain(link: Any, match_explanation: str | None = None) -> str:
    """Why two identifiers are one person; for a probabilistic match, the matching job's sentence."""
    if link.rule == "probabilistic" and match_explanation:
        return match_explanation
    how = {"alias": "alias call", "probabilistic": "probabilistic match"}.get(
        link.rule, "arrived together in one event"
    )
    left = f"{link.left_type} {link.left_value!r}"
    right = f"{link.right_type} {link.right_value!r}"
    return f"{left} and {right}: {how} (event {link.event_id})"
