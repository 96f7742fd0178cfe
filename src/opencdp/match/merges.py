"""A probabilistic merge is an event in the log: `Identity Matched`, from the matching job's
own source, carrying both profiles' identifiers. The processor turns it into an identity edge with
rule `probabilistic` like any other event, so the merge follows merge protection, shows in the
timeline and merge history with its reasons, is reproduced by `rebuild` and leaves with an erasure.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from opencdp.identity.graph import MATCH_EVENT, MATCH_SOURCE
from opencdp.identity.identifiers import Identifier
from opencdp.log.append import LogAppender
from opencdp.privacy.consent_events import system_source_id
from opencdp.store.dialect import RawJSON
from opencdp.store.schema import events


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def merge_event_row(
    source_id: int, left: Identifier, right: Identifier, properties: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The log row of one merge. The stronger identifier (by the owner order) goes where Segment
    expects it when it is a user or anonymous id; both are always in `context.externalIds`."""
    first, second = sorted((left, right), key=Identifier.sort_key)
    message: dict[str, Any] = {
        "type": "track",
        "event": MATCH_EVENT,
        "messageId": f"match-{uuid.uuid4()}",
        "properties": properties,
        "context": {
            "externalIds": [
                {"type": first.type, "id": first.value, "encoding": "none"},
                {"type": second.type, "id": second.value, "encoding": "none"},
            ]
        },
    }
    user_id = first.value if first.type == "user_id" else None
    anonymous_id = next((i.value for i in (first, second) if i.type == "anonymous_id"), None)
    if user_id:
        message["userId"] = user_id
    if anonymous_id:
        message["anonymousId"] = anonymous_id
    stamp = _iso(now)
    message.update(timestamp=stamp, receivedAt=stamp)
    return {
        "source_id": source_id,
        "message_id": message["messageId"],
        "type": "track",
        "event": MATCH_EVENT,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "received_at": now,
        "sent_at": None,
        "original_timestamp": None,
        "timestamp": now,
        "payload": RawJSON(orjson.dumps(message).decode()),
    }


def append_merge(
    conn: sa.Connection,
    appender: LogAppender,
    left: Identifier,
    right: Identifier,
    properties: dict[str, Any],
    now: datetime | None = None,
) -> int | None:
    """Append one merge in `conn`'s transaction; its event id, or None when an erasure suppressed it."""
    source_id = system_source_id(conn, MATCH_SOURCE)
    row = merge_event_row(source_id, left, right, properties, now or datetime.now(UTC))
    appended = appender.append(conn, [row], count=True)
    if not appended.written:
        return None
    stored = sa.select(events.c.id).where(
        events.c.source_id == source_id, events.c.message_id == row["message_id"]
    )
    found = conn.execute(stored).scalar()
    return int(found) if found is not None else None


def merge_properties(candidate: Any, decided_by: str) -> dict[str, Any]:
    """What an `Identity Matched` event says about its merge, from a `match_candidates` row:
    the answer to "why are these one person?" in the merge history."""
    return {
        "candidate_id": candidate.id,
        "model": candidate.model,
        "match_probability": round(float(candidate.probability), 6),
        "match_weight": round(float(candidate.match_weight), 4),
        "explanation": candidate.explanation,
        "comparisons": candidate.comparisons,
        "decided_by": decided_by,
    }
