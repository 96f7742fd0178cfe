"""Generate a realistic shop's event stream: browsing on several devices, sign-ups, logins
(some social), e-mail changes, orders, e-mail engagement, shared devices, placeholder e-mails.

Pure and seeded: the same seed gives the same events, message ids included.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

CATEGORIES = {
    "shoes": (39.0, 180.0),
    "jackets": (59.0, 320.0),
    "accessories": (9.0, 60.0),
    "outdoor": (25.0, 400.0),
    "kids": (12.0, 90.0),
}
COUNTRIES = ["DE", "DE", "DE", "FR", "NL", "AT", "GB", "US"]
FIRST = [
    "Anna",
    "Ben",
    "Clara",
    "David",
    "Emma",
    "Felix",
    "Greta",
    "Hugo",
    "Ida",
    "Jonas",
    "Lena",
    "Max",
    "Nora",
    "Oskar",
    "Paula",
    "Theo",
    "Mia",
    "Noah",
    "Sofia",
    "Leon",
]
LAST = [
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Dubois",
    "Jansen",
    "Smith",
    "Martin",
    "Hofmann",
    "Koch",
]
PLACEHOLDER_EMAILS = ["test@test.com", "noemail@example.com", "none@none.com"]
USER_AGENTS = {
    "phone": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "laptop": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
    "tablet": "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
}


@dataclass
class DemoEvent:
    source: str  # "web", "app" or "email"
    message: dict[str, Any]
    at: datetime


@dataclass
class _Customer:
    number: int
    user_id: str
    email: str
    first: str
    last: str
    country: str
    devices: list[tuple[str, str]] = field(default_factory=list)  # (kind, anonymousId)
    signs_up: bool = True
    social: str | None = None


class ShopGenerator:
    def __init__(
        self, customers: int = 2000, seed: int = 42, days: int = 90, now: datetime | None = None
    ) -> None:
        self.customers = customers
        self.rng = random.Random(seed)
        self.days = days
        self.now = now or datetime(2026, 11, 1, tzinfo=UTC)
        self._ids = random.Random(seed + 1)

    def _id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def _moment(self, start: datetime, max_days: float) -> datetime:
        return min(start + timedelta(days=self.rng.uniform(0, max_days)), self.now)

    def _msg(self, kind: str, at: datetime, device: tuple[str, str] | None, **fields: Any) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": kind,
            "messageId": self._id(),
            "timestamp": at.isoformat(),
            **fields,
        }
        if device is not None:
            message["anonymousId"] = device[1]
            message.setdefault("context", {})["userAgent"] = USER_AGENTS[device[0]]
        return message

    def _checkout(
        self, c: _Customer, at: datetime, device: tuple[str, str], value: float, items: int
    ) -> DemoEvent:
        return DemoEvent(
            "web",
            self._msg(
                "track",
                at,
                device,
                userId=c.user_id,
                event="Checkout Started",
                properties={"value": value, "currency": "EUR", "items": items},
            ),
            at,
        )

    def _customer(self, n: int) -> _Customer:
        rng = self.rng
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{first}.{last}{n}@example.com".lower().replace("ü", "ue")
        customer = _Customer(n, f"cust_{n:06d}", email, first, last, rng.choice(COUNTRIES))
        for kind in rng.sample(list(USER_AGENTS), k=rng.choice([1, 1, 2, 2, 3])):
            customer.devices.append((kind, self._id()))
        customer.signs_up = rng.random() < 0.7
        customer.social = rng.choice([None, None, None, "google_id", "facebook_id"])
        return customer

    def events(self) -> Iterator[DemoEvent]:
        """Every customer's story, in time order per customer."""
        shared_device: tuple[str, str] | None = None
        for n in range(self.customers):
            customer = self._customer(n)
            if n % 150 == 7 and shared_device is not None:
                customer.devices.append(shared_device)  # a family computer: a second person logs in on it
            if n % 150 == 6:
                shared_device = customer.devices[0]
            yield from self._story(customer)

    def _story(self, c: _Customer) -> Iterator[DemoEvent]:
        rng = self.rng
        start = self.now - timedelta(days=self.days)
        first_visit = self._moment(start, self.days * 0.6)
        favourite = rng.choice(list(CATEGORIES))
        out: list[DemoEvent] = []
        for device in c.devices:
            visit = self._moment(first_visit, 10)
            for _ in range(rng.randint(1, 6)):
                category = favourite if rng.random() < 0.6 else rng.choice(list(CATEGORIES))
                source = "app" if device[0] == "phone" and rng.random() < 0.5 else "web"
                kind = "screen" if source == "app" else "page"
                out.append(
                    DemoEvent(
                        source,
                        self._msg(
                            kind,
                            visit,
                            device,
                            name=category.title(),
                            properties={"url": f"https://shop.example/{category}", "category": category},
                        ),
                        visit,
                    )
                )
                out.append(
                    DemoEvent(
                        source,
                        self._msg(
                            "track",
                            visit + timedelta(seconds=20),
                            device,
                            event="Product Viewed",
                            properties={
                                "product_id": f"{category[:3]}-{rng.randint(1, 400)}",
                                "category": category,
                                "price": round(rng.uniform(*CATEGORIES[category]), 2),
                                "currency": "EUR",
                            },
                        ),
                        visit,
                    )
                )
                visit = self._moment(visit, 7)
        if not c.signs_up:
            out.sort(key=lambda e: e.at)
            yield from out
            return
        signup = self._moment(first_visit, 5)
        email = rng.choice(PLACEHOLDER_EMAILS) if c.number % 97 == 13 else c.email
        traits = {
            "email": email,
            "first_name": c.first,
            "last_name": c.last,
            "country": c.country,
            "newsletter": rng.random() < 0.5,
        }
        if rng.random() < 0.4:
            traits["phone"] = f"+49 151 {rng.randint(1000000, 9999999)}"
        context: dict[str, Any] = {}
        if c.social:
            context["externalIds"] = [
                {
                    "type": c.social,
                    "id": f"{c.social[:2]}-{self._id()[:12]}",
                    "collection": "users",
                    "encoding": "none",
                }
            ]
        out.append(
            DemoEvent(
                "web",
                self._msg("identify", signup, c.devices[0], userId=c.user_id, traits=traits, context=context),
                signup,
            )
        )
        out.append(
            DemoEvent(
                "web",
                self._msg(
                    "track",
                    signup,
                    c.devices[0],
                    userId=c.user_id,
                    event="Signed Up",
                    properties={"method": c.social or "email"},
                ),
                signup,
            )
        )
        for device in c.devices[1:]:  # logging in on the other devices links them
            login = self._moment(signup, 20)
            out.append(
                DemoEvent(
                    "web",
                    self._msg(
                        "identify", login, device, userId=c.user_id, traits={"last_login_device": device[0]}
                    ),
                    login,
                )
            )
        moment = signup
        for _ in range(rng.choice([0, 1, 1, 2, 3, 5, 8])):
            moment = self._moment(moment, 20)
            category = favourite if rng.random() < 0.7 else rng.choice(list(CATEGORIES))
            items = rng.randint(1, 3)
            revenue = round(sum(rng.uniform(*CATEGORIES[category]) for _ in range(items)), 2)
            device = rng.choice(c.devices)
            out.append(
                self._checkout(c, moment - timedelta(minutes=rng.randint(2, 15)), device, revenue, items)
            )
            out.append(
                DemoEvent(
                    "web",
                    self._msg(
                        "track",
                        moment,
                        device,
                        userId=c.user_id,
                        event="Order Completed",
                        properties={
                            "order_id": self._id()[:8],
                            "revenue": revenue,
                            "currency": "EUR",
                            "category": category,
                            "items": items,
                        },
                    ),
                    moment,
                )
            )
        if rng.random() < 0.25:  # a cart left at the checkout (the abandoned-checkout journey's entry)
            left, device = self._moment(moment, 20), rng.choice(c.devices)
            value = round(rng.uniform(*CATEGORIES[favourite]), 2)
            out.append(self._checkout(c, left, device, value, 1))
        campaign = self._moment(signup, 30)
        opens = rng.choice([0.0, 0.25, 0.45, 0.7])  # some never open: the switch-channel journey's audience
        for week in range(rng.randint(0, 12)):
            sent = campaign + timedelta(days=7 * week)
            if sent >= self.now:
                break
            out.append(
                DemoEvent(
                    "email",
                    self._msg(
                        "track",
                        sent,
                        None,
                        userId=c.user_id,
                        event="Email Delivered",
                        properties={"campaign": f"weekly-{week}"},
                    ),
                    sent,
                )
            )
            if rng.random() < opens:
                out.append(
                    DemoEvent(
                        "email",
                        self._msg(
                            "track",
                            sent + timedelta(hours=2),
                            None,
                            userId=c.user_id,
                            event="Email Opened",
                            properties={"campaign": f"weekly-{week}", "email": c.email},
                        ),
                        sent,
                    )
                )
                if rng.random() < 0.3:
                    out.append(
                        DemoEvent(
                            "email",
                            self._msg(
                                "track",
                                sent + timedelta(hours=3),
                                None,
                                userId=c.user_id,
                                event="Email Link Clicked",
                                properties={"campaign": f"weekly-{week}"},
                            ),
                            sent,
                        )
                    )
        if rng.random() < 0.05:  # an e-mail change
            changed = self._moment(signup, 40)
            new_email = c.email.replace("@example.com", "@mail.example")
            out.append(
                DemoEvent(
                    "web",
                    self._msg("identify", changed, None, userId=c.user_id, traits={"email": new_email}),
                    changed,
                )
            )
        out.sort(key=lambda e: e.at)
        yield from out
