"""What every predictive job hands back: a fitted model that can be stored, shown and scored.

A job (lifetime value, propensity, channel preference, advocacy, text) has two steps. `fit` reads the
event log up to a cutoff (point in time: nothing after it is ever read) and returns a `Fitted`, or
raises `TooThin` with the reason when the data cannot support a model. `score` applies a stored
`Fitted` to the profiles as of a time and yields `(profile_id, {trait: value})`. Keeping the
parameters as plain JSON lets `rebuild` and a later run reproduce a score exactly from the stored
model and the log.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa


class TooThin(Exception):
    """The data cannot support this model; the message says why (shown to the user as is)."""


@dataclass
class Fitted:
    """A trained model, JSON-able field by field (stored in `prediction_models`)."""

    kind: str
    #: The model's name (unique): "clv", "churn", "purchase", or a custom goal's name.
    name: str
    trained_at: datetime
    #: The data it saw, as ISO strings: e.g. {"train_from", "train_until", "holdout_until"}.
    window: dict[str, Any]
    #: Feature names, in the order `params` uses them.
    features: list[str]
    #: Everything `score` needs, JSON-able (no pickles).
    params: dict[str, Any]
    #: Held-out quality (see docs/predictions.md); empty for scores that are not learned.
    quality: dict[str, Any]
    #: The predicted traits `score` writes.
    traits: list[str]
    #: The options the job was run with (horizon, event, …), to refit the same model later.
    options: dict[str, Any] = field(default_factory=dict)


class Job(Protocol):
    """One kind of prediction."""

    kind: str

    def fit(self, engine: sa.Engine, until: datetime, options: dict[str, Any]) -> Fitted: ...

    def score(
        self, engine: sa.Engine, fitted: Fitted, at: datetime
    ) -> Iterator[tuple[str, dict[str, Any]]]: ...
