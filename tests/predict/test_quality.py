"""Quality measures against values computed by hand, and the JSON model against scikit-learn's."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from opencdp.predict import boosted, quality

Y = np.array([0, 0, 1, 1])
P = np.array([0.1, 0.4, 0.35, 0.8])


def test_measures_match_hand_computed_values() -> None:
    got = quality.measures(Y, P)
    # positive/negative pairs ranked right: 0.35>0.1, 0.8>0.1, 0.8>0.4 (not 0.35>0.4) = 3 of 4
    assert got["auc"] == pytest.approx(0.75)
    likelihoods = (0.9, 0.6, 0.35, 0.8)  # of the true label
    assert got["log_loss"] == pytest.approx(-sum(math.log(v) for v in likelihoods) / 4)
    assert got["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert got["base_rate"] == 0.5
    assert got["lift_top_decile"] == pytest.approx(2.0)  # top 10 % = 1 row (0.8, a positive) / 0.5
    assert [c["n"] for c in got["calibration"]] == [1, 1, 1, 1]  # 10 bins of 4 rows: empty ones left out


def test_calibration_groups_of_equal_size_by_predicted_probability() -> None:
    assert quality.calibration(Y, P, bins=2) == [
        {"predicted": pytest.approx(0.225), "observed": 0.5, "n": 2},  # 0.1 (no), 0.35 (yes)
        {"predicted": pytest.approx(0.6), "observed": 0.5, "n": 2},  # 0.4 (no), 0.8 (yes)
    ]


def test_lift_of_the_top_decile() -> None:
    y = np.array([1, 1] + [0] * 14 + [1, 0, 0, 1])  # 4 positives of 20: base rate 0.2
    p = np.linspace(1.0, 0.0, 20)  # the first two rows score highest
    assert quality.lift_top_decile(y, p) == pytest.approx(1.0 / 0.2)
    assert quality.lift_top_decile(y, -p) == pytest.approx(0.5 / 0.2)  # top two: one yes, one no
    assert quality.lift_top_decile(np.zeros(5), np.ones(5)) == 0.0


def test_top_features_name_the_feature_the_labels_depend_on() -> None:
    rng = np.random.default_rng(3)
    x = rng.random((3000, 4))
    y = (x[:, 2] + 0.2 * rng.random(3000) > 0.7).astype(int)
    model = boosted.fit(x, y)
    top = quality.top_features(model, x, y, ["a", "b", "c", "d"], count=2)
    assert len(top) == 2
    assert top[0]["feature"] == "c"
    assert top[0]["importance"] > 0.1 > abs(top[1]["importance"])


def test_report_has_the_keys_the_model_card_renders() -> None:
    got = quality.report(np.array([0, 1, 1]), Y, P, [{"feature": "x", "importance": 0.1}])
    assert set(got) == quality.MODEL_CARD_KEYS
    assert (got["n_train"], got["positives_train"], got["n_eval"], got["positives_eval"]) == (3, 2, 4, 2)
    orjson.dumps(got)  # JSON as it is


def test_the_model_rebuilt_from_json_gives_identical_probabilities() -> None:
    """Missing values, splits that only separate missing values (+inf thresholds) and rows never
    seen in training: the stored trees give scikit-learn's prediction exactly."""
    rng = np.random.default_rng(0)
    n = 3000
    y = (rng.random(n) < 0.3).astype(int)
    missing_if_yes = np.where((y == 1) & (rng.random(n) < 0.7), np.nan, 5.0)
    x = np.column_stack([rng.random(n) + 0.3 * y, missing_if_yes, rng.random(n)])
    model = boosted.fit(x, y)
    params = orjson.loads(orjson.dumps(boosted.to_params(model)))
    thresholds = [
        t
        for tree in params["trees"]
        for t, leaf in zip(tree["threshold"], tree["leaf"], strict=True)
        if not leaf
    ]
    assert max(thresholds) == np.finfo(np.float64).max  # a +inf threshold went through JSON
    fresh = np.column_stack(
        [rng.normal(0.5, 1, 5000), rng.choice([np.nan, 5.0, -3.0], 5000), rng.random(5000)]
    )
    for rows in (x, fresh):
        expected = model.predict_proba(rows)[:, 1]
        assert np.array_equal(boosted.predict(params, rows), expected)
        # both ways of evaluating the stored trees: scikit-learn's compiled predictors, numpy
        assert np.array_equal(boosted.compiled(params, rows), boosted.walk(params, rows))
