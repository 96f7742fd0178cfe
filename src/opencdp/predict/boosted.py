"""Calibrated gradient-boosted trees, trained with scikit-learn and stored as plain JSON.

The model is a `HistGradientBoostingClassifier` (log loss, fixed random_state) wrapped in
`CalibratedClassifierCV(method="sigmoid", ensemble=False)`: out-of-fold scores fit one Platt
sigmoid, then one booster is fitted on all rows, so the stored model is exactly one tree ensemble
plus two numbers. Sigmoid rather than isotonic: boosting on log loss is already close to
calibrated, so a two-parameter correction is enough; it stays stable with the 100 positives the
jobs accept as a minimum (isotonic overfits small samples), and it is strictly increasing, so it
keeps the ranking (AUC, percentiles) and creates no ties, where isotonic's steps would.

`to_params` copies the fitted trees' node arrays (feature, threshold, where missing values go,
children, leaf values) into lists. `predict` rebuilds scikit-learn's own tree predictors from them
(compiled: about three times faster than walking the trees with numpy on a million profiles)
and sums them in scikit-learn's order, so the stored model gives the same probabilities as the
one in memory without any pickle. Those predictor classes are private to scikit-learn: if a
release changes them, `predict` falls back to `walk`, a plain numpy walk of the same trees that
gives the same numbers (tested against each other and against scikit-learn). Thresholds of +inf
(a split that only separates missing values) are stored as the largest finite float, which JSON
can hold and which compares the same for every finite feature.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The booster's settings (shallow trees: fast to walk when scoring millions of profiles).
BOOSTER = {
    "learning_rate": 0.1,
    "max_iter": 200,
    "max_depth": 6,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
    "early_stopping": True,
    "validation_fraction": 0.1,
    "n_iter_no_change": 10,
    "random_state": 0,
}
CALIBRATION_FOLDS = 3
THREADED_ROWS = 50_000
_BIG = float(np.finfo(np.float64).max)
_CHUNK = 16_384


def fit(x: np.ndarray, y: np.ndarray) -> Any:
    """A calibrated booster (CalibratedClassifierCV) fitted on (x, y).

    Below `THREADED_ROWS` rows on one OpenMP thread (`threads`): on small data the threads mostly
    wait for each other, and on a busy machine spinning threads made a 3,000-row fit 4x slower."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier

    booster = HistGradientBoostingClassifier(**BOOSTER)
    model = CalibratedClassifierCV(booster, method="sigmoid", cv=CALIBRATION_FOLDS, ensemble=False)
    with threads(len(x)):
        return model.fit(x, y)


def threads(rows: int) -> Any:
    """One OpenMP thread for scikit-learn below `THREADED_ROWS` rows, the default above."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1 if rows < THREADED_ROWS else None, user_api="openmp")


def to_params(model: Any) -> dict[str, Any]:
    """The fitted model as JSON-able lists."""
    (calibrated,) = model.calibrated_classifiers_
    booster = calibrated.estimator
    (sigmoid,) = calibrated.calibrators
    trees = []
    for iteration in booster._predictors:
        (tree,) = iteration  # binary: one tree per iteration
        nodes = tree.nodes
        if nodes["is_categorical"].any():
            raise ValueError("categorical splits are not supported")
        trees.append(
            {
                "feature": nodes["feature_idx"].astype(int).tolist(),
                "threshold": np.nan_to_num(nodes["num_threshold"], posinf=_BIG, neginf=-_BIG).tolist(),
                "missing_left": nodes["missing_go_to_left"].astype(bool).tolist(),
                "left": nodes["left"].astype(int).tolist(),
                "right": nodes["right"].astype(int).tolist(),
                "leaf": nodes["is_leaf"].astype(bool).tolist(),
                "value": nodes["value"].astype(float).tolist(),
            }
        )
    return {
        "baseline": float(np.asarray(booster._baseline_prediction).ravel()[0]),
        "trees": trees,
        "sigmoid": {"a": float(sigmoid.a_), "b": float(sigmoid.b_)},
    }


def _tree_arrays(tree: dict[str, Any]) -> tuple[np.ndarray, ...]:
    return (
        np.asarray(tree["feature"], dtype=np.intp),
        np.asarray(tree["threshold"], dtype=np.float64),
        np.asarray(tree["missing_left"], dtype=bool),
        np.asarray(tree["left"], dtype=np.intp),
        np.asarray(tree["right"], dtype=np.intp),
        np.asarray(tree["leaf"], dtype=bool),
        np.asarray(tree["value"], dtype=np.float64),
    )


def raw_scores(params: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """The booster's log-odds (its decision function) for each row of x."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    try:
        return compiled(params, x)
    except (ImportError, AttributeError, TypeError, ValueError, KeyError):
        return walk(params, x)


def compiled(params: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """`raw_scores` by scikit-learn's compiled tree predictors, rebuilt from the stored nodes."""
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    no_categories = np.zeros((0, 8), dtype=np.uint32)
    feature_map = np.zeros(x.shape[1], dtype=np.uint32)
    predictors = []
    for tree in params["trees"]:
        nodes = np.zeros(len(tree["value"]), dtype=PREDICTOR_RECORD_DTYPE)
        nodes["value"] = tree["value"]
        nodes["feature_idx"] = tree["feature"]
        nodes["num_threshold"] = tree["threshold"]
        nodes["missing_go_to_left"] = tree["missing_left"]
        nodes["left"] = tree["left"]
        nodes["right"] = tree["right"]
        nodes["is_leaf"] = tree["leaf"]
        predictors.append(TreePredictor(nodes, no_categories, no_categories))
    out = np.empty(len(x), dtype=np.float64)
    for start in range(0, len(x), _CHUNK):  # all trees over rows that stay in the CPU cache
        part = x[start : start + _CHUNK]
        raw = np.full(len(part), params["baseline"], dtype=np.float64)
        for predictor in predictors:
            raw += predictor.predict(part, no_categories, feature_map, 1)  # chunks: no threads needed
        out[start : start + len(part)] = raw
    return out


def walk(params: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """`raw_scores` by walking the stored trees with numpy (the reference; no private API)."""
    trees = [_tree_arrays(t) for t in params["trees"]]
    out = np.empty(len(x), dtype=np.float64)
    for start in range(0, len(x), _CHUNK):  # chunks that stay in the CPU cache
        part = x[start : start + _CHUNK]
        raw = np.full(len(part), params["baseline"], dtype=np.float64)
        for feature, threshold, missing_left, left, right, leaf, value in trees:
            node = np.zeros(len(part), dtype=np.intp)
            rows = np.arange(len(part)) if not leaf[0] else np.empty(0, dtype=np.intp)
            while rows.size:
                at = node[rows]
                seen = part[rows, feature[at]]
                go_left = np.where(np.isnan(seen), missing_left[at], seen <= threshold[at])
                nxt = np.where(go_left, left[at], right[at])
                node[rows] = nxt
                rows = rows[~leaf[nxt]]
            raw += value[node]
        out[start : start + len(part)] = raw
    return out


def predict(params: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Calibrated probability of the positive class (Platt: 1 / (1 + exp(a·raw + b)))."""
    from scipy.special import expit

    a, b = params["sigmoid"]["a"], params["sigmoid"]["b"]
    return np.asarray(expit(-(a * raw_scores(params, x) + b)), dtype=np.float64)
