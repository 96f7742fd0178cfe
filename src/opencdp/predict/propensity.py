"""Propensity models: will a profile order (purchase), stop ordering (churn), or do a chosen event
(goal) within the next `horizon_days`?

Time split, so the quality is honest: features as of t0 = until - 2·horizon with labels from
(t0, t0 + horizon] train the model; features as of t1 = until - horizon with labels from
(t1, until] evaluate it (nothing of the evaluation period was seen in training). The quality on t1
is what the model card shows; the stored model is then refit on the t1 set, the most recent
complete one, for scoring later. The model is a calibrated booster stored as JSON (`boosted`).

Populations: purchase and goal consider profiles with at least one event up to the cutoff; churn
only those who have ordered by then (churn means a customer stops ordering), and `score` scores
only those too. Percentiles rank a profile within the scored population.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa

from opencdp.predict import boosted, features, quality
from opencdp.predict.model import Fitted, TooThin

MIN_CLASS = 100
#: Training rows above this are sampled (fixed seed): the time split matters more than volume.
MAX_TRAIN_ROWS = 250_000
DEFAULT_HORIZON = {"purchase": 30, "churn": 90, "goal": 30}


@dataclass(frozen=True)
class Target:
    """What a job predicts."""

    kind: str
    name: str
    event: str
    horizon_days: int
    #: Churn: only profiles that ordered up to the cutoff, and the label is "did not do `event`".
    buyers_only: bool = False

    @property
    def traits(self) -> list[str]:
        return [f"{self.name}_probability", f"{self.name}_percentile"]

    def describe(self) -> str:
        """Who counts as a positive, in words."""
        if self.buyers_only:
            return f"customers without {self.event!r} in the {self.horizon_days} days after"
        return f"profiles with {self.event!r} in the {self.horizon_days} days after"


def target(kind: str, options: dict[str, Any]) -> Target:
    """The target of a job from its options (horizon_days; goal: event and name)."""
    horizon = options.get("horizon_days", DEFAULT_HORIZON[kind])
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon_days must be a whole number of days ≥ 1, not {horizon!r}")
    if kind == "purchase":
        return Target(kind, "purchase", features.ORDER_EVENT, horizon)
    if kind == "churn":
        return Target(kind, "churn", features.ORDER_EVENT, horizon, buyers_only=True)
    event = options.get("event")
    if not isinstance(event, str) or not event.strip():
        raise ValueError("a goal needs the option 'event': the name of the event to predict")
    name = options.get("name") or f"goal_{features.slug(event)}_{horizon}d"
    if not isinstance(name, str):
        raise ValueError(f"name must be text, not {name!r}")
    return Target(kind, name, event, horizon)


@dataclass
class LabelledSet:
    rows: features.Features
    y: np.ndarray


def population(target: Target, rows: features.Features) -> features.Features:
    """Who is predicted for: active profiles, or for churn those who have ordered."""
    mask = rows.active.copy()
    if target.buyers_only:
        mask &= rows.matrix[:, rows.names.index("orders_ever")] > 0
    return rows.subset(mask)


def labelled(engine: sa.Engine, target: Target, at: datetime, names: list[list[str]]) -> LabelledSet:
    """Features as of `at` for the population, with labels from (at, at + horizon]."""
    rows = population(target, features.extract(engine, at, names))
    did = features.did_event(engine, target.event, at, at + timedelta(days=target.horizon_days))
    happened = np.fromiter((pid in did for pid in rows.profile_ids), dtype=bool, count=len(rows.profile_ids))
    y = (~happened if target.buyers_only else happened).astype(np.int64)
    return LabelledSet(rows, y)


def check_thin(target: Target, which: str, at: datetime, y: np.ndarray) -> None:
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if positives < MIN_CLASS or negatives < MIN_CLASS:
        raise TooThin(
            f"not enough data for {target.name!r}: the {which} set (as of {at:%Y-%m-%d}) has "
            f"{positives} positives ({target.describe()}) and {negatives} negatives; "
            f"at least {MIN_CLASS} of each are needed"
        )


def _sample(data: LabelledSet, limit: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = data.rows.matrix, data.y
    if len(y) <= limit:
        return x, y
    keep = np.sort(np.random.default_rng(0).choice(len(y), size=limit, replace=False))
    return x[keep], y[keep]


def percentiles(p: np.ndarray) -> np.ndarray:
    """100 x the share of the scored population with a probability ≤ p (the highest gets 100)."""
    from scipy.stats import rankdata

    if not len(p):
        return np.zeros(0)
    return np.round(100.0 * rankdata(p, method="max") / len(p), 2)


def churn_baseline(engine: sa.Engine, at: datetime, data: LabelledSet, p: np.ndarray) -> dict[str, Any]:
    """The BG/NBD P(alive) baseline on the same held-out set (churn score = 1 - P(alive)), or {} when
    the CLV module is not there. Both are measured on the profiles the baseline covers."""
    try:
        module = importlib.import_module("opencdp.predict.clv")
    except ImportError:
        return {}
    p_alive_baseline = getattr(module, "p_alive_baseline", None)
    if p_alive_baseline is None:
        return {}
    try:
        alive: dict[str, float] = p_alive_baseline(engine, at)
    except TooThin:
        return {}
    covered = np.fromiter((pid in alive for pid in data.rows.profile_ids), dtype=bool)
    if not 0 < int(data.y[covered].sum()) < int(covered.sum()):
        return {}
    churn = 1.0 - np.array([alive[pid] for pid in data.rows.profile_ids[covered]], dtype=np.float64)
    base = quality.measures(data.y[covered], np.clip(churn, 1e-6, 1 - 1e-6))
    mine = quality.measures(data.y[covered], p[covered])
    return {
        "baseline": {
            "name": "p_alive",
            "auc": base["auc"],
            "log_loss": base["log_loss"],
            "lift_top_decile": base["lift_top_decile"],
            "n": int(covered.sum()),
        },
        "beats_baseline": bool(mine["auc"] > base["auc"]),
    }


class PropensityJob:
    """purchase, churn or goal: a calibrated booster over point-in-time behavioural features."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def fit(self, engine: sa.Engine, until: datetime, options: dict[str, Any]) -> Fitted:
        """Train at until - 2·horizon, measure at until - horizon, refit there (module docstring)."""
        goal = target(self.kind, options)
        horizon = timedelta(days=goal.horizon_days)
        t0, t1 = until - 2 * horizon, until - horizon
        names = features.top_event_names(engine, t0)
        train = labelled(engine, goal, t0, names)
        check_thin(goal, "training", t0, train.y)
        held_out = labelled(engine, goal, t1, names)
        check_thin(goal, "evaluation", t1, held_out.y)

        x, y = _sample(train, MAX_TRAIN_ROWS)
        model = boosted.fit(x, y)
        with boosted.threads(min(len(held_out.y), quality.IMPORTANCE_ROWS)):
            p_eval = model.predict_proba(held_out.rows.matrix)[:, 1]
            top = quality.top_features(model, held_out.rows.matrix, held_out.y, held_out.rows.names)
        measured = quality.report(y, held_out.y, p_eval, top)
        if goal.buyers_only:
            measured |= churn_baseline(engine, t1, held_out, p_eval)

        x, y = _sample(held_out, MAX_TRAIN_ROWS)  # refit on the most recent complete period
        params = {"event_names": names, "model": boosted.to_params(boosted.fit(x, y))}
        return Fitted(
            kind=self.kind,
            name=goal.name,
            trained_at=datetime.now(UTC),
            window={
                "train_until": t0.isoformat(),
                "train_labels_until": t1.isoformat(),
                "holdout_from": t1.isoformat(),
                "holdout_until": until.isoformat(),
                "refit_until": t1.isoformat(),
                "refit_labels_until": until.isoformat(),
            },
            features=held_out.rows.names,
            params=params,
            quality=measured,
            traits=goal.traits,
            options={**options, "horizon_days": goal.horizon_days},
        )

    def probabilities(self, engine: sa.Engine, fitted: Fitted, at: datetime) -> tuple[np.ndarray, np.ndarray]:
        """(profile ids, probabilities) of the scored population as of `at`, from the stored params."""
        goal = target(self.kind, fitted.options)
        rows = features.extract(engine, at, fitted.params["event_names"])
        if rows.names != fitted.features:
            raise ValueError("the stored model's features differ from the ones this version builds")
        if goal.buyers_only:
            rows = rows.subset(rows.matrix[:, rows.names.index("orders_ever")] > 0)
        return rows.profile_ids, boosted.predict(fitted.params["model"], rows.matrix)

    def score(self, engine: sa.Engine, fitted: Fitted, at: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every live profile (churn: every customer) as of `at`: its probability and percentile."""
        ids, p = self.probabilities(engine, fitted, at)
        ranks = percentiles(p)
        probability, percentile = fitted.traits
        for pid, prob, rank in zip(ids, p.tolist(), ranks.tolist(), strict=True):
            yield str(pid), {probability: prob, percentile: rank}


JOBS = {kind: PropensityJob(kind) for kind in ("purchase", "churn", "goal")}
