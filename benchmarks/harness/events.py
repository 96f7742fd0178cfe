"""Realistic shop events for load: Segment-spec track/page/identify calls with unique messageIds."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

_PRODUCTS = [
    (f"sku-{n:05d}", name, category, price)
    for n, (name, category, price) in enumerate(
        [
            ("Trail Running Shoe", "Shoes", 129.95),
            ("Merino Wool Beanie", "Accessories", 24.5),
            ("Waterproof Shell Jacket", "Outerwear", 249.0),
            ("Insulated Bottle 750 ml", "Gear", 34.99),
            ("Cotton Crew T-Shirt", "Tops", 19.9),
            ("Hiking Socks (3 pack)", "Accessories", 17.0),
            ("Down Vest", "Outerwear", 159.0),
            ("Ultralight Daypack 20 L", "Bags", 89.0),
            ("Polarised Sunglasses", "Accessories", 64.0),
            ("Softshell Trousers", "Bottoms", 99.95),
        ],
        start=10_000,
    )
]
_USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
]
_LOCALES = [
    ("en-US", "America/New_York"),
    ("de-DE", "Europe/Berlin"),
    ("fr-FR", "Europe/Paris"),
    ("en-GB", "Europe/London"),
    ("nl-NL", "Europe/Amsterdam"),
]
_CURRENCIES = ["USD", "EUR", "GBP"]
_TRACK_EVENTS = ["Product Viewed", "Product Added", "Cart Viewed", "Checkout Started", "Order Completed"]
_LIBRARY = {"name": "analytics.js", "version": "5.2.1"}
_SITE = "https://shop.example.com"


def iso(moment: datetime) -> str:
    """The analytics.js timestamp format: milliseconds, `Z` for UTC."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventFactory:
    """Segment-spec track/page/identify calls of roughly 500-800 bytes, with unique messageIds.

    Events come from a pool of `visitors` returning browsers (about ten events each in a
    default run), 40% of them signed in, as on a real shop: the identity processor sees repeat
    visitors, not a brand-new person in every event.
    """

    def __init__(self, seed: int, visitors: int = 15_000) -> None:
        self.rng = random.Random(seed)
        self.now = datetime.now(UTC)
        self.visitors = visitors

    def _context(self, path: str, title: str) -> dict[str, Any]:
        rng = self.rng
        locale, timezone = rng.choice(_LOCALES)
        return {
            "library": _LIBRARY,
            "page": {
                "path": path,
                "url": _SITE + path,
                "title": title,
                "referrer": rng.choice(["https://www.google.com/", "https://www.bing.com/", ""]),
            },
            "userAgent": rng.choice(_USER_AGENTS),
            "ip": f"203.0.113.{rng.randrange(1, 255)}",
            "locale": locale,
            "timezone": timezone,
        }

    def event(self, offset_ms: int) -> dict[str, Any]:
        rng = self.rng
        visitor = rng.randrange(self.visitors)
        message: dict[str, Any] = {
            "messageId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "anonymousId": str(uuid.UUID(int=visitor * 0x9E3779B97F4A7C15 % 2**128, version=4)),
            "timestamp": iso(self.now - timedelta(milliseconds=offset_ms)),
        }
        if visitor % 5 < 2:  # signed in
            message["userId"] = f"user_{visitor}"
        product_id, product, category, price = rng.choice(_PRODUCTS)
        kind = rng.random()
        if kind < 0.65:
            quantity = rng.randrange(1, 4)
            message.update(
                type="track",
                event=rng.choice(_TRACK_EVENTS),
                properties={
                    "product_id": product_id,
                    "name": product,
                    "category": category,
                    "price": price,
                    "quantity": quantity,
                    "value": round(price * quantity, 2),
                    "currency": rng.choice(_CURRENCIES),
                },
                context=self._context(f"/products/{product_id}", f"{product} | Example Shop"),
            )
        elif kind < 0.9:
            path = f"/c/{category.lower()}"
            message.update(
                type="page",
                name=category,
                properties={
                    "path": path,
                    "url": _SITE + path,
                    "title": f"{category} | Example Shop",
                    "category": category,
                },
                context=self._context(path, f"{category} | Example Shop"),
            )
        else:
            user = message.setdefault("userId", f"user_{visitor}")  # signing in now
            message.update(
                type="identify",
                traits={
                    "email": f"{user}@example.org",
                    "firstName": "Alex",
                    "lastName": "Doe",
                    "plan": rng.choice(["free", "plus", "pro"]),
                    "createdAt": "2023-11-02T09:14:00Z",
                    "address": {"city": "Utrecht", "country": "NL"},
                },
                context=self._context("/account", "Your account | Example Shop"),
            )
        return message

    def probe(self, user_id: str) -> dict[str, Any]:
        """An identify of a userId nobody used before: its profile appears once it is processed."""
        return {
            "messageId": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "type": "identify",
            "userId": user_id,
            "timestamp": iso(self.now),
            "traits": {"email": f"{user_id}@example.org", "plan": "free"},
            "context": self._context("/account", "Your account | Example Shop"),
        }

    def batch_body(self, size: int, probe_user_id: str | None = None) -> bytes:
        """`size` events; with `probe_user_id`, the last one is its `probe` identify."""
        events = [self.event(offset_ms=self.rng.randrange(0, 5_000)) for _ in range(size)]
        if probe_user_id is not None:
            events[-1] = self.probe(probe_user_id)
        return orjson.dumps({"batch": events, "sentAt": iso(self.now)})


def make_bodies(count: int, batch_size: int, seed: int = 1) -> list[bytes]:
    factory = EventFactory(seed)
    return [factory.batch_body(batch_size) for _ in range(count)]
