"""Validation and normalisation of Segment-spec messages.

The rules follow the Segment HTTP Tracking API: `userId` or `anonymousId` on every call,
`event` on track, `groupId` on group, `previousId` (and `userId`) on alias. Everything else the
client sent (`context`, `integrations`, `properties`, `traits`, unknown fields) is kept whole.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from opencdp.store.dialect import RawJSON

CALL_TYPES = ("identify", "track", "page", "screen", "group", "alias")
OBJECT_FIELDS = ("context", "integrations", "properties", "traits")
TEXT_FIELDS = ("event", "name", "category")
MAX_ID_CHARS = 256
#: Never stored: the write key is a secret, and the batch envelope is not part of an event.
DROPPED_FIELDS = ("writeKey",)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where (a JSON path) and what."""

    field: str
    problem: str
    index: int | None = None
    message_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "problem": self.problem}
        if self.index is not None:
            out["index"] = self.index
        if self.message_id is not None:
            out["messageId"] = self.message_id
        return out


class InvalidMessage(ValueError):
    def __init__(self, field: str, problem: str, too_large: bool = False) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        self.too_large = too_large


@dataclass(frozen=True)
class Limits:
    max_event_bytes: int = 32 * 1024
    max_nesting_depth: int = 32


#: Times outside this range are refused: they are mistakes, and they do not sort as text.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def parse_time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidMessage(field, f"must be an ISO-8601 date-time string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidMessage(field, f"is not an ISO-8601 date-time: {value[:64]!r}") from None
    if not EARLIEST <= parsed <= LATEST:
        raise InvalidMessage(
            field, f"is outside the supported range {EARLIEST.year}-{LATEST.year}: {value[:64]!r}"
        )
    return parsed


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _identifier(message: dict[str, Any], key: str, prefix: str) -> str | None:
    """Ids may be strings or numbers (clients send database ids); numbers become strings."""
    value = message.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidMessage(prefix + key, f"must be a string or a number, got {type(value).__name__}")
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_ID_CHARS:
        raise InvalidMessage(prefix + key, f"is longer than {MAX_ID_CHARS} characters")
    if not isinstance(value, str):
        message[key] = text
    return text or None


def _too_deep(value: Any, limit: int) -> bool:
    """True when containers nest deeper than `limit`; walks only containers, so flat data is cheap."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _nul_path(value: Any, path: str) -> str | None:
    """The path of the first string (or key) containing U+0000, which PostgreSQL cannot store."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, child in value.items():
            child_path = f"{path}.{key}" if path else key
            if "\x00" in key:
                return child_path.replace("\x00", "\\u0000")
            found = _nul_path(child, child_path)
            if found:
                return found
    if isinstance(value, list):
        for i, child in enumerate(value):
            found = _nul_path(child, f"{path}[{i}]")
            if found:
                return found
    return None


@dataclass
class Envelope:
    """What a request carried besides its messages; batch-level values apply to every message."""

    received_at: datetime
    sent_at: datetime | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    #: received_at and sent_at with their iso() text, formatted once for the whole request
    _formatted: list[tuple[datetime, str]] = field(default_factory=list, repr=False, compare=False)

    def iso(self, moment: datetime) -> str:
        """iso(moment); the batch-wide times are formatted once, not once per message."""
        for known, text in self._formatted:
            if known is moment:
                return text
        text = iso(moment)
        if moment is self.received_at or moment is self.sent_at:
            self._formatted.append((moment, text))
        return text


def normalise(
    message: Any,
    envelope: Envelope,
    source_id: int,
    limits: Limits,
    call_type: str | None = None,
    prefix: str = "",
) -> dict[str, Any]:
    """Check one message and turn it into an event-log row. Raises InvalidMessage naming the field."""
    if not isinstance(message, dict):
        raise InvalidMessage(prefix.rstrip(".") or "body", "must be a JSON object")
    declared = message.get("type")
    if call_type is None:
        if declared is None:
            raise InvalidMessage(prefix + "type", f"is required; one of: {', '.join(CALL_TYPES)}")
        if declared not in CALL_TYPES:
            raise InvalidMessage(
                prefix + "type", f"unknown call type {str(declared)[:40]!r}; one of: {', '.join(CALL_TYPES)}"
            )
        call_type = declared
    elif declared is not None and declared != call_type:
        raise InvalidMessage(
            prefix + "type", f"is {str(declared)[:40]!r} but this endpoint takes {call_type!r}"
        )
    message["type"] = call_type
    for key in DROPPED_FIELDS:
        message.pop(key, None)

    message_id = _identifier(message, "messageId", prefix)
    user_id = _identifier(message, "userId", prefix)
    anonymous_id = _identifier(message, "anonymousId", prefix)
    if call_type == "alias":
        previous_id = _identifier(message, "previousId", prefix)
        if not previous_id:
            raise InvalidMessage(prefix + "previousId", "is required on alias")
        if not user_id:
            raise InvalidMessage(prefix + "userId", "is required on alias")
    elif not user_id and not anonymous_id:
        raise InvalidMessage(prefix + "userId", "userId or anonymousId is required")
    if call_type == "group" and not _identifier(message, "groupId", prefix):
        raise InvalidMessage(prefix + "groupId", "is required on group")
    if call_type == "track":
        event = message.get("event")
        if not isinstance(event, str) or not event.strip():
            raise InvalidMessage(prefix + "event", "is required on track and must be a non-empty string")
    for key in TEXT_FIELDS:
        if key in message and message[key] is not None and not isinstance(message[key], str):
            raise InvalidMessage(prefix + key, f"must be a string, got {type(message[key]).__name__}")
    for key in OBJECT_FIELDS:
        if key in message and message[key] is not None and not isinstance(message[key], dict):
            raise InvalidMessage(prefix + key, f"must be a JSON object, got {type(message[key]).__name__}")
    for key, batch_value in (("context", envelope.context), ("integrations", envelope.integrations)):
        if batch_value:
            message[key] = {**batch_value, **(message.get(key) or {})}

    original = message.get("originalTimestamp", message.get("timestamp"))
    original_ts = parse_time(original, prefix + "timestamp") if original is not None else None
    sent_at = parse_time(message["sentAt"], prefix + "sentAt") if message.get("sentAt") else envelope.sent_at
    received_at = envelope.received_at
    if original_ts is None:
        timestamp = received_at
    elif sent_at is None:
        timestamp = original_ts
    else:  # correct the client's clock skew (Segment's rule)
        try:
            timestamp = received_at - (sent_at - original_ts)
        except OverflowError:
            timestamp = LATEST + timedelta(days=1)
        if not EARLIEST <= timestamp <= LATEST:
            raise InvalidMessage(
                prefix + "sentAt", "and timestamp differ by more than any clock skew could explain"
            )

    if not message_id:
        message_id = str(uuid.uuid4())
    message["messageId"] = message_id
    message["receivedAt"] = envelope.iso(received_at)
    timestamp_text = envelope.iso(timestamp)
    message["timestamp"] = timestamp_text
    if original_ts is not None:
        message["originalTimestamp"] = timestamp_text if original_ts is timestamp else iso(original_ts)
    if sent_at is not None:
        message["sentAt"] = envelope.iso(sent_at)

    try:
        payload = orjson.dumps(message)
    except orjson.JSONEncodeError:  # orjson refuses to nest deeper than 255
        payload = None
    # Nesting deeper than the limit takes more than `limit` opening brackets in the JSON text, so
    # only a message with that many is walked (brackets inside strings can only over-count).
    if (payload is None or payload.count(b"{") + payload.count(b"[") > limits.max_nesting_depth) and (
        _too_deep(message, limits.max_nesting_depth)
    ):
        raise InvalidMessage(
            prefix.rstrip(".") or "body", f"nests deeper than {limits.max_nesting_depth} levels"
        )
    if payload is None:
        payload = orjson.dumps(message)
    if len(payload) > limits.max_event_bytes:
        raise InvalidMessage(
            prefix.rstrip(".") or "body",
            f"is {len(payload)} bytes; a single event may be at most {limits.max_event_bytes} bytes",
            too_large=True,
        )
    if b"\\u0000" in payload:
        raise InvalidMessage(_nul_path(message, prefix.rstrip(".")) or "body", "contains a NUL character")

    name = message.get("event") if call_type == "track" else message.get("name")
    return {
        "source_id": source_id,
        "message_id": message_id,
        "type": call_type,
        "event": name,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "received_at": received_at,
        "sent_at": sent_at,
        "original_timestamp": original_ts,
        "timestamp": timestamp,
        "payload": RawJSON(payload.decode()),
    }


def normalise_batch(
    body: dict[str, Any], source_id: int, limits: Limits, received_at: datetime
) -> tuple[list[dict[str, Any]], list[Problem]]:
    """All rows of a batch, or every problem in it. A batch is stored whole or not at all."""
    batch = body.get("batch")
    if not isinstance(batch, list):
        return [], [Problem("batch", "is required and must be a JSON array of messages")]
    if not batch:
        return [], [Problem("batch", "is empty")]
    problems: list[Problem] = []
    envelope = Envelope(received_at=received_at)
    try:
        if body.get("sentAt"):
            envelope.sent_at = parse_time(body["sentAt"], "sentAt")
        for key in ("context", "integrations"):
            value = body.get(key)
            if value is not None and not isinstance(value, dict):
                raise InvalidMessage(key, f"must be a JSON object, got {type(value).__name__}")
            setattr(envelope, key, value)
    except InvalidMessage as exc:
        return [], [Problem(exc.field, exc.problem)]
    rows = []
    for index, message in enumerate(batch):
        prefix = f"batch[{index}]."
        try:
            rows.append(normalise(message, envelope, source_id, limits, prefix=prefix))
        except InvalidMessage as exc:
            mid = message.get("messageId") if isinstance(message, dict) else None
            problems.append(Problem(exc.field, exc.problem, index, mid if isinstance(mid, str) else None))
    return rows, problems
