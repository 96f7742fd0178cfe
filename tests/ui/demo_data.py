"""Dashboard test data: the seeded demo shop (three sources, consent as customers gave it), processed into
profiles, plus one customer whose traits and events are HTML/script injections."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any

import sqlalchemy as sa

from opencdp.collect.messages import Envelope, Limits, normalise
from opencdp.demo.shop import ShopGenerator
from opencdp.log.append import LogAppender
from tests.identity_helpers import process, source_id

XSS_NAME = "<script>window.__xss=1</script>"
XSS_TRAIT = '<img src=x onerror="window.__xss=2">'
XSS_EVENT = "<script>window.__xss=3</script>Clicked"
XSS_EMAIL = "mallory@example.com"


def _write(engine: sa.Engine, source: str, messages: list[dict[str, Any]], received: datetime) -> None:
    sid = source_id(engine, f"demo-{source}")
    rows = [normalise(dict(m), Envelope(received), sid, Limits()) for m in messages]
    LogAppender.for_engine(engine).append_committed(engine, rows)


def fill_shop(
    engine: sa.Engine,
    customers: int = 150,
    seed: int = 7,
    now: datetime | None = None,
    injection: bool = True,
) -> None:
    """The demo shop ending now (so "last 30 days" has data), with the consent its customers gave
    on the banner (most agree to e-mail marketing, some do not), written in time order."""
    now = now or datetime.now(UTC)
    generated = ShopGenerator(customers=customers, seed=seed, days=60, now=now).events()
    stream = sorted(generated, key=lambda event: event.at)  # arrival in time order, as a live shop sends it
    for source, run in groupby(stream, key=lambda event: event.source):
        _write(engine, source, [event.message for event in run], now)
    if injection:
        month = now - timedelta(days=30)
        recent = Counter(e.message["event"] for e in stream if e.message["type"] == "track" and e.at >= month)
        eighth = sorted(recent.values(), reverse=True)[7] if len(recent) > 7 else 0
        add_injection_customer(engine, now, repeats=eighth + 1)
    process(engine)


def add_injection_customer(engine: sa.Engine, now: datetime, repeats: int = 1) -> None:
    """A customer whose first name is a script tag, with an event whose name is one, performed
    `repeats` times in the last day (often enough to be among the overview's top eight events)."""
    start = now - timedelta(days=1)
    identify = {
        "type": "identify",
        "messageId": "xss-identify",
        "userId": "mallory",
        "timestamp": start.isoformat(),
        "traits": {"email": XSS_EMAIL, "first_name": XSS_NAME, "nickname": XSS_TRAIT, "country": "DE"},
    }
    tracks = [
        {
            "type": "track",
            "messageId": "xss-track" if n == 0 else f"xss-track-{n}",
            "userId": "mallory",
            "timestamp": (start + timedelta(minutes=1 + n * 20 * 60 // repeats)).isoformat(),
            "event": XSS_EVENT,
            "properties": {"label": XSS_TRAIT},
        }
        for n in range(repeats)
    ]
    _write(engine, "web", [identify, *tracks], now)
