"""The demo's planted experiment: an experience on the home page with a known true effect.

Experience `DEMO_EXPERIENCE` (placement `home-hero`, two variants split 50/50 by a stable hash,
10 % of profiles held out by another stable hash) ran from 35 to 8 days before `now`. Its
visitors are the signed-up customers (category browsers aside) who visited the website in that time
after signing up; every such visit logs an `Experience Viewed` event with the variant and the
holdout flag, as the decide API would.

Known true effect, on the goal (`Order Completed` within 7 days of the first exposure):
- "free delivery": 12 % of the treated order, 8 % of the held out — an uplift of +4 points;
- "ten percent off": 8 % either way — no effect.
So that these rates are the whole story, the experiment's visitors are those who had no order of
their own in the week after their first exposure (chosen before the arm, which is a hash, so both
arms are chosen alike); the goal orders are generated here, with their checkout. Everything here
draws from its own seeded random streams, so the rest of the shop is the same as without it.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from opencdp.demo.catalogue import CATEGORIES, USER_AGENTS
from opencdp.personalise.experiences import EXPERIENCE_VIEWED, parse_experience
from opencdp.store.schema import experiences

if TYPE_CHECKING:
    from opencdp.demo.shop import DemoEvent

DEMO_EXPERIENCE: dict[str, Any] = {
    "name": "demo home banner",
    "placement": "home-hero",
    "description": "Planted by `opencdp demo`: free delivery lifts 7-day orders from 8 % to 12 %; "
    "ten percent off does nothing.",
    "strategy": "weighted",
    "variants": [
        {"name": "free delivery", "weight": 1, "content": {"html": "<h2>Free delivery this week</h2>"}},
        {"name": "ten percent off", "weight": 1, "content": {"html": "<h2>10 % off your next order</h2>"}},
    ],
    "holdout_percent": 10,
    "default": {},
    "goal": "Order Completed",
}
#: Conversion within ATTRIBUTION_DAYS of the first exposure, by (variant, held out).
TRUE_RATES: dict[tuple[str, bool], float] = {
    ("free delivery", False): 0.12,
    ("free delivery", True): 0.08,
    ("ten percent off", False): 0.08,
    ("ten percent off", True): 0.08,
}
ATTRIBUTION_DAYS = 7
#: The experiment ran from 35 to 8 days before now (so every visitor's week is complete).
STARTED_DAYS_AGO, ENDED_DAYS_AGO = 35, 8


def stable_share(*parts: str) -> float:
    """A number in [0, 1) that depends only on the parts (SHA-256): the same profile always gets
    the same share, whatever the process, seed or order."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_held_out(experience: str, user_id: str, percent: float) -> bool:
    return stable_share(experience, "holdout", user_id) < percent / 100


def assigned_variant(experience: str, user_id: str) -> str:
    variants = [v["name"] for v in DEMO_EXPERIENCE["variants"]]
    return variants[int(stable_share(experience, "variant", user_id) * len(variants))]


def ensure_demo_experience(engine: sa.Engine, now: datetime | None = None) -> int:
    """Store the demo's experience (validated) unless it exists; returns its id."""
    definition = parse_experience(DEMO_EXPERIENCE).model_dump(mode="json")
    at = now or datetime.now(UTC)
    with engine.begin() as conn:
        found = conn.execute(
            sa.select(experiences.c.id).where(experiences.c.name == DEMO_EXPERIENCE["name"])
        ).scalar()
        if found is not None:
            return int(found)
        return int(
            conn.execute(
                experiences.insert().values(
                    name=DEMO_EXPERIENCE["name"],
                    placement=DEMO_EXPERIENCE["placement"],
                    definition=definition,
                    enabled=True,
                    version=1,
                    created_by="demo",
                    created_at=at,
                    updated_at=at,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        )


class PlantedExperiment:
    """Adds the experiment's exposures and goal orders to each customer's story."""

    def __init__(self, seed: int, now: datetime, experience_id: int | None = None) -> None:
        self.rng = random.Random(seed * 7919 + 3)
        self._ids = random.Random(seed * 7919 + 4)
        self.start = now - timedelta(days=STARTED_DAYS_AGO)
        self.end = now - timedelta(days=ENDED_DAYS_AGO)
        self.experience_id = experience_id
        self.stats: Counter[str] = Counter()

    def _id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def plant(self, user_id: str, persona: str, story: list[DemoEvent]) -> list[DemoEvent]:
        from opencdp.demo.shop import DemoEvent

        signed_up = [e.at for e in story if e.message.get("event") == "Signed Up"]
        if not signed_up or persona == "browser":
            return []
        visits = sorted(
            (e for e in story if e.message["type"] == "page" and e.source == "web"),
            key=lambda e: e.at,
        )
        visits = [e for e in visits if self.start <= e.at <= self.end and e.at >= signed_up[0]]
        if not visits:
            return []
        first = visits[0].at
        week = first + timedelta(days=ATTRIBUTION_DAYS)
        orders = [e.at for e in story if e.message.get("event") == "Order Completed"]
        if any(first < at <= week for at in orders):
            return []
        name = DEMO_EXPERIENCE["name"]
        held_out = is_held_out(name, user_id, DEMO_EXPERIENCE["holdout_percent"])
        variant = assigned_variant(name, user_id)
        out: list[DemoEvent] = []
        for visit in visits:
            properties: dict[str, Any] = {
                "experience": name,
                "version": 1,
                "placement": DEMO_EXPERIENCE["placement"],
                "variant": variant,
                "holdout": held_out,
                "reason": "holdout" if held_out else "matched",
            }
            if self.experience_id is not None:
                properties["experience_id"] = self.experience_id
            at = visit.at + timedelta(seconds=1)
            message = {
                "type": "track",
                "messageId": self._id(),
                "timestamp": at.isoformat(),
                "userId": user_id,
                "anonymousId": visit.message["anonymousId"],
                "event": EXPERIENCE_VIEWED,
                "properties": properties,
                "context": {
                    "userAgent": visit.message.get("context", {}).get("userAgent", USER_AGENTS["laptop"])
                },
            }
            out.append(DemoEvent("web", message, at))
        self.stats["exposed"] += 1
        self.stats["held out" if held_out else "treated"] += 1
        if self.rng.random() < TRUE_RATES[(variant, held_out)]:
            out += self._goal_order(user_id, visits[0], first)
            self.stats["goal orders"] += 1
        return out

    def _goal_order(self, user_id: str, visit: DemoEvent, first: datetime) -> list[DemoEvent]:
        from opencdp.demo.shop import DemoEvent

        rng = self.rng
        moment = first + timedelta(seconds=rng.randint(3600, int(6.5 * 86400)))
        category = rng.choice(list(CATEGORIES))
        items = rng.randint(1, 3)
        revenue = round(sum(rng.uniform(*CATEGORIES[category]) for _ in range(items)), 2)
        checkout = moment - timedelta(minutes=rng.randint(2, 15))
        common = {"userId": user_id, "anonymousId": visit.message["anonymousId"]}
        started = {
            "type": "track",
            "messageId": self._id(),
            "timestamp": checkout.isoformat(),
            "event": "Checkout Started",
            "properties": {"value": revenue, "currency": "EUR", "items": items},
            **common,
        }
        order = {
            "type": "track",
            "messageId": self._id(),
            "timestamp": moment.isoformat(),
            "event": "Order Completed",
            "properties": {
                "order_id": self._id()[:8],
                "revenue": revenue,
                "currency": "EUR",
                "category": category,
                "items": items,
                "products": [{"product_id": f"{category[:3]}-{rng.randint(1, 400)}", "category": category}],
            },
            **common,
        }
        return [DemoEvent("web", started, checkout), DemoEvent("web", order, moment)]

    def summary(self) -> str:
        s = self.stats
        return (
            f"planted experiment {DEMO_EXPERIENCE['name']!r}: {s['exposed']} profiles exposed "
            f"({s['held out']} held out), true 7-day conversion 12 % vs 8 % for 'free delivery' and 8 % "
            f"either way for 'ten percent off'; {s['goal orders']} goal orders. "
            f"See: opencdp experiences uplift {DEMO_EXPERIENCE['name']!r}"
        )
