"""What the score tests share: a job's traits by user id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from opencdp.predict.jobs import job
from opencdp.store.schema import identities
from opencdp.system import OpenCDP


def scores_by_user(
    system: OpenCDP, kind: str, moment: datetime, **options: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """{user id: traits} of the job fitted and scored as of `moment`, and the fitted quality."""
    scorer = job(kind)
    fitted = scorer.fit(system.engine, moment, options)
    with system.engine.connect() as conn:
        users = dict(
            conn.execute(
                sa.select(identities.c.profile_id, identities.c.value).where(identities.c.type == "user_id")
            ).all()
        )
    return {users[pid]: traits for pid, traits in scorer.score(system.engine, fitted, moment)}, fitted.quality
