"""The audit log: who read, exported or changed what, and when. It names keys, users, profile
and segment ids — never identifiers or trait values, so it survives an erasure untouched."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.store.schema import audit_log


def record(
    target: sa.Engine | sa.Connection,
    actor: str,
    action: str,
    target_type: str | None = None,
    target_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one entry. `actor` is e.g. "key:3", "user:7" or "cli"."""
    row = {
        "at": datetime.now(UTC),
        "actor": actor,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "detail": detail or {},
    }
    if isinstance(target, sa.Connection):
        target.execute(audit_log.insert(), [row])
    else:
        with target.begin() as conn:
            conn.execute(audit_log.insert(), [row])
