"""How good a propensity model is on held-out data: the numbers of its model card.

All measures take the true labels (1 = the event happened) and the predicted probabilities of the
held-out set: ranking (AUC, lift of the top decile), probability quality (log loss, Brier score)
and calibration (predicted against observed rates in ten groups of equal size). `top_features`
names what the model relies on, by permutation importance on the same held-out rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Permutation importance is measured on a sample of at most this many held-out rows.
IMPORTANCE_ROWS = 6_000


def lift_top_decile(y: np.ndarray, p: np.ndarray) -> float:
    """Positive rate among the 10 % highest scores / the overall positive rate (1.0 = no better
    than random). Ties at the cut are broken by row order (stable sort)."""
    y = np.asarray(y, dtype=np.float64)
    base = float(y.mean()) if len(y) else 0.0
    if base == 0.0:
        return 0.0
    top = max(1, math.ceil(0.1 * len(y)))
    order = np.argsort(-np.asarray(p, dtype=np.float64), kind="stable")[:top]
    return float(y[order].mean() / base)


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, Any]]:
    """Rows sorted by predicted probability, cut into `bins` groups of (nearly) equal size: mean
    predicted probability against the observed rate in each. Equal-size groups rather than equal
    widths because propensities crowd near 0, where equal widths would leave most bins empty."""
    order = np.argsort(np.asarray(p, dtype=np.float64), kind="stable")
    out = []
    for group in np.array_split(order, bins):
        if len(group):
            out.append(
                {
                    "predicted": float(np.mean(p[group])),
                    "observed": float(np.mean(y[group])),
                    "n": len(group),
                }
            )
    return out


def measures(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """auc, log_loss, brier, lift_top_decile, base_rate and calibration of probabilities p."""
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64)
    both = 0 < y.sum() < len(y)
    return {
        "auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "lift_top_decile": lift_top_decile(y, p),
        "base_rate": float(y.mean()) if len(y) else 0.0,
        "calibration": calibration(y, p),
    }


def top_features(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    names: Sequence[str],
    count: int = 10,
    repeats: int = 3,
    max_rows: int = IMPORTANCE_ROWS,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The `count` features whose shuffling lowers the held-out AUC most (permutation importance,
    fixed seed). On at most `max_rows` rows, drawn per class (up to half of them positives) so it
    stays cheap on millions of profiles: AUC does not depend on the share of positives, and a
    balanced sample measures it with less noise when positives are rare."""
    from sklearn.inspection import permutation_importance

    if len(x) > max_rows:
        rng = np.random.default_rng(seed)
        positives, negatives = np.flatnonzero(y == 1), np.flatnonzero(y != 1)
        take = min(len(positives), max(max_rows // 2, max_rows - len(negatives)))
        keep = np.concatenate(
            [
                rng.choice(positives, size=take, replace=False),
                rng.choice(negatives, size=min(len(negatives), max_rows - take), replace=False),
            ]
        )
        x, y = x[keep], y[keep]
    if not 0 < int(np.sum(y)) < len(y):
        return []
    result = permutation_importance(model, x, y, scoring="roc_auc", n_repeats=repeats, random_state=seed)
    importances = np.asarray(result.importances_mean)
    order = np.argsort(-importances, kind="stable")[:count]
    return [{"feature": names[i], "importance": float(importances[i])} for i in order]


#: The keys of `Fitted.quality` of a learned model: what the dashboard's model card renders.
MODEL_CARD_KEYS = frozenset(
    {
        "auc",
        "log_loss",
        "brier",
        "lift_top_decile",
        "base_rate",
        "calibration",
        "n_train",
        "n_eval",
        "positives_train",
        "positives_eval",
        "top_features",
    }
)


def report(
    y_train: np.ndarray,
    y_eval: np.ndarray,
    p_eval: np.ndarray,
    top: list[dict[str, Any]],
) -> dict[str, Any]:
    """`Fitted.quality`: the held-out measures, the set sizes and the top features."""
    return {
        **measures(y_eval, p_eval),
        "n_train": len(y_train),
        "n_eval": len(y_eval),
        "positives_train": int(np.sum(y_train)),
        "positives_eval": int(np.sum(y_eval)),
        "top_features": top,
    }
