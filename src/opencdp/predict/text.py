"""Interests and sentiment from what customers write (kind "interests").

Reviews, support tickets and survey answers arrive as event properties. `score` reads each profile's
texts up to a time, rates each with `lexicon.Sentiment` and matches it against a `taxonomy.Taxonomy`,
and writes the profile's mean sentiment, its label, its most mentioned interests and how many texts
were read. Nothing is learned, so `fit` only fixes the sources and the taxonomy (scores are
reproducible from the stored model), records how the analysis does on the held-out half of the
shipped labelled set (`textset`) and counts the texts in the log; it raises `TooThin` when there are
none to read.

Recent texts weigh more: a text's weight halves every `half_life_days` (default 180) before the
scoring time, so a complaint from last week outweighs praise from two years ago, while a profile
with one old review still gets its score.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.predict import textset
from opencdp.predict.lexicon import Sentiment, label
from opencdp.predict.model import Fitted, TooThin
from opencdp.predict.taxonomy import DEFAULT_TAXONOMY, Taxonomy, validate
from opencdp.store.schema import profile_events

#: Where text is found by default: the Segment e-commerce spec's review event, and the names help
#: desks and survey tools commonly send (Zendesk-style tickets, Typeform/Delighted-style answers).
#: Per event, the first property that holds text is read.
DEFAULT_SOURCES: list[dict[str, str]] = [
    {"event": "Product Reviewed", "property": "review_body"},
    {"event": "Review Submitted", "property": "review_body"},
    {"event": "Review Submitted", "property": "text"},
    {"event": "Ticket Created", "property": "description"},
    {"event": "Ticket Created", "property": "body"},
    {"event": "Ticket Comment Added", "property": "body"},
    {"event": "Survey Answered", "property": "answer"},
    {"event": "Survey Answered", "property": "comment"},
    {"event": "Feedback Submitted", "property": "comment"},
    {"event": "Feedback Submitted", "property": "message"},
]
HALF_LIFE_DAYS = 180.0
TOP_INTERESTS = 5
#: Longer texts are cut here: the end of a pasted e-mail thread says little about the writer.
MAX_CHARS = 5000
TRAITS = ["sentiment", "sentiment_label", "interests", "texts_analysed"]


@dataclass
class _Profile:
    weight: float = 0.0
    weighted: float = 0.0
    texts: int = 0
    mentions: Counter[str] = field(default_factory=Counter)


class TextJob:
    kind = "interests"

    def fit(self, engine: sa.Engine, until: datetime, options: dict[str, Any]) -> Fitted:
        sources = _sources(options.get("sources"))
        taxonomy = validate(options["taxonomy"]) if options.get("taxonomy") is not None else DEFAULT_TAXONOMY
        half_life = options.get("half_life_days", HALF_LIFE_DAYS)
        if isinstance(half_life, bool) or not isinstance(half_life, int | float) or half_life <= 0:
            raise ValueError(f"half_life_days must be a positive number of days, not {half_life!r}")
        found: Counter[str] = Counter()
        profiles: set[str] = set()
        for profile_id, event, _ts, _text in _texts(engine, sources, until):
            found[event] += 1
            profiles.add(profile_id)
        if not found:
            names = ", ".join(sorted({s["event"] for s in sources}))
            raise TooThin(f"no text found up to {until.isoformat()} in the events {names}")
        quality = textset.evaluate(Sentiment(), Taxonomy(taxonomy), textset.held_out())
        quality["evaluated_on"] = "the held-out half of the shipped labelled shop texts"
        quality.update(
            texts=sum(found.values()), texts_by_event=dict(found), profiles_with_text=len(profiles)
        )
        return Fitted(
            kind=self.kind,
            name=str(options.get("name", "interests")),
            trained_at=datetime.now(UTC),
            window={"train_until": until.isoformat()},
            features=[f"{s['event']}.{s['property']}" for s in sources],
            params={"sources": sources, "taxonomy": taxonomy, "half_life_days": float(half_life)},
            quality=quality,
            traits=list(TRAITS),
            options=dict(options),
        )

    def score(self, engine: sa.Engine, fitted: Fitted, at: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
        sentiment = Sentiment()
        taxonomy = Taxonomy(fitted.params["taxonomy"])
        half_life = float(fitted.params.get("half_life_days", HALF_LIFE_DAYS))
        current: str | None = None
        acc = _Profile()
        for profile_id, _event, ts, text in _texts(engine, fitted.params["sources"], at):
            if profile_id != current:
                if current is not None:
                    yield current, _traits(acc)
                current, acc = profile_id, _Profile()
            weight = 0.5 ** (max((at - ts).total_seconds(), 0.0) / 86400.0 / half_life)
            acc.weight += weight
            acc.weighted += weight * sentiment.compound(text)
            acc.texts += 1
            acc.mentions.update(taxonomy.mentions(text))
        if current is not None:
            yield current, _traits(acc)


def _traits(acc: _Profile) -> dict[str, Any]:
    score = round(acc.weighted / acc.weight, 4) if acc.weight > 0 else 0.0
    # most mentioned first; equal counts by name, so a rescore gives the same list
    top = sorted(acc.mentions.items(), key=lambda item: (-item[1], item[0]))[:TOP_INTERESTS]
    return {
        "sentiment": score,
        "sentiment_label": label(score),
        "interests": [interest for interest, _ in top],
        "texts_analysed": acc.texts,
    }


def _sources(value: Any) -> list[dict[str, str]]:
    if value is None:
        return [dict(s) for s in DEFAULT_SOURCES]
    if not isinstance(value, list) or not value:
        raise ValueError("sources must be a non-empty list of {event, property}")
    out = []
    for source in value:
        if (
            not isinstance(source, dict)
            or not isinstance(source.get("event"), str)
            or not isinstance(source.get("property"), str)
            or not source["event"]
            or not source["property"]
        ):
            raise ValueError(f"a source needs an event name and a property name, not {source!r}")
        out.append({"event": source["event"], "property": source["property"]})
    return out


def _texts(
    engine: sa.Engine, sources: list[dict[str, str]], until: datetime
) -> Iterator[tuple[str, str, datetime, str]]:
    """(profile_id, event, ts, text) for events with `ts <= until`, ordered by profile and time;
    streamed, and only the configured properties leave the database."""
    properties: list[str] = list(dict.fromkeys(s["property"] for s in sources))
    by_event: dict[str, list[int]] = {}
    for source in sources:
        by_event.setdefault(source["event"], []).append(properties.index(source["property"]))
    query = (
        sa.select(
            profile_events.c.profile_id,
            profile_events.c.name,
            profile_events.c.ts,
            *(profile_events.c.properties[p].as_string().label(f"p{i}") for i, p in enumerate(properties)),
        )
        .where(profile_events.c.name.in_(list(by_event)), profile_events.c.ts <= until)
        .order_by(profile_events.c.profile_id, profile_events.c.ts, profile_events.c.event_id)
    )
    with engine.connect() as conn:
        for row in conn.execution_options(yield_per=2000).execute(query):
            for index in by_event[row[1]]:
                text = row[3 + index]
                if isinstance(text, str) and text.strip():
                    yield row[0], row[1], row[2], text[:MAX_CHARS]
                    break


JOBS = {"interests": TextJob()}
