"""Generate a realistic shop's event stream: browsing on several devices, a consent banner,
sign-ups, logins (some social), e-mail changes, orders, e-mail engagement, shared devices,
placeholder e-mails, and the situations of `situations.py`.

Relative to `now` (the current time unless pinned): the shop's history covers the `days` before it
and reaches up to it (the last base moment is an hour before `now`; follow-ups such as the order after
a checkout come minutes later; an e-mail opened "later" than `now` has not happened yet and is left
out). Nothing is clamped onto one instant: every moment is drawn inside the window it belongs to.

Pure and seeded: the same seed and the same `now` give byte-identical events. Message ids depend only
on the seed, so re-sending the shop on another day adds nothing to the log.

Who is who (drawn per customer):
- regular customers: browse, most sign up, order 0-8 times over their active months;
- frequent buyers (~6 %): several orders in the last 30 days, as every shop has regulars;
- category browsers (~5 %): sign up and keep viewing one category's products in the last three
  weeks, never buying (category interest);
- anonymous visitors (about a quarter of the regulars): browse, never identify;
- sharers (~6 % of buyers): share products they bought; later visitors arrive through the link;
- e-mail ignorers: a quarter of the signed-up receive the weekly campaign and never open it;
- abandoned checkouts: a quarter leave a cart at the checkout, many on the postcode field;
- a planted experiment on the home page with a known effect (demo/experiment.py).
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from opencdp.demo.catalogue import CATEGORIES, COUNTRIES, FIRST, LAST, PLACEHOLDER_EMAILS, USER_AGENTS
from opencdp.demo.experiment import PlantedExperiment
from opencdp.demo.reviews import follow_ups
from opencdp.demo.situations import (
    CONSENT_EVENT,
    SHARE_CHANNELS,
    Share,
    banner_choice,
    consent_context,
    focus,
    form_error,
)

#: The "ordered at least twice in the last 30 days, in Germany" audience the quickstart's summary counts.
TASK_SEGMENT: dict[str, Any] = {
    "and": [
        {"event": "Order Completed", "within_days": 30, "count": {"op": "gte", "value": 2}},
        {"trait": "country", "op": "eq", "value": "DE"},
    ]
}
HOUR = timedelta(hours=1)
#: the field's focus before its validation error (a fixed time: no draw from the story's stream)
FOCUS_BEFORE_ERROR = timedelta(seconds=6)
FIX_AFTER_ERROR = timedelta(seconds=10)
DAY = timedelta(days=1)


def parse_now(text: str, current: datetime | None = None) -> datetime:
    """`--now`: an ISO date or date and time; without a zone it is UTC, a date alone is its
    midnight. Refuses text that is no date and moments in the future (the shop would be)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO date or date and time (e.g. 2026-11-01 or 2026-11-01T09:30:00Z)"
        ) from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment > (current or datetime.now(UTC)) + timedelta(minutes=1):
        raise ValueError(f"{text!r} is in the future; the demo shop's history ends at --now")
    return moment


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
    persona: str = "regular"  # "regular", "frequent" or "browser"
    consent: dict[str, bool] | None = None  # the banner choice; None: closed without choosing
    sharer: bool = False
    referral: Share | None = None


class ShopGenerator:
    def __init__(
        self,
        customers: int = 2000,
        seed: int = 42,
        days: int = 90,
        now: datetime | None = None,
        experience_id: int | None = None,
    ) -> None:
        if days < 7:
            raise ValueError("the demo shop needs at least 7 days of history")
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware (e.g. UTC)")
        self.customers = customers
        self.rng = random.Random(seed)
        self.seed = seed
        self.days = days
        self.now = (now or datetime.now(UTC)).astimezone(UTC)
        self.start = self.now - timedelta(days=days)
        self.latest = self.now - HOUR  # the last base moment; follow-ups come at most minutes later
        self.stats: Counter[str] = Counter()  # what was planted, for the demo's summary
        self._ids = random.Random(seed + 1)
        self._shares: list[Share] = []
        #: The planted experiment (demo/experiment.py), from its own random streams.
        self.experiment = PlantedExperiment(seed, self.now, experience_id)

    def _id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def _between(self, low: datetime, high: datetime) -> datetime:
        """A moment drawn uniformly in [low, high], never after the last base moment."""
        high = min(high, self.latest)
        if high <= low:
            return low
        return low + timedelta(seconds=round(self.rng.uniform(0, (high - low).total_seconds())))

    def _after(self, at: datetime, low_seconds: int, high_seconds: int) -> datetime:
        return at + timedelta(seconds=self.rng.randint(low_seconds, high_seconds))

    def _event(
        self, source: str, kind: str, at: datetime, device: tuple[str, str] | None, **fields: Any
    ) -> DemoEvent:
        if "context" in fields:  # never shared between messages: the user agent is added below
            fields["context"] = dict(fields["context"])
        message: dict[str, Any] = {
            "type": kind,
            "messageId": self._id(),
            "timestamp": at.isoformat(),
            **fields,
        }
        if device is not None:
            message["anonymousId"] = device[1]
            message.setdefault("context", {})["userAgent"] = USER_AGENTS[device[0]]
        return DemoEvent(source, message, at)

    def _track(
        self, at: datetime, device: tuple[str, str] | None, c: _Customer, event: str, **fields: Any
    ) -> DemoEvent:
        return self._event("web", "track", at, device, userId=c.user_id, event=event, **fields)

    def _field_error(
        self,
        at: datetime,
        device: tuple[str, str] | None,
        c: _Customer,
        error: dict[str, Any],
        submitted_at: datetime | None = None,
    ) -> list[DemoEvent]:
        """The field's focus, then its validation error; with `submitted_at`, the field changed
        (fixed) 10 s after the error and the form submitted then. These draw nothing from the random
        streams (their message ids derive from the error's), so the rest of the shop stays as it was."""
        errored = self._track(at, device, c, "Form Field Errored", properties=error)
        field = focus(error)

        def like(event: str, moment: datetime, properties: dict[str, Any]) -> DemoEvent:
            message = {
                **errored.message,
                "event": event,
                "properties": properties,
                "timestamp": moment.isoformat(),
                "messageId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{errored.message['messageId']}#{event}")),
            }
            if isinstance(message.get("context"), dict):
                message["context"] = dict(message["context"])  # never shared between messages
            return DemoEvent(errored.source, message, moment)

        out = [like("Form Field Focused", at - FOCUS_BEFORE_ERROR, field), errored]
        if submitted_at is not None:
            out.append(like("Form Field Changed", at + FIX_AFTER_ERROR, field))
            out.append(like("Form Submitted", submitted_at, {"form_id": error["form_id"]}))
        return out

    def _customer(self, n: int) -> _Customer:
        rng = self.rng
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{first}.{last}{n}@example.com".lower().replace("ü", "ue")
        customer = _Customer(n, f"cust_{n:06d}", email, first, last, rng.choice(COUNTRIES))
        for kind in rng.sample(list(USER_AGENTS), k=rng.choice([1, 1, 2, 2, 3])):
            customer.devices.append((kind, self._id()))
        roll = rng.random()
        customer.persona = "browser" if roll < 0.05 else "frequent" if roll < 0.11 else "regular"
        customer.signs_up = customer.persona != "regular" or rng.random() < 0.7
        customer.social = rng.choice([None, None, None, "google_id", "facebook_id"])
        customer.consent = banner_choice(rng)
        customer.sharer = rng.random() < 0.06
        eligible = [s for s in self._shares if s.at < self.latest - HOUR]
        if eligible and rng.random() < 0.08:
            customer.referral = rng.choice(eligible)
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
            story = self._story(customer)
            story += self.experiment.plant(customer.user_id, customer.persona, story)
            story.sort(key=lambda e: e.at)
            self._count(customer, story)
            yield from story

    def _count(self, c: _Customer, story: list[DemoEvent]) -> None:
        stats = self.stats
        stats["customers" if c.signs_up else "anonymous visitors"] += 1
        if c.signs_up:
            stats[f"{c.persona} customers"] += 1
            stats["email_marketing consent"] += bool(c.consent and c.consent["Email Marketing"])
        stats["consent recorded"] += c.consent is not None
        stats["declined everything"] += c.consent is not None and not any(c.consent.values())
        stats["referred visitors"] += c.referral is not None
        for event in story:
            name = event.message.get("event")
            if name:
                stats[name] += 1
            if name == "Form Field Errored" and event.message["properties"]["field"] == "postcode":
                stats["postcode errors"] += 1
            if name == "Order Completed" and "share_id" in event.message["properties"]:
                stats["orders through shares"] += 1

    def _story(self, c: _Customer) -> list[DemoEvent]:
        rng = self.rng
        favourite = rng.choice(list(CATEGORIES))
        if c.referral is not None:  # arrives through a shared link, at most three days after the share
            first_visit = self._between(c.referral.at + timedelta(minutes=10), c.referral.at + 3 * DAY)
        else:
            first_visit = self._between(self.start, self.latest - DAY)
        active = c.persona != "regular" or c.referral is not None or rng.random() < 0.6
        last_active = self.latest if active else self._between(first_visit, self.latest)
        out = self._browsing(c, favourite, first_visit, last_active)
        if c.persona == "browser":
            out += self._category_interest(c, favourite, first_visit)
        if not c.signs_up:
            return out
        referred_order = c.referral is not None and rng.random() < 0.6
        if referred_order:
            signup = self._after(first_visit, 120, 480)
        else:
            signup = self._between(first_visit, min(first_visit + 5 * DAY, last_active))
        out += self._signup(c, signup)
        first_order = self._after(signup, 15 * 60, 40 * 60) if referred_order else None
        orders = self._order_times(c, signup, last_active, first_order)
        last = signup
        for number, moment in enumerate(orders):
            category = favourite if rng.random() < 0.7 else rng.choice(list(CATEGORIES))
            share = c.referral if referred_order and number == 0 else None
            out += self._order(c, moment, category, share)
            last = moment
        if c.persona != "browser" and rng.random() < 0.25:  # a cart left at the checkout
            out += self._abandoned_checkout(c, self._between(last, last_active), favourite)
        withdrawn = self.now  # consent to e-mail marketing ends here (never, unless withdrawn)
        if c.consent and c.consent["Email Marketing"] and rng.random() < 0.05:
            withdrawn = self._between(signup, self.latest)
            out.append(self._withdrawal(c, c.consent, withdrawn))
            self.stats["withdrew e-mail consent"] += 1
        if c.consent and c.consent["Email Marketing"]:
            out += self._campaign_emails(c, signup, withdrawn)
        if rng.random() < 0.05:  # an e-mail change
            changed = self._between(signup, signup + 40 * DAY)
            new_email = c.email.replace("@example.com", "@mail.example")
            traits = {"email": new_email}
            out.append(self._event("web", "identify", changed, None, userId=c.user_id, traits=traits))
        return out

    def _browsing(
        self, c: _Customer, favourite: str, first_visit: datetime, last_active: datetime
    ) -> list[DemoEvent]:
        """Sessions on each device: the consent banner on the first one, pages and product views."""
        rng = self.rng
        out: list[DemoEvent] = []
        for number, device in enumerate(c.devices):
            begin = first_visit if number == 0 else self._between(first_visit, first_visit + 10 * DAY)
            visits = sorted(self._between(begin, last_active) for _ in range(rng.randint(0, 5)))
            for visit_number, visit in enumerate([begin, *visits]):
                if visit_number == 0 and c.consent is not None:
                    out.append(
                        self._event(
                            "web",
                            "track",
                            visit,
                            device,
                            event=CONSENT_EVENT,
                            context=consent_context(c.consent),
                        )
                    )
                category = favourite if rng.random() < 0.6 else rng.choice(list(CATEGORIES))
                referral = c.referral if number == 0 and visit_number == 0 else None
                out += self._visit(device, visit, category, referral)
        return out

    def _visit(
        self, device: tuple[str, str], at: datetime, category: str, share: Share | None = None
    ) -> list[DemoEvent]:
        rng = self.rng
        source = "app" if device[0] == "phone" and share is None and rng.random() < 0.5 else "web"
        kind = "screen" if source == "app" else "page"
        url = share.url if share else f"https://shop.example/{category}"
        context: dict[str, Any] = {}
        product = {
            "product_id": share.product_id if share else f"{category[:3]}-{rng.randint(1, 400)}",
            "category": share.category if share else category,
            "price": round(rng.uniform(*CATEGORIES[share.category if share else category]), 2),
            "currency": "EUR",
        }
        if share:
            context["campaign"] = share.campaign()
            context["page"] = {"url": url, "referrer": f"https://{share.channel}.example/"}
            product["share_id"] = share.share_id
        page = self._event(
            source,
            kind,
            at,
            device,
            name=category.title(),
            properties={"url": url, "category": product["category"]},
            context=dict(context),
        )
        viewed = self._event(
            source,
            "track",
            self._after(at, 10, 40),
            device,
            event="Product Viewed",
            properties=product,
            context=dict(context),
        )
        return [page, viewed]

    def _category_interest(self, c: _Customer, category: str, first_visit: datetime) -> list[DemoEvent]:
        """Visits in the last three weeks that keep coming back to one category's products."""
        rng = self.rng
        out: list[DemoEvent] = []
        begin = max(first_visit, self.now - 21 * DAY)
        for _ in range(rng.randint(3, 6)):
            visit, device = self._between(begin, self.latest), rng.choice(c.devices)
            for _ in range(rng.randint(2, 4)):
                out += self._visit(device, visit, category)
                visit = self._after(visit, 60, 300)
        return out

    def _signup(self, c: _Customer, signup: datetime) -> list[DemoEvent]:
        rng = self.rng
        email = rng.choice(PLACEHOLDER_EMAILS) if c.number % 97 == 13 else c.email
        traits = {
            "email": email,
            "first_name": c.first,
            "last_name": c.last,
            "country": c.country,
            "newsletter": bool(c.consent and c.consent["Email Marketing"]),
        }
        if rng.random() < 0.4:
            traits["phone"] = f"+49 151 {rng.randint(1000000, 9999999)}"
        context: dict[str, Any] = consent_context(c.consent) if c.consent is not None else {}
        if c.social:
            context["externalIds"] = [
                {
                    "type": c.social,
                    "id": f"{c.social[:2]}-{self._id()[:12]}",
                    "collection": "users",
                    "encoding": "none",
                }
            ]
        device = c.devices[0]
        out = [
            self._event("web", "identify", signup, device, userId=c.user_id, traits=traits, context=context),
            self._track(signup, device, c, "Signed Up", properties={"method": c.social or "email"}),
        ]
        for device in c.devices[1:]:  # logging in on the other devices links them
            login = self._between(signup, signup + 20 * DAY)
            traits = {"last_login_device": device[0]}
            out.append(self._event("web", "identify", login, device, userId=c.user_id, traits=traits))
        return out

    def _order_times(
        self, c: _Customer, signup: datetime, last_active: datetime, first: datetime | None
    ) -> list[datetime]:
        """When the customer orders: from soon after signing up until they stop coming, regulars a few
        times about five weeks apart, frequent buyers about weekly; never two orders of one customer
        within an hour."""
        rng = self.rng
        if c.persona == "browser":
            return []
        frequent = c.persona == "frequent"
        drawn, moment = [], self._between(signup, signup + (3 if frequent else 10) * DAY)
        for _ in range(40 if frequent else rng.choice([0, 0, 1, 1, 1, 2, 3, 5])):
            if moment > last_active:
                break
            drawn.append(moment)
            moment += timedelta(days=1 + rng.expovariate(1 / (5 if frequent else 34)))
        kept: list[datetime] = [first] if first else []
        for moment in sorted(drawn):
            if all(abs(moment - other) >= HOUR for other in kept):
                kept.append(moment)
        return sorted(kept)

    def _order(self, c: _Customer, moment: datetime, category: str, share: Share | None) -> list[DemoEvent]:
        rng = self.rng
        items = rng.randint(1, 3)
        revenue = round(sum(rng.uniform(*CATEGORIES[category]) for _ in range(items)), 2)
        device = c.devices[0] if share else rng.choice(c.devices)
        context = {"campaign": share.campaign()} if share else {}
        checkout = moment - timedelta(minutes=rng.randint(2, 15))
        properties: dict[str, Any] = {"value": revenue, "currency": "EUR", "items": items}
        out = [self._track(checkout, device, c, "Checkout Started", properties=properties, context=context)]
        if rng.random() < 0.12:  # a validation error on the way, fixed
            at = self._after(checkout, 20, 100)  # the order comes 2 minutes after checkout or later
            error = form_error(rng)
            out += self._field_error(at, device, c, error, submitted_at=moment - timedelta(seconds=5))
        product_id = f"{category[:3]}-{rng.randint(1, 400)}"
        properties = {
            "order_id": self._id()[:8],
            "revenue": revenue,
            "currency": "EUR",
            "category": category,
            "items": items,
            "products": [{"product_id": product_id, "category": category}],
        }
        if share:
            properties["share_id"] = share.share_id
        out.append(self._track(moment, device, c, "Order Completed", properties=properties, context=context))
        for at, message in follow_ups(
            self.seed, properties["order_id"], c.user_id, category, product_id, moment, self.latest
        ):
            out.append(DemoEvent("web", {**message, "timestamp": at.isoformat()}, at))
        if c.sharer and rng.random() < 0.6:
            shared = Share(
                f"sh_{self._id()[:12]}",
                c.user_id,
                self._between(moment, moment + 2 * DAY),
                product_id,
                category,
                rng.choice(SHARE_CHANNELS),
            )
            self._shares.append(shared)
            properties = {
                "share_id": shared.share_id,
                "product_id": product_id,
                "category": category,
                "share_via": shared.channel,
                "url": shared.url,
            }
            out.append(self._track(shared.at, device, c, "Product Shared", properties=properties))
        return out

    def _abandoned_checkout(self, c: _Customer, left: datetime, category: str) -> list[DemoEvent]:
        """The abandoned-checkout journey's entry; half of them give up on a form error."""
        rng = self.rng
        device = rng.choice(c.devices)
        properties = {"value": round(rng.uniform(*CATEGORIES[category]), 2), "currency": "EUR", "items": 1}
        out = [self._track(left, device, c, "Checkout Started", properties=properties)]
        if rng.random() < 0.5:
            error = form_error(rng)
            at = self._after(left, 30, 120)
            out += self._field_error(at, device, c, error)
            given_up = {"form_id": error["form_id"], "field": error["field"]}
            at = self._after(at, 30, 240)
            out.append(self._track(at, device, c, "Form Abandoned", properties=given_up))
        return out

    def _campaign_emails(self, c: _Customer, signup: datetime, withdrawn: datetime) -> list[DemoEvent]:
        """Weekly campaign e-mails to those who agreed, from a week or two after signing up until
        they withdraw; a quarter never open one (the switch-channel journey's audience)."""
        rng = self.rng
        out: list[DemoEvent] = []
        campaign = self._between(signup + DAY, signup + 14 * DAY)
        opens = rng.choice([0.0, 0.25, 0.45, 0.7])
        for week in range(12):
            sent = campaign + timedelta(days=7 * week)
            if sent > min(self.latest, withdrawn):
                break
            name = f"weekly-{week}"
            delivered = {"campaign": name}
            out.append(self._email(sent, c, "Email Delivered", delivered))
            if rng.random() >= opens:
                continue
            opened = sent + timedelta(hours=2)
            if opened <= self.now:  # later than now: not opened yet
                out.append(self._email(opened, c, "Email Opened", {"campaign": name, "email": c.email}))
            if rng.random() < 0.3 and sent + timedelta(hours=3) <= self.now:
                clicked = sent + timedelta(hours=3)
                out.append(self._email(clicked, c, "Email Link Clicked", {"campaign": name}))
        return out

    def _email(self, at: datetime, c: _Customer, event: str, properties: dict[str, Any]) -> DemoEvent:
        return self._event("email", "track", at, None, userId=c.user_id, event=event, properties=properties)

    def _withdrawal(self, c: _Customer, consent: dict[str, bool], at: datetime) -> DemoEvent:
        """Changed their mind in the preference centre: no more marketing e-mails or texts."""
        context = consent_context({**consent, "Email Marketing": False, "SMS": False})
        return self._track(at, c.devices[0], c, CONSENT_EVENT, context=context)
