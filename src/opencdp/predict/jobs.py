"""Which module implements each kind of prediction (imported on first use: scikit-learn and the
text lexicons load only when a job of theirs runs)."""

from __future__ import annotations

import importlib

from opencdp.predict.model import Job

#: kind → module whose `JOBS` dict holds the job for that kind.
KINDS: dict[str, str] = {
    "clv": "opencdp.predict.clv",
    "purchase": "opencdp.predict.propensity",
    "churn": "opencdp.predict.propensity",
    "goal": "opencdp.predict.propensity",
    "channels": "opencdp.predict.channels",
    "advocacy": "opencdp.predict.advocacy",
    "interests": "opencdp.predict.text",
}


class UnknownKind(ValueError):
    pass


def job(kind: str) -> Job:
    """The job for a kind of prediction."""
    if kind not in KINDS:
        raise UnknownKind(f"unknown kind of prediction {kind!r} (one of: {', '.join(KINDS)})")
    module = importlib.import_module(KINDS[kind])
    found: Job = module.JOBS[kind]
    return found
