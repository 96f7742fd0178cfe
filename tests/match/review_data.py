"""People for the review queue tests: profiles made by processing real events, and candidate rows
inserted as a match run would."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.identity.identifiers import Identifier
from opencdp.store.schema import match_candidates
from tests.identity_helpers import log_messages, process

SCORED = datetime(2026, 6, 2, 8, 0, tzinfo=UTC)


def identify(n: int, user: str | None = None, anonymous: str | None = None, **traits: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "identify",
        "messageId": f"identify-{n}",
        "timestamp": f"2026-06-01T10:{n:02d}:00Z",
        "traits": traits,
    }
    if user:
        message["userId"] = user
    if anonymous:
        message["anonymousId"] = anonymous
    return message


def people(engine: sa.Engine) -> None:
    """Anna (a user) and an anonymous visitor who looks like her; Bob and Carl (two users, which
    merge protection keeps apart); Dora, whose two identifiers arrive together (one profile)."""
    log_messages(
        engine,
        [
            identify(1, user="u-anna", first_name="Anna", last_name="Berg", postcode="10115",
                     email="anna@example.com"),
            identify(2, anonymous="anon-1", first_name="Ana", last_name="Berg", postcode="10115"),
            identify(3, user="u-bob", first_name="Bob", city="Bonn"),
            identify(4, user="u-carl", first_name="Bob", city="Bonn"),
            identify(5, user="u-dora", anonymous="anon-dora", first_name="Dora"),
            {"type": "track", "userId": "u-anna", "event": "Order Completed", "messageId": "order-1",
             "timestamp": "2026-06-01T11:00:00Z", "properties": {"revenue": 10}},
        ],
    )  # fmt: skip
    process(engine)


def candidate(
    engine: sa.Engine, left: tuple[str, str], right: tuple[str, str], probability: float, **values: Any
) -> int:
    """Insert one candidate row (identifiers in `Identifier` order), pending unless told."""
    first, second = sorted((Identifier(*left), Identifier(*right)))
    row = {
        "model": "people",
        "left_type": first.type,
        "left_value": first.value,
        "right_type": second.type,
        "right_value": second.value,
        "probability": probability,
        "match_weight": 7.5,
        "comparisons": [
            {"field": "name", "label": "similar (JW 0.94)", "level": 2, "bayes_factor": 40.0},
            {"field": "postcode", "label": "same postcode", "level": 1, "bayes_factor": 12.0},
        ],
        "explanation": f"name similar (JW 0.94), same postcode: match probability {probability}",
        "status": "pending",
        "scored_at": SCORED,
    } | values
    with engine.begin() as conn:
        return int(conn.execute(match_candidates.insert().values(**row)).inserted_primary_key[0])
