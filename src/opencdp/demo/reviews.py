"""What demo customers write: product reviews after some orders and the odd support ticket, so the
interests and sentiment job has text to read (its quality is measured on a separate labelled set in
`predict/data`, not on these).

Drawn from a generator seeded by the order, not the shop's own: adding text leaves every other
demo event (and its message id) exactly as it was.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

NOUNS = {
    "shoes": ["shoes", "trainers", "boots"],
    "jackets": ["jacket", "rain coat", "parka"],
    "accessories": ["belt", "scarf", "wallet"],
    "outdoor": ["tent", "sleeping bag", "backpack"],
    "kids": ["kids' raincoat", "school bag", "toddler shoes"],
}
#: rating → sentences ({noun}); a review is one or two of them.
SENTENCES = {
    5: [
        "Love the {noun}, great quality and really comfortable.",
        "Excellent {noun}, exactly as described and arrived the next day.",
        "Best {noun} I have bought in years. Highly recommend!",
        "Perfect fit and lovely material, very happy with the {noun}.",
    ],
    4: [
        "Good {noun} for the price, delivery was quick.",
        "Nice {noun}, fits well, the colour is a little darker than the photos.",
        "Solid {noun}, comfortable after a few days.",
    ],
    3: [
        "The {noun} is okay, nothing special.",
        "Average {noun}. It does the job but the stitching looks cheap.",
        "Fine for the price, sizing runs a bit small.",
    ],
    2: [
        "Disappointed with the {noun}, the zip broke after two weeks.",
        "The {noun} runs small and the return took ages.",
        "Poor quality {noun} for what it costs.",
    ],
    1: [
        "Terrible {noun}, it fell apart after one wash. Want a refund.",
        "The {noun} never arrived and customer service did not answer.",
        "Awful quality, the {noun} was damaged when it arrived. Never again.",
    ],
}
RATINGS = [5] * 45 + [4] * 25 + [3] * 12 + [2] * 8 + [1] * 10
TICKETS = [
    "Where is my order? The tracking has not changed for five days.",
    "I would like to return the {noun}, it is too small. How do I get a return label?",
    "I was charged twice for my order, please refund the second payment.",
    "The {noun} arrived damaged. Can you send a replacement?",
    "Can I change the delivery address of my order?",
]
REVIEW_SHARE = 0.15
TICKET_SHARE = 0.04


def follow_ups(
    seed: int,
    order_id: str,
    user_id: str,
    category: str,
    product_id: str,
    ordered: datetime,
    latest: datetime,
) -> list[tuple[datetime, dict[str, Any]]]:
    """(time, track message without timestamp) for the review and ticket this order leads to, if
    any; nothing is dated after `latest`."""
    rng = random.Random(f"{seed}:text:{order_id}")
    noun = rng.choice(NOUNS[category])
    out: list[tuple[datetime, dict[str, Any]]] = []
    if rng.random() < TICKET_SHARE:
        at = ordered + timedelta(hours=rng.randint(20, 120))
        body = rng.choice(TICKETS).format(noun=noun)
        out.append((at, _track(rng, user_id, "Ticket Created", {"order_id": order_id, "description": body})))
    if rng.random() < REVIEW_SHARE:
        rating = rng.choice(RATINGS)
        sentences = rng.sample(SENTENCES[rating], k=min(len(SENTENCES[rating]), rng.randint(1, 2)))
        body = " ".join(s.format(noun=noun) for s in sentences)
        at = ordered + timedelta(days=rng.randint(3, 14), minutes=rng.randint(0, 600))
        properties = {"product_id": product_id, "category": category, "rating": rating, "review_body": body}
        out.append((at, _track(rng, user_id, "Product Reviewed", properties)))
    return [(at, message) for at, message in out if at <= latest]


def _track(rng: random.Random, user_id: str, event: str, properties: dict[str, Any]) -> dict[str, Any]:
    message_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return {
        "type": "track",
        "messageId": message_id,
        "userId": user_id,
        "event": event,
        "properties": properties,
    }
