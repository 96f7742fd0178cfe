"""The seed scenarios end to end, on SQLite and PostgreSQL: events processed into journey
entries, the runner walking the steps with an injected clock (hours and days without sleeping),
messages delivered by the worker to a real SMTP server and a real HTTP receiver."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from opencdp.activation.audiences import create_sync
from opencdp.activation.destinations import DestinationSpec, create
from opencdp.activation.worker import DeliveryWorker
from opencdp.journeys import store as journey_store
from opencdp.journeys.runner import JourneyRunner
from opencdp.journeys.store import JourneyError
from opencdp.profiles.reader import find_profile_id
from opencdp.segments.store import save as save_segment
from opencdp.store.schema import journey_instances
from opencdp.system import OpenCDP
from tests.identity_helpers import RULES, log_messages, process
from tests.journey_scenarios import EMAIL_IGNORERS, SEND_SMS, SMS_OFFER
from tests.receivers import MailRecorder, Receiver, start_mail_server


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def mail() -> Iterator[tuple[MailRecorder, int]]:
    handler = MailRecorder()
    controller = start_mail_server(handler)
    yield handler, controller.port
    controller.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


class World:
    """The test's CDP: log events, then process, run journeys and deliver, all at the clock's time."""

    def __init__(self, system: OpenCDP, clock: Clock) -> None:
        self.system, self.engine, self.clock = system, system.engine, clock
        self.runner = JourneyRunner(self.engine, system.settings, clock=clock)
        self.worker = DeliveryWorker(self.engine, system.settings, clock=clock)
        self.n = 0

    def log(self, *messages: dict[str, Any]) -> None:
        stamped = []
        for m in messages:
            self.n += 1
            stamped.append({"messageId": f"m{self.n}", "timestamp": self.clock.now.isoformat(), **m})
        log_messages(self.engine, stamped)

    def run(self) -> None:
        """Everything that is due now, until nothing moves (steps may log events that enter others)."""
        for _ in range(10):
            process(self.engine)
            moved = self.runner.run_until_idle()
            sent = self.worker.run_until_idle().work
            if not moved and not sent:
                process(self.engine)
                return

    def destination(self, name: str, kind: str, config: dict[str, Any], **more: Any) -> int:
        with self.engine.begin() as conn:
            return create(conn, self.system.settings, DestinationSpec(name, kind, config, **more))

    def journey(self, name: str, definition: dict[str, Any]) -> int:
        with self.engine.begin() as conn:
            journey_id = int(journey_store.save(conn, name, definition)["id"])
            journey_store.set_status(conn, journey_id, "active")
        return journey_id

    def stats(self, journey_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return journey_store.stats(conn, journey_id)


def email_destination(world: World, port: int) -> None:
    world.destination(
        "email",
        "smtp",
        {
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "from_address": "shop@example.com",
            "subject": "{{ content.subject }}",
            "text": "Hi {{ profile.traits.first_name }}! {{ content.text }}",
        },
        purpose="email_marketing",
    )


def customer(user: str, email: str, **traits: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": user,
        "traits": {"email": email, "first_name": user.title(), **traits},
        "context": {"consent": {"purposes": {"email_marketing": True, "sms": True, "advertising": True}}},
    }


def track(user: str, event: str, **props: Any) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": event, "properties": props}


@pytest.fixture
def world(system: OpenCDP) -> World:
    # the clock starts in the future of every timestamp the processor writes with the real time
    return World(system, Clock(datetime.now(UTC) + timedelta(minutes=1)))


def test_abandoned_checkout(world: World, mail: tuple[MailRecorder, int], receiver: Receiver) -> None:
    """Checkout Started, no order within 2 hours → e-mail with a 25 % coupon; still no order
    after 2 days → into the ads audience; an order ends the journey (and leaves the audience)."""
    inbox, port = mail
    email_destination(world, port)
    ads = world.destination("ads", "webhook", {"url": receiver.url}, purpose="advertising")
    save_segment(
        world.engine,
        "abandoned checkout (ads)",
        {
            "and": [
                {"trait": "ads_abandoned_checkout", "op": "eq", "value": True},
                {"not": {"event": "Order Completed"}},
            ]
        },
    )
    with world.engine.begin() as conn:
        create_sync(conn, "abandoned checkout (ads)", ads)
    journey = world.journey(
        "abandoned checkout",
        {
            "entry": {"event": "Checkout Started"},
            "goal": {"event": "Order Completed"},
            "reentry": {"after_days": 1},
            "steps": [
                {"id": "grace", "wait": {"hours": 2}},
                {
                    "id": "coupon mail",
                    "send": {
                        "destination": "email",
                        "channel": "email",
                        "content": {"subject": "Forgot something?", "text": "25% off with CART25"},
                    },
                },
                {"id": "two days", "wait": {"days": 2}},
                {"id": "to ads", "set_traits": {"ads_abandoned_checkout": True}},
            ],
        },
    )
    world.log(*(customer(u, f"{u}@example.com") for u in ("ann", "bob", "cat")))
    world.log(*(track(u, "Checkout Started", total=80) for u in ("ann", "bob", "cat")))
    world.run()
    world.clock.advance(hours=1)
    world.log(track("ann", "Order Completed", total=80))  # within the grace period: no mail
    world.run()
    assert inbox.mails == []
    world.clock.advance(hours=1, seconds=5)
    world.run()
    assert [m[1] for m in inbox.mails] == [["bob@example.com"], ["cat@example.com"]] or sorted(
        m[1][0] for m in inbox.mails
    ) == ["bob@example.com", "cat@example.com"]
    assert all("CART25" in m[2].get_content() and m[2]["Subject"] == "Forgot something?" for m in inbox.mails)
    world.clock.advance(days=1)
    world.log(track("cat", "Order Completed", total=80))
    world.run()
    world.clock.advance(days=1, seconds=5)
    world.run()
    added = [(b["action"], b["profile"]["traits"]["email"]) for b in receiver.bodies()]
    assert added == [("add", "bob@example.com")]
    stats = world.stats(journey)
    assert (stats["entered"], stats["converted"], stats["completed"]) == (3, 2, 1)
    assert stats["steps"]["coupon mail"]["sent"] == 2
    # bob orders after all: out of the ads audience
    world.log(track("bob", "Order Completed", total=80))
    world.run()
    assert [b["action"] for b in receiver.bodies()] == ["add", "remove"]
    with world.engine.connect() as conn:
        bob = find_profile_id(world.engine, RULES, "user_id", "bob")
        path = journey_store.profile_journeys(conn, bob)
    assert [h["action"] for h in path[0]["history"]] == [
        "entered",
        "waiting",
        "sent",
        "waiting",
        "traits",
        "completed",
    ]


def test_an_order_in_the_same_chunk_as_its_checkout_ends_the_journey(
    world: World, receiver: Receiver
) -> None:
    """A backfill or a burst puts the checkout and its order in one processed chunk: the order is
    the goal of the instance the checkout began (an exit likewise), and a later checkout alone
    still waits for its coupon."""
    world.destination("mailer", "webhook", {"url": receiver.url})
    journey = world.journey(
        "checkout",
        {
            "entry": {"event": "Checkout Started"},
            "goal": {"event": "Order Completed"},
            "exit_on": [{"event": "Unsubscribed"}],
            "steps": [
                {"id": "grace", "wait": {"hours": 2}},
                {"id": "coupon", "send": {"destination": "mailer", "content": {"coupon": "CART25"}}},
            ],
        },
    )
    world.log(
        *(customer(u, f"{u}@example.com") for u in ("ann", "bob", "cat", "dan")),
        track("ann", "Order Completed"),  # before the checkout: not its goal
        track("ann", "Checkout Started"),
        track("bob", "Checkout Started"),
        track("bob", "Order Completed"),
        track("cat", "Checkout Started"),
        track("cat", "Unsubscribed"),
        track("dan", "Checkout Started"),
    )
    world.run()
    stats = world.stats(journey)
    assert (stats["entered"], stats["converted"], stats["exited"]) == (4, 1, 1)
    world.clock.advance(hours=2, seconds=5)
    world.run()
    assert sorted(b["profile"]["traits"]["email"] for b in receiver.bodies()) == [
        "ann@example.com",
        "dan@example.com",
    ]


def test_weekly_category_digest(world: World, mail: tuple[MailRecorder, int]) -> None:
    """Every Monday 09:00 Europe/Berlin, customers with high intent for shoes get the digest."""
    inbox, port = mail
    email_destination(world, port)
    save_segment(
        world.engine,
        "shoe intent",
        {
            "event": "Product Viewed",
            "where": [{"property": "category", "op": "eq", "value": "shoes"}],
            "count": {"op": "gte", "value": 3},
        },
    )
    world.log(customer("ann", "ann@example.com"), customer("bob", "bob@example.com"))
    world.log(*(track("ann", "Product Viewed", category="shoes") for _ in range(3)))
    world.log(
        track("bob", "Product Viewed", category="shoes"), track("bob", "Product Viewed", category="hats")
    )
    world.run()
    journey = world.journey(
        "weekly shoes digest",
        {
            "entry": {
                "schedule": {"every": "week", "day": "monday", "at": "09:00", "timezone": "Europe/Berlin"},
                "audience": "shoe intent",
            },
            "reentry": {"after_days": 6},
            "steps": [
                {
                    "id": "digest",
                    "send": {
                        "destination": "email",
                        "channel": "email",
                        "content": {"subject": "New in shoes", "text": "This week's picks"},
                    },
                }
            ],
        },
    )
    with world.engine.connect() as conn:
        first = datetime.fromisoformat(journey_store.get(conn, journey)["next_run_at"])
    local = first.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin"))
    assert (local.weekday(), local.hour, local.minute) == (0, 9, 0)
    world.clock.now = first - timedelta(minutes=1)
    world.run()
    assert inbox.mails == []
    world.clock.now = first + timedelta(seconds=1)
    world.run()
    assert [m[1] for m in inbox.mails] == [["ann@example.com"]]
    world.clock.now = first + timedelta(days=7, seconds=1)
    world.run()
    assert [m[1] for m in inbox.mails] == [["ann@example.com"]] * 2
    assert world.stats(journey)["steps"]["digest"]["sent"] == 2


def test_switch_channel_for_people_who_ignore_email(world: World, receiver: Receiver) -> None:
    """Who ignored their last 10 e-mails gets the message by SMS (an SMS gateway's webhook)."""
    world.destination(
        "sms gateway",
        "webhook",
        {"url": receiver.url, "body": {"to": "{{ profile.traits.phone }}", "text": "{{ content.text }}"}},
        purpose="sms",
    )
    save_segment(
        world.engine,
        "email ignorers",
        EMAIL_IGNORERS,
    )
    journey = world.journey(
        "switch channel",
        {
            "entry": {"segment": "email ignorers"},
            "steps": [
                SEND_SMS,
                {"id": "prefer sms", "set_traits": {"preferred_channel": "sms"}},
            ],
        },
    )
    world.log(
        customer("ann", "ann@example.com", phone="+4915112345678"),
        customer("bob", "bob@example.com", phone="+4915187654321"),
    )
    world.log(*(track(u, "Email Delivered") for u in ("ann", "bob") for _ in range(10)))
    world.log(track("bob", "Email Opened"))
    world.run()
    assert receiver.bodies() == [{"to": "+4915112345678", "text": SMS_OFFER}]
    assert world.stats(journey)["completed"] == 1
    with world.engine.connect() as conn:
        from opencdp.store.schema import profiles

        ann = find_profile_id(world.engine, RULES, "user_id", "ann")
        traits = conn.execute(sa.select(profiles.c.traits).where(profiles.c.id == ann)).scalar_one()
    assert traits["preferred_channel"] == "sms"


def test_welcome_series_with_quiet_hours_caps_and_an_awaited_event(
    world: World, mail: tuple[MailRecorder, int]
) -> None:
    """After a newsletter sign-up: welcome mail (not during the night), then wait up to 2 days
    for an open: a reader gets an offer, the others a reminder; at most 2 mails a week."""
    inbox, port = mail
    email_destination(world, port)
    journey = world.journey(
        "welcome series",
        {
            "entry": {"event": "Newsletter Subscribed"},
            "quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "Europe/Berlin"},
            "caps": {"per_channel": {"email": {"max": 2, "days": 7}}},
            "steps": [
                {
                    "id": "welcome",
                    "send": {
                        "destination": "email",
                        "channel": "email",
                        "content": {"subject": "Welcome", "text": "Glad you are here"},
                    },
                },
                {
                    "id": "opened?",
                    "wait_for": {
                        "event": "Email Opened",
                        "within": {"days": 2},
                        "then": "offer",
                        "timeout": "reminder",
                    },
                },
                {
                    "id": "reminder",
                    "send": {
                        "destination": "email",
                        "channel": "email",
                        "content": {"subject": "Did you see?", "text": "Our welcome"},
                    },
                    "next": "exit",
                },
                {
                    "id": "offer",
                    "send": {
                        "destination": "email",
                        "channel": "email",
                        "content": {"subject": "An offer", "text": "10% for readers"},
                    },
                },
                {
                    "id": "bonus",
                    "send": {
                        "destination": "email",
                        "channel": "email",
                        "content": {"subject": "Bonus", "text": "One more"},
                    },
                },
            ],
        },
    )
    # 22:30 in Berlin (21:30 UTC in winter): inside the quiet hours
    world.clock.now = datetime(2027, 1, 11, 21, 30, tzinfo=UTC)
    world.log(customer("ann", "ann@example.com"), customer("bob", "bob@example.com"))
    world.log(track("ann", "Newsletter Subscribed"), track("bob", "Newsletter Subscribed"))
    world.run()
    assert inbox.mails == []
    world.clock.now = datetime(2027, 1, 12, 7, 0, 1, tzinfo=UTC)  # 08:00:01 in Berlin
    world.run()
    assert sorted(m[2]["Subject"] for m in inbox.mails) == ["Welcome", "Welcome"]
    world.clock.advance(hours=5)
    world.log(track("ann", "Email Opened"))
    world.run()
    assert [m["Subject"] for m in inbox.to("ann@example.com")] == ["Welcome", "An offer"]
    world.clock.advance(days=2)
    world.run()
    assert [m["Subject"] for m in inbox.to("bob@example.com")] == ["Welcome", "Did you see?"]
    # ann's bonus would be her third mail in 7 days: capped
    assert [m["Subject"] for m in inbox.to("ann@example.com")] == ["Welcome", "An offer"]
    stats = world.stats(journey)
    assert stats["steps"]["bonus"] == {"capped": 1}
    assert stats["completed"] == 2


def test_definitions_are_checked_with_the_path_of_the_problem(world: World) -> None:
    with world.engine.begin() as conn:
        for definition, field in (
            (
                {"entry": {"event": "X"}, "steps": [{"id": "a", "send": {"destination": "nowhere"}}]},
                "definition.steps.0.send.destination",
            ),
            (
                {"entry": {"segment": "no such"}, "steps": [{"id": "a", "exit": True}]},
                "definition.entry.segment",
            ),
            (
                {"entry": {"event": "X"}, "steps": [{"id": "a", "wait": {"hours": -1}}]},
                "definition.steps.0.wait.hours",
            ),
            ({"entry": {"event": "X"}, "steps": [{"id": "a", "fly": True}]}, "definition.steps.0"),
            (
                {
                    "entry": {"event": "X"},
                    "steps": [
                        {
                            "id": "a",
                            "branch": {
                                "if": {"trait": "x", "op": "gt", "value": "y"},
                                "then": "exit",
                                "else": "exit",
                            },
                        }
                    ],
                },
                "definition.steps.0.branch.if.value",
            ),
        ):
            with pytest.raises(JourneyError) as info:
                journey_store.save(conn, "bad", definition)
            assert info.value.field == field, info.value


def test_a_rebuild_enters_no_one_twice(world: World, mail: tuple[MailRecorder, int]) -> None:
    from opencdp.process.processor import reset_derived_state

    inbox, port = mail
    email_destination(world, port)
    world.journey(
        "hello",
        {
            "entry": {"event": "Signed Up"},
            "reentry": "always",
            "steps": [{"id": "hi", "send": {"destination": "email", "content": {"subject": "Hi"}}}],
        },
    )
    world.log(customer("ann", "ann@example.com"), track("ann", "Signed Up"))
    world.run()
    reset_derived_state(world.engine)
    world.run()
    assert len(inbox.mails) == 1
    with world.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(journey_instances)).scalar_one() == 1


def test_a_computed_trait_change_enters(world: World, receiver: Receiver) -> None:
    """`rfm_segment` style triggers: a profile enters when a computed trait changes (to a value)."""
    world.destination("crm", "webhook", {"url": receiver.url, "body": {"user": "{{ profile.id }}"}})
    journey = world.journey(
        "second order",
        {
            "entry": {"computed": "order_count", "to": 2},
            "steps": [{"id": "tell crm", "send": {"destination": "crm", "content": {}}}],
        },
    )
    world.log(customer("ann", "ann@example.com"), customer("bob", "bob@example.com"))
    world.log(track("ann", "Order Completed", revenue=10), track("bob", "Order Completed", revenue=10))
    world.run()
    assert receiver.received == []  # order_count changed, but to 1
    world.log(track("ann", "Order Completed", revenue=20))
    world.run()
    ann = find_profile_id(world.engine, RULES, "user_id", "ann")
    assert receiver.bodies() == [{"user": ann}]
    world.log(track("ann", "Order Completed", revenue=30))  # 3: no longer "to 2"
    world.run()
    assert len(receiver.received) == 1
    assert world.stats(journey)["entered"] == 1


def test_switch_channel_on_the_predicted_ignored_counter(world: World, receiver: Receiver) -> None:
    """The channel-preference job's `email_ignored_last` drives a journey like any trait: who ignored
    the last 10 e-mails (a predicted trait, no hand-written event criteria) gets an SMS."""
    from opencdp.predict import runner

    world.destination(
        "sms gateway",
        "webhook",
        {"url": receiver.url, "body": {"to": "{{ profile.traits.phone }}", "text": "{{ content.text }}"}},
        purpose="sms",
    )
    save_segment(
        world.engine, "ignores e-mail", {"predicted": "email_ignored_last", "op": "gte", "value": 10}
    )
    journey = world.journey("switch channel", {"entry": {"segment": "ignores e-mail"}, "steps": [SEND_SMS]})
    world.log(
        customer("ann", "ann@example.com", phone="+4915112345678"),
        customer("bob", "bob@example.com", phone="+4915187654321"),
    )
    world.log(*(track(u, "Email Delivered") for u in ("ann", "bob") for _ in range(10)))
    world.log(track("bob", "Email Opened"))
    world.run()
    runner.fit(world.engine, "channels", world.clock.now)
    runner.score(world.engine, "channels", world.clock.now)
    runner.refresh_memberships(world.engine)
    world.run()
    assert receiver.bodies() == [{"to": "+4915112345678", "text": SMS_OFFER}]
    assert world.stats(journey)["entered"] == 1
