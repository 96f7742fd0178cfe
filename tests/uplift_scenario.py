"""A seeded experiment with a known true effect, written straight into the log, and a plain-Python
oracle of what the uplift report must count."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from opencdp.collect.messages import Envelope, Limits, normalise
from opencdp.demo.experiment import is_held_out, stable_share
from opencdp.log.append import LogAppender
from opencdp.personalise.experiences import EXPERIENCE_VIEWED, parse_experience
from opencdp.store.schema import experiences
from tests.identity_helpers import RULES, process, source_id

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
EXPERIENCE = "scenario banner"
VARIANTS = ("A", "B")
#: True conversion within 7 days of the first exposure, by (variant, held out).
RATES = {("A", False): 0.12, ("A", True): 0.08, ("B", False): 0.08, ("B", True): 0.08}
MEAN_ORDER = 50.0  # orders are uniform in [20, 80]


@dataclass
class Scenario:
    messages: list[dict[str, Any]] = field(default_factory=list)
    #: (variant, held out) → [visitors, converters, revenue] as the report must count them
    expected: dict[tuple[str, bool], list[float]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0, 0.0])
    )
    #: the same for members of the segment "gold" (trait tier = gold)
    gold: dict[tuple[str, bool], list[float]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0, 0.0])
    )
    arms: dict[str, bool] = field(default_factory=dict)


def variant_of(user: str) -> str:
    return VARIANTS[int(stable_share(EXPERIENCE, "variant", user) * len(VARIANTS))]


def build(profiles: int, seed: int, holdout_percent: float = 20.0) -> Scenario:
    """Exposures over 20 days ending 10 days before NOW; conversions at the true rates; noise that
    must not count (orders before the exposure or after the attribution window, a second exposure
    in the other arm, no-match decisions)."""
    rng = random.Random(seed)
    s = Scenario()
    n = 0

    def message(user: str, at: datetime, event: str | None = None, **fields: Any) -> None:
        nonlocal n
        n += 1
        kind = "identify" if event is None else "track"
        body: dict[str, Any] = {
            "type": kind,
            "userId": user,
            "messageId": f"s{seed}-{n}",
            "timestamp": at.isoformat(),
        }
        if event is not None:
            body["event"] = event
        s.messages.append(body | fields)

    def decision(user: str, at: datetime, variant: str | None, held: bool) -> None:
        reason = "no_match" if variant is None else "holdout" if held else "matched"
        properties = {
            "experience": EXPERIENCE,
            "version": 1,
            "placement": "home-hero",
            "variant": variant,
            "holdout": held,
            "reason": reason,
        }
        message(user, at, EXPERIENCE_VIEWED, properties=properties)

    for i in range(profiles):
        user = f"s-{i:06d}"
        held = is_held_out(EXPERIENCE, user, holdout_percent)
        variant = variant_of(user)
        s.arms[user] = held
        gold = rng.random() < 0.3
        first = NOW - timedelta(days=30) + timedelta(seconds=rng.uniform(0, 20 * 86400))
        message(user, first - timedelta(hours=2), traits={"tier": "gold" if gold else "silver"})
        if rng.random() < 0.1:  # decided before with no match: not part of the comparison
            decision(user, first - timedelta(hours=1), None, held)
        decision(user, first, variant, held)
        if rng.random() < 0.05:  # seen again later, in the other arm: counts in its first
            decision(user, first + timedelta(hours=5), variant, not held)
        if rng.random() < 0.1:  # an order before the exposure
            at = first - timedelta(minutes=30)
            message(user, at, "Order Completed", properties={"revenue": 999.0, "category": "shoes"})
        if rng.random() < 0.1:  # an order after the attribution window
            at = first + timedelta(days=8)
            message(user, at, "Order Completed", properties={"revenue": 999.0, "category": "shoes"})
        converted = rng.random() < RATES[(variant, held)]
        revenue = 0.0
        if converted:
            for _ in range(1 if rng.random() < 0.8 else 2):
                amount = round(rng.uniform(20, 80), 2)
                at = first + timedelta(seconds=rng.uniform(3600, 6 * 86400))
                message(user, at, "Order Completed", properties={"revenue": amount, "category": "shoes"})
                revenue += amount
        for counts in (s.expected, s.gold) if gold else (s.expected,):
            cell = counts[(variant, held)]
            cell[0] += 1
            cell[1] += converted
            cell[2] += revenue
    for i in range(profiles // 20):  # only ever decided without a match
        user = f"n-{i:06d}"
        decision(user, NOW - timedelta(days=15), None, False)
    return s


def store(engine: sa.Engine, scenario: Scenario, holdout_percent: float = 20.0) -> None:
    """The experience, the scenario's messages in the log, processed; segment "gold"."""
    from opencdp.segments.store import save

    definition = parse_experience(
        {
            "name": EXPERIENCE,
            "placement": "home-hero",
            "strategy": "weighted",
            "variants": [{"name": v} for v in VARIANTS],
            "holdout_percent": holdout_percent,
            "goal": "Order Completed",
        }
    ).model_dump(mode="json")
    with engine.begin() as conn:
        conn.execute(
            experiences.insert().values(
                name=EXPERIENCE,
                placement="home-hero",
                definition=definition,
                enabled=True,
                version=1,
                created_by="test",
                created_at=NOW,
                updated_at=NOW,
            )
        )
    sid = source_id(engine, "scenario")
    appender = LogAppender.for_engine(engine, RULES)
    batch = 2000
    for start in range(0, len(scenario.messages), batch):
        rows = [
            normalise(dict(m), Envelope(NOW), sid, Limits()) for m in scenario.messages[start : start + batch]
        ]
        appender.append_committed(engine, rows)
    save(engine, "gold", {"trait": "tier", "op": "eq", "value": "gold"})
    save(engine, "silver", {"trait": "tier", "op": "eq", "value": "silver"})
    process(engine, chunk_size=2000)


def arm_counts(scenario: Scenario) -> Counter[bool]:
    return Counter(scenario.arms.values())
