"""The uplift report: a seeded experiment with a known true effect is recovered within the report's
95 % intervals, the counts equal a plain-Python oracle on both engines, and the rules (first exposure
decides, attribution window, no-match decisions left out) hold."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from opencdp.personalise.stats import Moments, newcombe, welch, wilson
from opencdp.personalise.uplift import UpliftError, uplift_report
from opencdp.system import OpenCDP
from tests.uplift_scenario import EXPERIENCE, MEAN_ORDER, NOW, RATES, build, is_held_out, store, variant_of

PROFILES = 5000
SEED = 11


def _row(report: dict, variant: str) -> dict:
    return next(r for r in report["variants"] if r["variant"] == variant)


def test_the_report_recovers_the_planted_effect_and_counts_like_the_oracle(system: OpenCDP) -> None:
    scenario = build(PROFILES, SEED)
    store(system.engine, scenario)
    report = uplift_report(system.engine, EXPERIENCE, now=NOW)
    assert report["goal"] == "Order Completed" and report["visitors"] == PROFILES
    for variant in ("A", "B"):
        row = _row(report, variant)
        for held, arm in ((False, "treated"), (True, "holdout")):
            visitors, converters, revenue = scenario.expected[(variant, held)]
            assert row[arm]["visitors"] == visitors
            assert row[arm]["converters"] == converters
            assert row[arm]["revenue"] == pytest.approx(revenue, abs=1e-6)
            assert row[arm]["conversion_low"] <= RATES[(variant, held)] <= row[arm]["conversion_high"]
        true_uplift = RATES[(variant, False)] - RATES[(variant, True)]
        assert row["uplift"]["low"] <= true_uplift <= row["uplift"]["high"]
        true_revenue = true_uplift * MEAN_ORDER * 1.2  # a fifth of converters order twice
        rev = row["revenue_per_visitor_difference"]
        assert rev["low"] <= true_revenue <= rev["high"]
        assert "small_sample" not in row["flags"]
    assert _row(report, "A")["significant"] and _row(report, "A")["uplift"]["low"] > 0
    assert "inconclusive" in _row(report, "B")["flags"]
    pooled = _row(report, "(all variants)")
    assert pooled["treated"]["visitors"] + pooled["holdout"]["visitors"] == PROFILES
    # by segment: "gold" matches the oracle too
    gold = next(s for s in report["segments"] if s["segment"] == "gold")
    for (variant, held), (visitors, converters, _) in scenario.gold.items():
        arm = _row(gold, variant)["holdout" if held else "treated"]
        assert (arm["visitors"], arm["converters"]) == (visitors, converters)
    only = uplift_report(system.engine, EXPERIENCE, now=NOW, segment="gold")
    assert [s["segment"] for s in only["segments"]] == ["gold"]


def test_holdout_assignment_is_stable_and_near_its_share() -> None:
    first, again = build(3000, SEED), build(3000, SEED + 1)
    assert first.arms == again.arms  # other seed, same profiles: same arms
    share = sum(first.arms.values()) / len(first.arms)
    assert abs(share - 0.20) < 0.02
    assert all(is_held_out(EXPERIENCE, user, 20.0) == held for user, held in first.arms.items())
    assert {variant_of(u) for u in first.arms} == {"A", "B"}


def _small(system: OpenCDP) -> None:
    from tests.identity_helpers import log_messages, process

    def at(days: float) -> str:
        return (NOW - timedelta(days=20) + timedelta(days=days)).isoformat()

    def viewed(user: str, days: float, variant: str | None, holdout: bool, n: int) -> dict:
        props = {"experience": EXPERIENCE, "variant": variant, "holdout": holdout, "reason": "matched"}
        return {
            "type": "track",
            "userId": user,
            "event": "Experience Viewed",
            "messageId": f"{user}-v{n}",
            "timestamp": at(days),
            "properties": props,
        }

    def order(user: str, days: float, revenue: float, n: int) -> dict:
        return {
            "type": "track",
            "userId": user,
            "event": "Order Completed",
            "messageId": f"{user}-o{n}",
            "timestamp": at(days),
            "properties": {"revenue": revenue},
        }

    log_messages(
        system.engine,
        [
            viewed("t1", 0, "A", False, 1),
            order("t1", 2, 40.0, 1),  # converts: 2 days after
            order("t1", 3, 10.0, 2),  # revenue adds up
            viewed("t2", 0, "A", False, 1),
            order("t2", -1, 99.0, 1),  # before the exposure: no
            order("t2", 7.5, 99.0, 2),  # after 7 days: no
            viewed("h1", 0, "A", True, 1),
            viewed("h1", 1, "A", False, 2),  # later in the other arm: stays held out
            order("h1", 1.5, 20.0, 1),
            viewed("x1", 0, None, False, 1),  # no match: not compared
            viewed("x1", 1, "A", True, 2),  # …its first exposure with a variant is this one
        ],
    )
    process(system.engine)


def test_first_exposure_decides_and_only_goals_in_the_window_count(system: OpenCDP) -> None:
    _small(system)
    report = uplift_report(system.engine, EXPERIENCE, now=NOW)
    row = _row(report, "A")
    assert (row["treated"]["visitors"], row["treated"]["converters"]) == (2, 1)
    assert row["treated"]["revenue"] == 50.0 and row["treated"]["revenue_per_visitor"] == 25.0
    assert (row["holdout"]["visitors"], row["holdout"]["converters"]) == (2, 1)
    assert row["holdout"]["revenue"] == 20.0
    assert "small_sample" in row["flags"] and "inconclusive" in row["flags"] and not row["significant"]
    longer = _row(uplift_report(system.engine, EXPERIENCE, now=NOW, attribution_days=8), "A")
    assert longer["treated"]["converters"] == 2  # t2's order 7.5 days after now counts
    assert uplift_report(system.engine, EXPERIENCE, now=NOW, days=5)["visitors"] == 0
    other_goal = _row(uplift_report(system.engine, EXPERIENCE, now=NOW, goal="Nothing"), "A")
    assert other_goal["treated"]["converters"] == 0 and other_goal["treated"]["revenue"] == 50.0
    with pytest.raises(UpliftError):
        uplift_report(system.engine, "no such experience", now=NOW)


def test_interval_methods_against_published_values() -> None:
    # Newcombe (1998), table II, example (a): 56/70 vs 48/80 → 0.0524 to 0.3339 (method 10)
    interval = newcombe(56, 70, 48, 80)
    assert interval.low == pytest.approx(0.0524, abs=1e-4) and interval.high == pytest.approx(
        0.3339, abs=1e-4
    )
    # Wilson 95 % of 81/263 (Wilson, 1927 as in Newcombe 1998 table I): 0.2553 to 0.3662
    w = wilson(81, 263)
    assert w.low == pytest.approx(0.2553, abs=1e-4) and w.high == pytest.approx(0.3662, abs=1e-4)
    # Welch from moments equals scipy's on the raw values
    import numpy as np
    from scipy import stats

    rng = np.random.default_rng(3)
    a, b = rng.exponential(10, 300), rng.exponential(8, 200)
    result = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    got = welch(*(Moments(len(x), float(x.sum()), float((x * x).sum())) for x in (a, b)))
    assert got is not None
    assert got.low == pytest.approx(result.low, rel=1e-9) and got.high == pytest.approx(result.high, rel=1e-9)


def test_sqlite_and_postgresql_give_identical_reports(tmp_path: Path, postgres_url: str) -> None:
    from opencdp.config import Settings
    from opencdp.personalise.segment_performance import segment_performance
    from tests import segment_performance_scenario
    from tests.conftest import _truncate_all

    _truncate_all(postgres_url)
    scenario = build(1500, 21)
    out = []
    for url in (f"sqlite:///{tmp_path / 'same.db'}", postgres_url):
        settings = Settings(data_dir=tmp_path, database_url=url, key_cache_seconds=0)
        system = OpenCDP(settings, process=False, deliver=False)
        try:
            store(system.engine, scenario)
            segment_performance_scenario.fill(system.engine, now=NOW)
            out.append(
                (
                    uplift_report(system.engine, EXPERIENCE, now=NOW),
                    uplift_report(
                        system.engine, EXPERIENCE, now=NOW, days=25, attribution_days=3, segment="gold"
                    ),
                    segment_performance(system.engine, now=NOW, min_visitors=30),
                )
            )
        finally:
            system.engine.dispose()
    assert out[0] == out[1]
    assert out[0][0]["visitors"] == 1500 and out[0][2]["low_cells"] == 1
