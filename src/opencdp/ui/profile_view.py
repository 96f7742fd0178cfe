"""The reads behind the 360° view of one customer, one query per table: the header, purchases,
channels with their last touch, consent for every defined purpose, the timeline in either order,
computed traits and segment memberships.

Channels are worked out from each event, first rule that fits (docs/ui.md):
1. the event name: "Email …"/"E-mail …" → e-mail, "SMS …" → SMS, "Call …" → call centre,
   "Push …" → push;
2. the source's name: containing "mail" → e-mail, "sms" → SMS, "call" → call centre,
   "push" → push, "app"/"ios"/"android" → app, "web"/"site"/"shop" → web;
3. the call type: `screen` → app, `page` → web;
4. otherwise the source's own name is the channel.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from opencdp.predict.describe import TRAIT_DESCRIPTIONS as descriptions
from opencdp.predict.store import all_models, predicted_traits
from opencdp.privacy.consent import list_purposes
from opencdp.store.schema import (
    event_owners,
    events,
    identities,
    profile_events,
    profiles,
    segment_memberships,
    segments,
    sources,
)
from opencdp.traits import store as trait_store
from opencdp.traits.definitions import DERIVED

ORDER_EVENT = "Order Completed"
CHANNEL_LABELS = {
    "web": "Web",
    "app": "App",
    "email": "E-mail",
    "sms": "SMS",
    "call": "Call centre",
    "push": "Push",
}
_BY_NAME = (("email ", "email"), ("e-mail ", "email"), ("sms ", "sms"), ("call ", "call"), ("push ", "push"))
_BY_SOURCE = (
    ("mail", "email"),
    ("sms", "sms"),
    ("call", "call"),
    ("push", "push"),
    ("app", "app"),
    ("ios", "app"),
    ("android", "app"),
    ("web", "web"),
    ("site", "web"),
    ("shop", "web"),
)
_BY_TYPE = {"screen": "app", "page": "web"}


def channel_of(source: str, kind: str, event: str | None) -> str:
    """The channel an event came through (the rules are in the module's docstring)."""
    name = (event or "").lower()
    for prefix, channel in _BY_NAME:
        if name.startswith(prefix):
            return channel
    lowered = source.lower()
    for part, channel in _BY_SOURCE:
        if part in lowered:
            return channel
    return _BY_TYPE.get(kind, source)


def _owned(profile_id: str) -> tuple[Any, sa.ColumnElement[bool]]:
    """The profile's events (with their source) and the condition that selects them."""
    joined = (
        events.join(event_owners, event_owners.c.event_id == events.c.id)
        .join(identities, identities.c.id == event_owners.c.identity_id)
        .join(sources, sources.c.id == events.c.source_id)
    )
    return joined, identities.c.profile_id == profile_id


def channels(conn: sa.Connection, profile_id: str) -> list[dict[str, Any]]:
    """Every channel the customer used, with the number of events and the last touch; latest first."""
    joined, mine = _owned(profile_id)
    rows = conn.execute(
        sa.select(
            sources.c.name,
            events.c.type,
            events.c.event,
            sa.func.count().label("n"),
            sa.func.max(events.c.timestamp).label("last"),
        )
        .select_from(joined)
        .where(mine)
        .group_by(sources.c.name, events.c.type, events.c.event)
    ).all()
    found: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = channel_of(r.name, r.type, r.event)
        entry = found.setdefault(
            key, {"channel": key, "label": CHANNEL_LABELS.get(key, key), "events": 0, "last": None}
        )
        entry["events"] += r.n
        if entry["last"] is None or r.last > entry["last"]:
            entry.update(last=r.last, last_event=r.event or r.type, source=r.name)
    return sorted(found.values(), key=lambda c: c["last"], reverse=True)


def _amount(properties: dict[str, Any]) -> float | None:
    for key in ("revenue", "total", "value"):
        value = properties.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _products(properties: dict[str, Any]) -> list[str]:
    """Product names (Segment's e-commerce spec: `products: [{name, …}]`), else the category."""
    listed = properties.get("products")
    names = []
    if isinstance(listed, list):
        names = [
            str(p.get("name") or p.get("sku") or p.get("product_id"))
            for p in listed
            if isinstance(p, dict) and (p.get("name") or p.get("sku") or p.get("product_id"))
        ]
    if not names and properties.get("category"):
        names = [str(properties["category"])]
    return names[:5]


def purchases(
    conn: sa.Connection, profile_id: str, computed: dict[str, Any], last: int = 5
) -> dict[str, Any]:
    """Orders, revenue and favourite category (computed traits, which cover every order) and the
    last few `Order Completed` events with what was in them."""
    joined, mine = _owned(profile_id)
    rows = conn.execute(
        sa.select(events.c.timestamp, events.c.payload)
        .select_from(joined)
        .where(mine, events.c.type == "track", events.c.event == ORDER_EVENT)
        .order_by(events.c.timestamp.desc(), events.c.id.desc())
        .limit(last)
    ).all()
    recent = []
    for r in rows:
        props = (r.payload or {}).get("properties") or {}
        props = props if isinstance(props, dict) else {}
        currency = props.get("currency")
        recent.append(
            {
                "at": r.timestamp,
                "amount": _amount(props),
                "currency": currency if isinstance(currency, str) and len(currency) == 3 else None,
                "products": _products(props),
                "quantity": props.get("items") if isinstance(props.get("items"), int) else None,
                "order_id": props.get("order_id"),
            }
        )
    return {
        "orders": computed.get("order_count", 0),
        "revenue": computed.get("total_revenue"),
        "average": computed.get("average_order_value"),
        "favourite": computed.get("favourite_category"),
        "last_order_at": computed.get("last_order_at") or (recent[0]["at"] if recent else None),
        "recent": recent,
    }


def consent_rows(purposes: list[dict[str, Any]], meta: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per defined purpose: granted, denied or not asked (opt-in: not asked is no consent),
    with when, which source and which text version; purposes recorded but not defined follow."""
    out = []
    defined = {p["name"] for p in purposes}
    for purpose in [*purposes, *({"name": n, "description": None} for n in sorted(meta) if n not in defined)]:
        record = meta.get(purpose["name"])
        status = "not asked" if not record else "granted" if record[0] else "denied"
        out.append(
            {
                "purpose": purpose["name"],
                "description": purpose["description"],
                "status": status,
                "at": record[1] if record else None,
                "source": record[4] if record and len(record) > 4 else None,
                "version": record[5] if record and len(record) > 5 else None,
                "defined": purpose["name"] in defined,
            }
        )
    return out


#: How the customer proved a linked login (`accounts/linking.py`), as the merge history says it.
LINK_PROOFS = {
    "session": "proven by a signed-in session",
    "verified_email": "proven by a verified e-mail",
    "signup": "made by this login",
}
ACCOUNT_EVENTS = ("Account Linked", "Account Unlinked")


def account_links(conn: sa.Connection, profile_id: str) -> list[dict[str, Any]]:
    """The customer's own linking and unlinking of logins (`Account Linked` / `Account Unlinked`
    from the hosted account pages), oldest first: "Account Linked: google, proven by a verified
    e-mail". They belong in the merge history: a linked login is one more identifier of the person."""
    rows = conn.execute(
        sa.select(
            profile_events.c.event_id, profile_events.c.name, profile_events.c.ts, profile_events.c.properties
        )
        .where(profile_events.c.profile_id == profile_id, profile_events.c.name.in_(ACCOUNT_EVENTS))
        .order_by(profile_events.c.ts, profile_events.c.event_id)
    ).all()
    out = []
    for row in rows:
        props = row.properties if isinstance(row.properties, dict) else {}
        text = f"{row.name}: {props.get('provider') or 'unknown provider'}"
        if row.name == "Account Linked" and props.get("method"):
            text += ", " + LINK_PROOFS.get(str(props["method"]), f"proven by {props['method']}")
        out.append({"id": row.event_id, "timestamp": row.ts, "text": text})
    return out


def extras(engine: sa.Engine, profile_id: str) -> dict[str, Any]:
    """Computed traits (with what they mean), purchases, channels, memberships and consent."""
    with engine.connect() as conn:
        state = conn.execute(
            sa.select(
                profiles.c.computed, profiles.c.consent_meta, profiles.c.predicted, profiles.c.predicted_meta
            ).where(profiles.c.id == profile_id)
        ).one()
        described = {d.name: d.description for d in trait_store.definitions(conn)} | DERIVED
        memberships = conn.execute(
            sa.select(
                segments.c.id,
                segments.c.name,
                segment_memberships.c.entered_at,
                segment_memberships.c.exited_at,
            )
            .join(segments, segments.c.id == segment_memberships.c.segment_id)
            .where(segment_memberships.c.profile_id == profile_id)
            .order_by(segment_memberships.c.exited_at.is_not(None), segments.c.name)
        ).all()
        computed = state.computed or {}
        models = all_models(conn)
        bought = purchases(conn, profile_id, computed)
        used = channels(conn, profile_id)
        linked = account_links(conn, profile_id)
    meta = state.consent_meta if isinstance(state.consent_meta, dict) else {}
    return {
        "computed": [
            {"name": name, "value": computed[name], "description": described.get(name, "")}
            for name in sorted(computed)
        ],
        "computed_values": computed,
        "predicted": [
            {"name": name, **entry, "description": descriptions.get(name, "")}
            for name, entry in predicted_traits(state.predicted, state.predicted_meta, models).items()
        ],
        "purchases": bought,
        "channels": used,
        "account_links": linked,
        "memberships": [dict(m._mapping) for m in memberships],
        "consent": consent_rows(list_purposes(engine), meta),
    }


def header(found: dict[str, Any], computed: dict[str, Any]) -> dict[str, Any]:
    """What a marketer reads first: e-mail, country, segment, value, last order."""
    traits = {k: v["value"] for k, v in found["traits"].items()}
    emails = [i["value"] for i in found["identifiers"] if i["type"] == "email"]
    email = traits.get("email") if isinstance(traits.get("email"), str) else None
    last_order: datetime | str | None = computed.get("last_order_at")
    return {
        "email": email or (emails[0] if emails else None),
        "country": traits.get("country"),
        "segment": computed.get("rfm_segment") or traits.get("lifecycle_stage") or traits.get("lifecycle"),
        "value": computed.get("total_revenue"),
        "last_order": last_order,
    }
