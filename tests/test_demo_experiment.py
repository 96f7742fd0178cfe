"""The demo's planted experiment: stable arms, exposures and goal orders as planted, and the uplift
report on the processed shop counts what was planted (both engines)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from opencdp.demo.experiment import (
    ATTRIBUTION_DAYS,
    DEMO_EXPERIENCE,
    ENDED_DAYS_AGO,
    STARTED_DAYS_AGO,
    assigned_variant,
    ensure_demo_experience,
    is_held_out,
)
from opencdp.demo.shop import DemoEvent, ShopGenerator
from opencdp.personalise.uplift import uplift_report
from opencdp.system import OpenCDP
from tests.identity_helpers import process
from tests.ui.demo_data import _write

NOW = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
NAME = DEMO_EXPERIENCE["name"]


@pytest.fixture(scope="module")
def shop() -> tuple[ShopGenerator, list[DemoEvent]]:
    generator = ShopGenerator(now=NOW)  # the quickstart's shop: 2,000 customers, seed 42
    return generator, list(generator.events())


def test_exposures_are_stable_per_customer_and_follow_the_hash(
    shop: tuple[ShopGenerator, list[DemoEvent]],
) -> None:
    generator, events = shop
    arms: dict[str, set[tuple[str, bool]]] = defaultdict(set)
    first: dict[str, datetime] = {}
    for e in events:
        if e.message.get("event") == "Experience Viewed":
            props = e.message["properties"]
            user = e.message["userId"]
            arms[user].add((props["variant"], props["holdout"]))
            first[user] = min(first.get(user, e.at), e.at)
            assert (
                NOW - timedelta(days=STARTED_DAYS_AGO)
                <= e.at
                <= NOW - timedelta(days=ENDED_DAYS_AGO, seconds=-1)
            )
    assert len(arms) == generator.experiment.stats["exposed"] >= 400
    for user, seen in arms.items():
        assert seen == {(assigned_variant(NAME, user), is_held_out(NAME, user, 10))}
    held = sum(next(iter(s))[1] for s in arms.values())
    assert abs(held / len(arms) - 0.10) < 0.03
    assert {next(iter(s))[0] for s in arms.values()} == {"free delivery", "ten percent off"}
    # within the week after the first exposure, the only orders are the planted goal orders
    orders = defaultdict(list)
    for e in events:
        if e.message.get("event") == "Order Completed":
            orders[e.message["userId"]].append(e.at)
    in_week = sum(
        1
        for user, at in first.items()
        for o in orders[user]
        if at < o <= at + timedelta(days=ATTRIBUTION_DAYS)
    )
    assert in_week == generator.experiment.stats["goal orders"]


def test_the_report_on_the_processed_demo_counts_what_was_planted(system: OpenCDP) -> None:
    ensure_demo_experience(system.engine)
    assert ensure_demo_experience(system.engine) == ensure_demo_experience(system.engine)  # once
    generator = ShopGenerator(customers=400, seed=42, now=NOW)
    stream = sorted(generator.events(), key=lambda event: event.at)
    for source in ("web", "app", "email"):
        _write(system.engine, source, [e.message for e in stream if e.source == source], NOW)
    process(system.engine)
    report = uplift_report(system.engine, NAME, now=NOW)
    stats = generator.experiment.stats
    assert report["goal"] == "Order Completed"
    pooled = next(r for r in report["variants"] if r["variant"] == "(all variants)")
    assert pooled["treated"]["visitors"] == stats["treated"]
    assert pooled["holdout"]["visitors"] == stats["held out"]
    assert pooled["treated"]["converters"] + pooled["holdout"]["converters"] == stats["goal orders"]
    assert all("small_sample" in r["flags"] for r in report["variants"])  # 400 customers: too few
