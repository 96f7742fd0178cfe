"""Dashboard test data: the seeded demo shop (three sources, consent for some), processed into
profiles, plus one customer whose traits and events are HTML/script injections."""

from __future__ import annotations

import random
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
    """The demo shop ending now (so "last 30 days" has data), every 3rd customer without consent.

    The generator clamps late moments to its `now`; those events are spread over the last three
    weeks instead, so the charts do not show an artificial peak today."""
    now = now or datetime.now(UTC)
    rng = random.Random(seed)
    stream: list[tuple[str, str, dict[str, Any]]] = []
    for n, event in enumerate(ShopGenerator(customers=customers, seed=seed, days=60, now=now).events()):
        message = dict(event.message)
        if event.at >= now - timedelta(seconds=1):
            message["timestamp"] = (now - timedelta(hours=rng.uniform(1, 24 * 21))).isoformat()
        if message["type"] == "identify" and "email" in (message.get("traits") or {}):
            granted = n % 3 != 0
            context = dict(message.get("context") or {})
            context["consent"] = {"purposes": {"email_marketing": {"granted": granted, "version": "2026-01"}}}
            message["context"] = context
        stream.append((message["timestamp"], event.source, message))
    stream.sort(key=lambda item: item[0])  # arrival in time order, as a live shop would send it
    for source, run in groupby(stream, key=lambda item: item[1]):
        _write(engine, source, [message for _, _, message in run], now)
    if injection:
        add_injection_customer(engine, now)
    process(engine)


def add_injection_customer(engine: sa.Engine, now: datetime) -> None:
    """A customer whose first name is a script tag, with an event whose name is one."""
    at = (now - timedelta(days=1)).isoformat()
    _write(
        engine,
        "web",
        [
            {
                "type": "identify",
                "messageId": "xss-identify",
                "userId": "mallory",
                "timestamp": at,
                "traits": {
                    "email": XSS_EMAIL,
                    "first_name": XSS_NAME,
                    "nickname": XSS_TRAIT,
                    "country": "DE",
                },
            },
            {
                "type": "track",
                "messageId": "xss-track",
                "userId": "mallory",
                "timestamp": at,
                "event": XSS_EVENT,
                "properties": {"label": XSS_TRAIT},
            },
        ],
        now,
    )
