"""The names the segment builder offers: traits, computed traits, events and their properties,
and saved segments, as they really occur in the database.

Traits and properties are read from a sample (the first profiles by id, which are spread evenly
because ids are hashes, and the latest events), so the page stays fast on large installations;
event names come from a loose index scan of `profile_events`. All but the segment names is cached
for a minute per database: names change rarely and the builder asks on every page load.
"""

from __future__ import annotations

import difflib
import threading
import time
import weakref
from collections import Counter, defaultdict
from typing import Any

import sqlalchemy as sa

from opencdp.store.dialect import json_present
from opencdp.store.schema import profile_events, profiles, segments
from opencdp.traits import store as trait_store
from opencdp.traits.definitions import DERIVED

TTL_SECONDS = 60.0
PROFILE_SAMPLE, EVENT_SAMPLE = 3000, 3000
#: how many of an event's latest occurrences are searched for a property not in the sample
PROPERTY_CHECK = 5000
#: per engine (not per URL: a database emptied and refilled under the same URL starts afresh)
_cache: weakref.WeakKeyDictionary[sa.Engine, tuple[float, dict[str, Any]]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


#: derived traits whose values are text (the others are numbers)
_TEXT_DERIVED = frozenset({"rfm_score", "rfm_segment", "last_session_started_at"})


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    return "other"


def _describe(values: dict[str, Counter[str]], examples: dict[str, Counter[str]]) -> list[dict[str, Any]]:
    """Per name: the most common JSON type (to preset the value type) and shared example values."""
    return [
        {
            "name": name,
            "kind": kinds.most_common(1)[0][0],
            "examples": [v for v, _ in examples.get(name, Counter()).most_common(12)],
        }
        for name, kinds in sorted(values.items())
    ]


def _collect(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kinds: defaultdict[str, Counter[str]] = defaultdict(Counter)
    examples: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for document in rows:
        for name, value in (document or {}).items():
            kinds[name][_kind(value)] += 1
            if isinstance(value, str | int | float) and not isinstance(value, bool) and len(str(value)) <= 40:
                examples[name][str(value)] += 1
    # only values many profiles share are useful suggestions (not e-mail addresses or ids)
    shared = {name: Counter({v: n for v, n in bucket.items() if n > 1}) for name, bucket in examples.items()}
    return _describe(kinds, shared)


def _event_names(limit: int = 1000) -> sa.Select[Any]:
    """Every distinct event name, with the type of one of its events (to group the picker), by a
    "loose index scan": one index step per name instead of reading every event."""
    first = sa.select(sa.func.min(profile_events.c.name).label("name")).cte("names", recursive=True)
    previous, later, one = first.alias("previous"), profile_events.alias("later"), profile_events.alias("one")
    following = sa.select(sa.func.min(later.c.name)).where(later.c.name > previous.c.name).scalar_subquery()
    names = first.union_all(sa.select(following).where(previous.c.name.is_not(None)))
    kind = sa.select(one.c.type).where(one.c.name == names.c.name).limit(1).scalar_subquery()
    return sa.select(names.c.name, kind.label("type")).where(names.c.name.is_not(None)).limit(limit)


def build(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        sample = conn.execute(  # in primary key order: no sort, whatever the table size
            sa.select(profiles.c.traits, profiles.c.computed, profiles.c.predicted)
            .order_by(profiles.c.id)
            .limit(PROFILE_SAMPLE)
        ).all()
        names = conn.execute(_event_names()).all()
        recent = conn.execute(
            sa.select(profile_events.c.name, profile_events.c.properties)
            .order_by(profile_events.c.event_id.desc())
            .limit(EVENT_SAMPLE)
        ).all()
        definitions = trait_store.definitions(conn)
    # every profile has the same computed traits (one set of definitions): a few show their types
    computed = {c["name"]: c for c in _collect([r.computed for r in sample[:300]])}
    for definition in definitions:
        computed.setdefault(definition.name, {"name": definition.name, "kind": "number", "examples": []})
    for name in DERIVED:
        kind = "text" if name in _TEXT_DERIVED else "number"
        computed.setdefault(name, {"name": name, "kind": kind, "examples": []})
    by_event: dict[str, list[dict[str, Any]]] = {}
    for r in recent:
        if r.name is not None:
            by_event.setdefault(r.name, []).append(r.properties)
    return {
        "traits": _collect([r.traits for r in sample]),
        "computed": [computed[k] for k in sorted(computed)],
        "predicted": _collect([r.predicted or {} for r in sample]),
        "events": [{"name": r.name, "type": r.type} for r in names],
        "properties": {name: _collect(rows) for name, rows in sorted(by_event.items())},
    }


def catalog(engine: sa.Engine, fresh: bool = False) -> dict[str, Any]:
    """The cached names, plus the saved segments read fresh (another process may just have saved one)."""
    now = time.monotonic()
    with _lock:
        hit = _cache.get(engine)
    if hit and not fresh and now - hit[0] < TTL_SECONDS:
        found = hit[1]
    else:
        found = build(engine)
        with _lock:
            _cache[engine] = (now, found)
    with engine.connect() as conn:
        saved = [r[0] for r in conn.execute(sa.select(segments.c.name).order_by(segments.c.name))]
    return found | {"segments": saved}


# --- Checking a typed name against the catalogue (report parameters) ---------------------------


def _suggestion(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6) or difflib.get_close_matches(
        name.lower(), [k.lower() for k in known], n=1, cutoff=0.6
    )
    if not close:
        return ""
    match = next((k for k in known if k.lower() == close[0].lower()), close[0])
    return f" Did you mean {match!r}?"


def unknown_event(engine: sa.Engine, name: str) -> str | None:
    """A sentence when no processed event has this name (the cached list first, then the index, so
    an event first seen within the cache's minute is not refused); None when it is known."""
    known = [e["name"] for e in catalog(engine)["events"]]
    if name in known:
        return None
    with engine.connect() as conn:
        if conn.execute(
            sa.select(profile_events.c.name).where(profile_events.c.name == name).limit(1)
        ).first():
            return None
    return f"There is no event named {name!r} in the data.{_suggestion(name, known)}"


def numeric_properties(engine: sa.Engine, event: str) -> list[str]:
    """Properties of `event` that hold numbers in the sampled recent events (revenue pickers)."""
    return [p["name"] for p in catalog(engine)["properties"].get(event, []) if p["kind"] == "number"]


def unknown_property(engine: sa.Engine, event: str, name: str) -> str | None:
    """A sentence when none of the latest events named `event` has the property `name`."""
    if name in numeric_properties(engine, event):
        return None
    with engine.connect() as conn:
        recent = (
            sa.select(profile_events.c.properties)
            .where(profile_events.c.name == event)
            .order_by(profile_events.c.event_id.desc())
            .limit(PROPERTY_CHECK)
            .subquery()
        )
        found = conn.execute(
            sa.select(sa.literal(1)).where(json_present(recent.c.properties, name)).limit(1)
        ).first()
    if found:
        return None
    known = [p["name"] for p in catalog(engine)["properties"].get(event, [])]
    return f"Events named {event!r} have no property {name!r}.{_suggestion(name, known)}"
