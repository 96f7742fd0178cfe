"""Profile search and lists: what matches, filtered, sorted and paged with its total, and the
list as CSV for one consent purpose (the 360° view's own reads are in profile_view.py).

Search looks in three places, best matches first: an exact identifier (normalised like the
processor does, so `Anna@Example.com` or `0151 …` find the profile), then identifiers containing
the text, then profiles with a trait value containing it. The matches are collected first (at
most `MATCH_CAP`; the page says when there were more), then filters, sort and paging run in SQL
over them. The last two places scan their table: fine to a few hundred thousand profiles; a
search index is the next step beyond that. Without a search text the list is every profile,
filtered, sorted and paged in SQL alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa

from opencdp.csvsafe import line
from opencdp.identity.identifiers import IdentityRules
from opencdp.privacy.consent import consenting_profiles
from opencdp.store.dialect import json_number, json_text
from opencdp.store.schema import identities, profiles

PAGE_SIZE = 50
MATCH_CAP = 2000
EXPORT_PAGE = 1000
Sort = Literal["relevance", "last_seen", "first_seen", "value", "orders"]
SORTS: dict[str, str] = {
    "relevance": "Best match",
    "last_seen": "Last seen",
    "first_seen": "First seen (newest)",
    "value": "Value",
    "orders": "Orders",
}
_SORT_KEYS: dict[str, sa.ColumnElement[Any]] = {
    "last_seen": profiles.c.last_seen,
    "first_seen": profiles.c.first_seen,
    "value": json_number(profiles.c.computed, "total_revenue"),
    "orders": json_number(profiles.c.computed, "order_count"),
}
EXPORT_COLUMNS = (
    "profile_id",
    "user_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "country",
    "rfm_segment",
    "order_count",
    "total_revenue",
    "first_seen",
    "last_seen",
)


@dataclass(frozen=True)
class Filters:
    """What narrows a list; every field empty means everyone. `consent` is a purpose name that
    the caller has checked with `require_purpose`."""

    country: str = ""
    segment: str = ""
    has_email: bool = False
    consent: str = ""
    seen_days: int | None = None

    @property
    def active(self) -> bool:
        return bool(self.country or self.segment or self.has_email or self.consent or self.seen_days)

    def where(self, now: datetime | None = None) -> list[sa.ColumnElement[bool]]:
        out: list[sa.ColumnElement[bool]] = [profiles.c.merged_into.is_(None)]
        if self.country:
            out.append(json_text(profiles.c.traits, "country") == self.country)
        if self.segment:
            out.append(json_text(profiles.c.computed, "rfm_segment") == self.segment)
        if self.has_email:
            out.append(
                profiles.c.id.in_(sa.select(identities.c.profile_id).where(identities.c.type == "email"))
            )
        if self.consent:
            out.append(profiles.c.id.in_(consenting_profiles(self.consent)))
        if self.seen_days:
            out.append(profiles.c.last_seen >= (now or datetime.now(UTC)) - timedelta(days=self.seen_days))
        return out


@dataclass
class Matches:
    """Profile id → why it matched, best first; `exact` the ids found by an exact identifier."""

    why: dict[str, str]
    exact: list[str]
    capped: bool


def _briefs(conn: sa.Connection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    out: dict[str, dict[str, Any]] = {
        r.id: {
            "id": r.id,
            "traits": r.traits or {},
            "computed": r.computed or {},
            "first_seen": r.first_seen,
            "last_seen": r.last_seen,
            "events": sum((r.event_counts or {}).values()),
            "identifiers": {},
        }
        for r in conn.execute(
            sa.select(
                profiles.c.id,
                profiles.c.traits,
                profiles.c.computed,
                profiles.c.first_seen,
                profiles.c.last_seen,
                profiles.c.event_counts,
            ).where(profiles.c.id.in_(list(ids)), profiles.c.merged_into.is_(None))
        )
    }
    for r in conn.execute(
        sa.select(identities.c.profile_id, identities.c.type, identities.c.value)
        .where(identities.c.profile_id.in_(list(out)))
        .order_by(identities.c.type, identities.c.value)
    ):
        out[r.profile_id]["identifiers"].setdefault(r.type, []).append(r.value)
    return out


def matches(conn: sa.Connection, rules: IdentityRules, text: str, cap: int = MATCH_CAP) -> Matches:
    """Every profile the text finds (up to `cap`), best first."""
    needle = text.strip()
    lowered = needle.lower()
    exact = {needle, lowered}
    for kind in ("email", "phone"):
        ident = rules.normalise(kind, needle)
        if ident is not None:
            exact.add(ident.value)
    hits: dict[str, str] = {}
    if conn.execute(
        sa.select(profiles.c.id).where(profiles.c.id == needle, profiles.c.merged_into.is_(None))
    ).first():
        hits[needle] = "profile id"
    for r in conn.execute(
        sa.select(identities.c.profile_id, identities.c.type, identities.c.value)
        .where(identities.c.value.in_(sorted(exact)), identities.c.profile_id.is_not(None))
        .limit(cap)
    ):
        hits.setdefault(r.profile_id, f"{r.type} {r.value}")
    exact_ids = list(hits)
    if len(hits) < cap:
        for r in conn.execute(
            sa.select(identities.c.profile_id, identities.c.type, identities.c.value)
            .where(
                sa.func.lower(identities.c.value).contains(lowered, autoescape=True),
                identities.c.profile_id.is_not(None),
            )
            .order_by(identities.c.value)
            .limit(cap + 1)
        ):
            hits.setdefault(r.profile_id, f"{r.type} {r.value}")
    if len(hits) < cap:
        rows = conn.execute(
            sa.select(profiles.c.id, profiles.c.traits)
            .where(
                profiles.c.merged_into.is_(None),
                sa.func.lower(sa.cast(profiles.c.traits, sa.Text)).contains(lowered, autoescape=True),
            )
            .order_by(profiles.c.id)
            .limit(cap * 2)
        )
        for match in rows:
            name = next((k for k, v in (match.traits or {}).items() if lowered in str(v).lower()), None)
            if name is not None:  # the text may have matched a trait *name*, not a value
                hits.setdefault(match.id, f"trait {name}")
    capped = len(hits) > cap
    return Matches(dict(list(hits.items())[:cap]), exact_ids, capped)


def _ordered(stmt: sa.Select[Any], sort: str) -> sa.Select[Any]:
    key = _SORT_KEYS.get(sort, profiles.c.last_seen)
    return stmt.order_by(key.desc().nulls_last(), profiles.c.id)


def listing(
    engine: sa.Engine,
    rules: IdentityRules,
    text: str,
    filters: Filters,
    sort: Sort,
    page: int = 1,
    size: int = PAGE_SIZE,
) -> dict[str, Any]:
    """One page of the list with its total. Five queries whatever the page size: matches (up to
    three), ids, briefs and their identifiers."""
    offset = (page - 1) * size
    found: Matches | None = None
    with engine.connect() as conn:
        where = filters.where()
        if text.strip():
            found = matches(conn, rules, text)
            ids = [
                r[0]
                for r in conn.execute(
                    _ordered(sa.select(profiles.c.id).where(profiles.c.id.in_(list(found.why)), *where), sort)
                )
            ]
            if sort == "relevance":
                rank = {pid: n for n, pid in enumerate(found.why)}
                ids.sort(key=rank.__getitem__)
            total, page_ids = len(ids), ids[offset : offset + size]
        else:
            total = conn.execute(sa.select(sa.func.count()).select_from(profiles).where(*where)).scalar_one()
            page_ids = [
                r[0]
                for r in conn.execute(
                    _ordered(sa.select(profiles.c.id).where(*where), sort).limit(size).offset(offset)
                )
            ]
        briefs = _briefs(conn, page_ids)
    rows = [briefs[i] | {"match": found.why.get(i, "") if found else ""} for i in page_ids if i in briefs]
    return {
        "rows": rows,
        "total": int(total),
        "first": offset + 1 if rows else 0,
        "last": offset + len(rows),
        "page": page,
        "pages": max(1, -(-int(total) // size)),
        "capped": bool(found and found.capped),
        "exact": found.exact if found else [],
    }


def choices(engine: sa.Engine) -> dict[str, list[str]]:
    """The values the filters offer: countries and RFM segments that profiles have."""
    with engine.connect() as conn:
        out = {}
        for name, column in (
            ("countries", json_text(profiles.c.traits, "country")),
            ("segments", json_text(profiles.c.computed, "rfm_segment")),
        ):
            out[name] = [
                str(r[0])
                for r in conn.execute(
                    sa.select(column).where(profiles.c.merged_into.is_(None), column.is_not(None)).distinct()
                )
            ]
            out[name].sort()
    return out


def export_csv(
    engine: sa.Engine, rules: IdentityRules, text: str, filters: Filters, purpose: str
) -> Iterator[str]:
    """The list (every page of it) as CSV, only profiles that consented to `purpose` (which the
    caller checked with `require_purpose`), in pages by profile id; consent is checked per page,
    so a withdrawal applies at once, as in segment exports."""
    yield line(EXPORT_COLUMNS)
    only: list[str] | None = None
    if text.strip():
        with engine.connect() as conn:
            only = sorted(matches(conn, rules, text).why)
    after = ""
    while True:
        with engine.connect() as conn:
            stmt = (
                sa.select(
                    profiles.c.id,
                    profiles.c.traits,
                    profiles.c.computed,
                    profiles.c.first_seen,
                    profiles.c.last_seen,
                )
                .where(
                    *filters.where(),
                    profiles.c.id.in_(consenting_profiles(purpose)),
                    profiles.c.id > after,
                )
                .order_by(profiles.c.id)
                .limit(EXPORT_PAGE)
            )
            if only is not None:
                stmt = stmt.where(profiles.c.id.in_(only))
            rows = conn.execute(stmt).all()
            if not rows:
                return
            idents: dict[tuple[str, str], list[str]] = {}
            for r in conn.execute(
                sa.select(identities.c.profile_id, identities.c.type, identities.c.value)
                .where(
                    identities.c.profile_id.in_([row.id for row in rows]),
                    identities.c.type.in_(("user_id", "email", "phone")),
                )
                .order_by(identities.c.value)
            ):
                idents.setdefault((r.profile_id, r.type), []).append(r.value)
        for row in rows:
            traits, computed = row.traits or {}, row.computed or {}
            yield line(
                [
                    row.id,
                    *(";".join(idents.get((row.id, t), [])) for t in ("user_id", "email", "phone")),
                    *(traits.get(t) for t in ("first_name", "last_name", "country")),
                    *(computed.get(c) for c in ("rfm_segment", "order_count", "total_revenue")),
                    row.first_seen,
                    row.last_seen,
                ]
            )
        after = rows[-1].id


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
