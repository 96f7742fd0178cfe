"""Propensity jobs on a small shop with a planted signal, on SQLite and PostgreSQL: they learn it,
measure it on held-out data, refuse thin data with the reason, and never read past the cutoff."""

from __future__ import annotations

import importlib
import math
import sys
import zlib
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import orjson
import pytest
import sqlalchemy as sa

from opencdp.config import Settings
from opencdp.predict import boosted, features, quality
from opencdp.predict.jobs import job
from opencdp.predict.model import Fitted, TooThin
from opencdp.predict.propensity import JOBS, labelled, percentiles, target
from opencdp.store.database import open_database
from opencdp.store.schema import profiles
from opencdp.system import OpenCDP
from tests.predict.shop import NOW, add, histories, load

QUALITY_KEYS = quality.MODEL_CARD_KEYS


def _live(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        live = conn.execute(sa.text("SELECT count(*) FROM profiles WHERE merged_into IS NULL"))
        return int(live.scalar_one())


def _roundtrip(fitted: Fitted) -> Fitted:
    """As stored in and read back from the database: every field through JSON."""
    return Fitted(
        kind=fitted.kind,
        name=fitted.name,
        trained_at=fitted.trained_at,
        window=orjson.loads(orjson.dumps(fitted.window)),
        features=orjson.loads(orjson.dumps(fitted.features)),
        params=orjson.loads(orjson.dumps(fitted.params)),
        quality=orjson.loads(orjson.dumps(fitted.quality)),
        traits=list(fitted.traits),
        options=orjson.loads(orjson.dumps(fitted.options)),
    )


def test_purchase_learns_the_planted_signal_and_scores_every_live_profile(system: OpenCDP) -> None:
    engine = system.engine
    load(engine, histories(2000), merged={"gone": "p00001"})
    assert job("purchase") is JOBS["purchase"]
    fitted = JOBS["purchase"].fit(engine, NOW, {"horizon_days": 14})

    q = fitted.quality
    assert set(q) == QUALITY_KEYS
    assert q["auc"] > 0.6  # held-out: features at NOW-14d, orders in the 14 days after
    assert q["lift_top_decile"] > 1.4
    assert q["positives_train"] >= 100 and q["positives_eval"] >= 100
    assert sum(c["n"] for c in q["calibration"]) == q["n_eval"]
    assert q["top_features"][0]["feature"] in {"track_product_viewed_7d", "pages_7d", "events_7d"}
    assert fitted.window["holdout_until"] == NOW.isoformat()
    assert fitted.traits == ["purchase_probability", "purchase_percentile"]
    assert fitted.options == {"horizon_days": 14}
    assert len(fitted.features) == len(set(fitted.features))

    scores = dict(JOBS["purchase"].score(engine, _roundtrip(fitted), NOW))
    assert len(scores) == _live(engine) and "gone" not in scores
    p = np.array([s["purchase_probability"] for s in scores.values()])
    assert ((p > 0) & (p < 1)).all()
    assert max(s["purchase_percentile"] for s in scores.values()) == 100
    top = max(scores, key=lambda pid: scores[pid]["purchase_probability"])
    assert all(s["purchase_percentile"] <= scores[top]["purchase_percentile"] for s in scores.values())
    # the JSON model and the one in memory agree: scoring twice from stored params is the same
    assert dict(JOBS["purchase"].score(engine, _roundtrip(fitted), NOW)) == scores


def test_the_stored_model_scores_real_features_exactly_like_the_one_in_memory(system: OpenCDP) -> None:
    load(system.engine, histories(1000))
    goal = target("purchase", {"horizon_days": 14})
    cutoff = NOW - timedelta(days=14)
    names = features.top_event_names(system.engine, cutoff)
    data = labelled(system.engine, goal, cutoff, names)
    assert np.isnan(data.rows.matrix).any()  # non-buyers: no days since the last order
    model = boosted.fit(data.rows.matrix, data.y)
    params = orjson.loads(orjson.dumps(boosted.to_params(model)))
    everyone = features.extract(system.engine, NOW, names).matrix
    for rows in (data.rows.matrix, everyone):
        assert np.array_equal(boosted.predict(params, rows), model.predict_proba(rows)[:, 1])


def test_thin_data_is_refused_with_the_counts(system: OpenCDP) -> None:
    load(system.engine, histories(150))
    with pytest.raises(TooThin) as refused:
        JOBS["purchase"].fit(system.engine, NOW, {"horizon_days": 14})
    message = str(refused.value)
    assert "training set (as of 2026-05-04)" in message
    positives = "profiles with 'Order Completed' in the 14 days after"
    assert f"has 25 positives ({positives}) and 117 negatives" in message
    assert "at least 100 of each are needed" in message


def test_churn_among_customers_and_a_custom_goal(system: OpenCDP, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = system.engine
    load(engine, histories(2000))
    asked: list[datetime] = []

    def coin_flip_p_alive(engine: sa.Engine, until: datetime) -> dict[str, float]:
        """A stand-in for the BG/NBD baseline that knows nothing: P(alive) from a hash of the id."""
        asked.append(until)
        with engine.connect() as conn:
            ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM profiles"))]
        return {pid: (zlib.crc32(pid.encode()) % 1000) / 1000 for pid in ids}

    monkeypatch.setitem(
        sys.modules, "opencdp.predict.clv", SimpleNamespace(p_alive_baseline=coin_flip_p_alive)
    )
    churn = JOBS["churn"].fit(engine, NOW, {"horizon_days": 14})
    assert churn.traits == ["churn_probability", "churn_percentile"]
    assert churn.quality["auc"] > 0.55
    assert asked == [NOW - timedelta(days=14)]  # the held-out set's cutoff
    baseline = churn.quality["baseline"]
    assert baseline["name"] == "p_alive" and baseline["n"] == churn.quality["n_eval"]
    assert abs(baseline["auc"] - 0.5) < 0.1
    assert churn.quality["beats_baseline"] is True
    assert set(baseline) == {"name", "auc", "log_loss", "lift_top_decile", "n"}
    buyers = features.extract(engine, NOW, churn.params["event_names"])
    buyers = buyers.subset(buyers.matrix[:, buyers.names.index("orders_ever")] > 0)
    scored = dict(JOBS["churn"].score(engine, churn, NOW))
    assert set(scored) == set(buyers.profile_ids)  # only customers can churn

    goal = JOBS["goal"].fit(engine, NOW, {"event": "Email Opened", "horizon_days": 14})
    assert goal.name == "goal_email_opened_14d"
    assert goal.traits == ["goal_email_opened_14d_probability", "goal_email_opened_14d_percentile"]
    assert goal.quality["auc"] > 0.7  # half the shop opens e-mails, the other half never does
    one = next(JOBS["goal"].score(engine, goal, NOW))
    assert set(one[1]) == set(goal.traits)
    with pytest.raises(ValueError, match="option 'event'"):
        JOBS["goal"].fit(engine, NOW, {})


def test_churn_is_compared_with_the_real_p_alive_baseline(system: OpenCDP) -> None:
    try:
        clv = importlib.import_module("opencdp.predict.clv")
    except ImportError:
        pytest.skip("no opencdp.predict.clv (the P(alive) baseline) yet")
    if not hasattr(clv, "p_alive_baseline"):
        pytest.skip("opencdp.predict.clv has no p_alive_baseline yet")
    load(system.engine, histories(2000))
    churn = JOBS["churn"].fit(system.engine, NOW, {"horizon_days": 14})
    baseline = churn.quality["baseline"]
    assert baseline["name"] == "p_alive"
    assert 0 <= baseline["auc"] <= 1 and baseline["log_loss"] > 0 and baseline["lift_top_decile"] >= 0
    assert (
        churn.quality["beats_baseline"] is (churn.quality["auc"] > baseline["auc"])
        or baseline["n"] != (churn.quality["n_eval"])
    )


def test_features_are_point_in_time(system: OpenCDP) -> None:
    """Events after the cutoff change nothing; an event exactly at the cutoff counts."""
    engine = system.engine
    cutoff = NOW - timedelta(days=20)
    shop = [e for e in histories(200, seed=5) if e[3] <= cutoff]
    mine = [
        ("me", "track", "Order Completed", cutoff - timedelta(days=40), {"revenue": 10.0}),
        ("me", "track", "Order Completed", cutoff - timedelta(days=3), {"revenue": 25.5}),
        ("me", "track", "Order Completed", cutoff, {"revenue": "n/a"}),  # at the cutoff; not a number
        ("me", "page", "Home", cutoff - timedelta(days=3, hours=1), {}),
    ]
    load(engine, shop + mine)
    names = features.top_event_names(engine, cutoff)
    before = features.extract(engine, cutoff, names)

    later = [
        ("me", "track", "Order Completed", cutoff + timedelta(seconds=1), {"revenue": 999}),
        ("me", "track", "Product Viewed", cutoff + timedelta(days=2), {}),
        ("p00003", "track", "Order Completed", cutoff + timedelta(days=1), {"revenue": 5}),
        ("newcomer", "track", "Product Viewed", cutoff + timedelta(days=1), {}),
    ]
    with engine.begin() as conn:
        add(conn, later, first_id=10_000_000)
    assert features.top_event_names(engine, cutoff) == names
    after = features.extract(engine, cutoff, names)
    assert list(after.profile_ids) == list(before.profile_ids)  # "newcomer" has no profile row
    assert np.array_equal(after.matrix, before.matrix, equal_nan=True)
    assert np.array_equal(after.active, before.active)

    row = dict(zip(before.names, before.matrix[list(before.profile_ids).index("me")], strict=True))
    assert row["orders_ever"] == 3 and row["orders_30d"] == 2 and row["orders_90d"] == 3
    assert row["revenue_ever"] == pytest.approx(35.5) and row["revenue_30d"] == pytest.approx(25.5)
    assert row["days_since_last_order"] == pytest.approx(0, abs=1e-6)
    assert row["days_since_first_event"] == pytest.approx(40, abs=1e-6)
    assert row["days_between_orders"] == pytest.approx(20, abs=1e-6)
    assert row["avg_order_value"] == pytest.approx(35.5 / 3)
    assert row["active_days_7d"] == 2 and row["pages_7d"] == 1 and row["events_7d"] == 3

    extracted_later = features.extract(engine, NOW, names)
    later_row = extracted_later.matrix[list(extracted_later.profile_ids).index("me")]
    assert later_row[names_index(extracted_later, "orders_ever")] == 4  # the later order counts later


def names_index(rows: features.Features, name: str) -> int:
    return rows.names.index(name)


def test_profiles_without_events_get_undefined_recency_and_zero_counts(system: OpenCDP) -> None:
    load(
        system.engine,
        [("a", "track", "Order Completed", NOW, {"revenue": 3}), ("c", "page", "Home", NOW, {})],
    )
    with system.engine.begin() as conn:  # a live profile whose events all come later
        add(conn, [("b", "track", "Product Viewed", NOW + timedelta(days=1), {})], first_id=5)
        row = conn.execute(sa.select(profiles).where(profiles.c.id == "a")).one()
        conn.execute(profiles.insert().values({**row._mapping, "id": "b"}))
    rows = features.extract(system.engine, NOW, [["track", "Product Viewed"]])
    b = dict(zip(rows.names, rows.matrix[list(rows.profile_ids).index("b")], strict=True))
    assert not rows.active[list(rows.profile_ids).index("b")]
    assert math.isnan(b["days_since_last_event"]) and math.isnan(b["avg_order_value"])
    assert b["events_ever"] == 0 and b["track_product_viewed_7d"] == 0
    c = dict(zip(rows.names, rows.matrix[list(rows.profile_ids).index("c")], strict=True))
    assert c["days_since_last_event"] == 0 and c["events_ever"] == 1 and c["orders_ever"] == 0
    assert math.isnan(c["days_since_last_order"]) and math.isnan(c["days_since_first_order"])


def test_percentiles_rank_within_the_scored_population() -> None:
    assert percentiles(np.array([0.2, 0.9, 0.2, 0.5])).tolist() == [50.0, 100.0, 50.0, 75.0]
    assert percentiles(np.array([])).tolist() == []


def test_sqlite_and_postgresql_build_the_same_features(tmp_path: Path, postgres_url: str) -> None:
    shop = histories(300, seed=9)
    matrices = []
    for url in (f"sqlite:///{tmp_path / 'same.db'}", postgres_url):
        engine = open_database(Settings(data_dir=tmp_path, database_url=url))
        try:
            load(engine, shop)
            cutoff = NOW - timedelta(days=10)
            names = features.top_event_names(engine, cutoff)
            rows = features.extract(engine, cutoff, names)
            matrices.append((names, list(rows.profile_ids), rows.names, rows.matrix))
        finally:
            engine.dispose()
    (names, ids, columns, lite), (pg_names, pg_ids, pg_columns, pg) = matrices
    assert (names, ids, columns) == (pg_names, pg_ids, pg_columns)
    # days are julianday differences on SQLite and epoch seconds on PostgreSQL: equal to a second
    assert np.allclose(lite, pg, rtol=0, atol=1e-5, equal_nan=True)
