"""Identity resolution scenarios and order-independence, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opencdp.config import Settings
from opencdp.identity.identifiers import IdentityRules
from opencdp.process.processor import reset_derived_state
from opencdp.store.database import create_engine, migrate
from opencdp.store.schema import events, identity_conflicts, metadata
from opencdp.system import OpenCDP
from tests.identity_helpers import log_messages, process, profile_of, world


def ts(day: int, minute: int = 0) -> str:
    return f"2026-05-{day:02d}T10:{minute:02d}:00Z"


def test_cross_device_journey_is_one_profile(cdp: OpenCDP) -> None:
    log_messages(
        cdp.engine,
        [
            {"type": "page", "anonymousId": "phone-1", "name": "Home", "timestamp": ts(1)},
            {"type": "track", "anonymousId": "laptop-1", "event": "Product Viewed", "timestamp": ts(2)},
            {
                "type": "identify",
                "anonymousId": "phone-1",
                "userId": "u1",
                "traits": {"email": " Ann@Example.COM "},
                "timestamp": ts(3),
            },
            {"type": "identify", "anonymousId": "laptop-1", "userId": "u1", "timestamp": ts(4)},
        ],
    )
    process(cdp.engine)
    pid = profile_of(cdp.engine, "anonymous_id", "phone-1")
    assert profile_of(cdp.engine, "anonymous_id", "laptop-1") == pid
    assert profile_of(cdp.engine, "email", "ann@example.com") == pid  # normalised
    profile = world(cdp.engine)["profiles"][pid]
    assert profile["identifiers"] == {
        "anonymous_id:phone-1",
        "anonymous_id:laptop-1",
        "user_id:u1",
        "email:ann@example.com",
    }
    assert profile["counts"] == {"page": 1, "track": 1, "identify": 2}


def test_alias_links_previous_id(cdp: OpenCDP) -> None:
    log_messages(
        cdp.engine,
        [
            {"type": "track", "anonymousId": "anon-9", "event": "Cart Viewed", "timestamp": ts(1)},
            {"type": "alias", "previousId": "anon-9", "userId": "u9", "timestamp": ts(2)},
        ],
    )
    process(cdp.engine)
    assert profile_of(cdp.engine, "anonymous_id", "anon-9") == profile_of(cdp.engine, "user_id", "u9")


def test_email_change_keeps_one_profile_and_latest_email_trait(cdp: OpenCDP) -> None:
    log_messages(
        cdp.engine,
        [
            {"type": "identify", "userId": "u1", "traits": {"email": "old@example.com"}, "timestamp": ts(1)},
            {"type": "identify", "userId": "u1", "traits": {"email": "new@example.com"}, "timestamp": ts(5)},
        ],
    )
    process(cdp.engine)
    pid = profile_of(cdp.engine, "user_id", "u1")
    assert profile_of(cdp.engine, "email", "old@example.com") == pid
    assert profile_of(cdp.engine, "email", "new@example.com") == pid
    assert world(cdp.engine)["profiles"][pid]["traits"]["email"] == "new@example.com"


def test_shared_device_keeps_two_people_apart(cdp: OpenCDP) -> None:
    log_messages(
        cdp.engine,
        [
            {"type": "identify", "anonymousId": "family-pc", "userId": "mum", "timestamp": ts(1)},
            {"type": "identify", "anonymousId": "family-pc", "userId": "son", "timestamp": ts(2)},
        ],
    )
    process(cdp.engine)
    state = world(cdp.engine)
    assert profile_of(cdp.engine, "user_id", "mum") != profile_of(cdp.engine, "user_id", "son")
    assert len(state["profiles"]) == 2
    with cdp.engine.connect() as conn:
        [conflict] = conn.execute(sa.select(identity_conflicts)).all()
    assert conflict.rule == "limit:user_id<=1"


def test_placeholder_email_does_not_merge_strangers(cdp: OpenCDP) -> None:
    log_messages(
        cdp.engine,
        [
            {"type": "identify", "userId": "a", "traits": {"email": "test@test.com"}, "timestamp": ts(1)},
            {"type": "identify", "userId": "b", "traits": {"email": "TEST@test.com"}, "timestamp": ts(2)},
            {"type": "identify", "userId": "null", "anonymousId": "undefined", "timestamp": ts(3)},
        ],
    )
    process(cdp.engine)
    assert profile_of(cdp.engine, "user_id", "a") != profile_of(cdp.engine, "user_id", "b")
    assert len(world(cdp.engine)["profiles"]) == 2


def test_late_event_does_not_overwrite_newer_trait(cdp: OpenCDP) -> None:
    log_messages(
        cdp.engine, [{"type": "identify", "userId": "u1", "traits": {"plan": "gold"}, "timestamp": ts(10)}]
    )
    process(cdp.engine)
    log_messages(
        cdp.engine,
        [
            {
                "type": "identify",
                "userId": "u1",
                "traits": {"plan": "free", "city": "Köln"},
                "timestamp": ts(2),
            }
        ],
    )
    process(cdp.engine)
    traits = world(cdp.engine)["profiles"][profile_of(cdp.engine, "user_id", "u1")]["traits"]
    assert traits == {"plan": "gold", "city": "Köln"}


def test_custom_identifiers_and_phone_normalisation(cdp: OpenCDP) -> None:
    log_messages(
        cdp.engine,
        [
            {
                "type": "identify",
                "userId": "u1",
                "traits": {"phone": "+49 (151) 2345-6789", "loyalty_card": "LC-1"},
                "timestamp": ts(1),
            },
            {
                "type": "track",
                "anonymousId": "kiosk-7",
                "event": "Scanned",
                "timestamp": ts(2),
                "context": {"externalIds": [{"type": "loyalty_card", "id": "LC-1"}]},
            },
            {
                "type": "track",
                "anonymousId": "x",
                "event": "Login",
                "timestamp": ts(3),
                "context": {
                    "externalIds": [{"type": "google_id", "id": "g-1"}],
                    "traits": {"phone": "+4915123456789"},
                },
            },
        ],
    )
    process(cdp.engine)
    pid = profile_of(cdp.engine, "user_id", "u1")
    assert profile_of(cdp.engine, "loyalty_card", "LC-1") == pid
    assert profile_of(cdp.engine, "anonymous_id", "kiosk-7") == pid
    assert profile_of(cdp.engine, "phone", "+4915123456789") == pid
    assert profile_of(cdp.engine, "google_id", "g-1") == pid


def test_merged_profile_id_resolves_to_survivor(client: Any, cdp: OpenCDP, admin_key: str) -> None:
    log_messages(
        cdp.engine,
        [
            {"type": "page", "anonymousId": "late-anon", "timestamp": ts(1)},
            {"type": "identify", "userId": "zed", "timestamp": ts(2)},
        ],
    )
    process(cdp.engine)
    anon_profile = profile_of(cdp.engine, "anonymous_id", "late-anon")
    log_messages(
        cdp.engine, [{"type": "identify", "userId": "zed", "anonymousId": "late-anon", "timestamp": ts(3)}]
    )
    process(cdp.engine)
    survivor = profile_of(cdp.engine, "user_id", "zed")
    headers = {"Authorization": f"Bearer {admin_key}"}
    for pid in {anon_profile, survivor}:
        body = client.get(f"/api/profiles/{pid}", headers=headers).json()
        assert body["id"] == survivor
    history = client.get(f"/api/profiles/{anon_profile}/merges", headers=headers).json()
    assert any(link["rule"] == "same_event" for link in history["links"])
    assert all("event" in link["explanation"] for link in history["links"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_identifier_rules_from_environment(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("OPENCDP_IDENTITY_LIMITS", "email=1")
    monkeypatch.setenv("OPENCDP_BLOCKED_IDENTIFIERS", "Guest,shared@shop.example")
    monkeypatch.setenv("OPENCDP_IDENTITY_TRAITS", "member_no=member")
    rules = IdentityRules.from_env()
    assert rules.limits["email"] == 1 and rules.limits["user_id"] == 1
    assert rules.normalise("user_id", "guest") is None
    assert rules.normalise("email", "Shared@Shop.example") is None
    ids = rules.extract({"type": "identify", "userId": "u", "traits": {"member_no": 77}})
    assert [str(i) for i in ids] == ["user_id:u", "member:77"]
    monkeypatch.setenv("OPENCDP_IDENTITY_LIMITS", "email=lots")
    with pytest.raises(ValueError, match="OPENCDP_IDENTITY_LIMITS"):
        IdentityRules.from_env()


# --- order independence (hypothesis) ---------------------------------------------------------

USERS = ["u1", "u2", "u3"]
ANONS = ["a1", "a2", "a3", "a4"]
EMAILS = ["x@example.com", "y@example.com", "test@test.com"]


@st.composite
def event_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(min_value=1, max_value=14))
    out = []
    for i in range(n):
        kind = draw(st.sampled_from(["identify", "track", "alias"]))
        message: dict[str, Any] = {
            "type": kind,
            "messageId": f"m{i}",
            "timestamp": ts(1 + draw(st.integers(0, 5)), draw(st.integers(0, 3))),
        }
        if kind == "alias":
            message.update(previousId=draw(st.sampled_from(ANONS)), userId=draw(st.sampled_from(USERS)))
        else:
            user = draw(st.sampled_from([None, *USERS]))
            anon = draw(st.sampled_from([None, *ANONS])) if user else draw(st.sampled_from(ANONS))
            if user:
                message["userId"] = user
            if anon:
                message["anonymousId"] = anon
            if kind == "track":
                message["event"] = "E"
            traits = {}
            if draw(st.booleans()):
                traits["email"] = draw(st.sampled_from(EMAILS))
            if draw(st.booleans()):
                traits["plan"] = draw(st.sampled_from(["free", "gold"]))
            if traits:
                message["traits" if kind == "identify" else "context"] = (
                    traits if kind == "identify" else {"traits": traits}
                )
            if draw(st.booleans()):
                message.setdefault("context", {})["consent"] = {
                    "purposes": {"email_marketing": {"granted": draw(st.booleans()), "version": "v1"}}
                }
        out.append(message)
    return out


@pytest.fixture(scope="module")
def scratch_engines(tmp_path_factory: pytest.TempPathFactory) -> list[sa.Engine]:
    """Two migrated databases (one per arrival order), emptied before each example."""
    base = tmp_path_factory.mktemp("orders")
    engines = [
        create_engine(Settings(data_dir=base, database_url=f"sqlite:///{base / n}")) for n in ("a.db", "b.db")
    ]
    for engine in engines:
        migrate(engine)
    return engines


def _emptied(engine: sa.Engine) -> sa.Engine:
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    return engine


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=event_sets(), seed=st.integers(0, 10_000), chunk=st.sampled_from([1, 3, 500]))
def test_any_arrival_order_gives_the_same_profiles(
    scratch_engines: list[sa.Engine], messages: list[dict[str, Any]], seed: int, chunk: int
) -> None:
    shuffled = list(messages)
    random.Random(seed).shuffle(shuffled)
    results = []
    for engine, order, size in ((scratch_engines[0], messages, 500), (scratch_engines[1], shuffled, chunk)):
        _emptied(engine)
        # arrive in several deliveries, processed in between (the live situation)
        for start in range(0, len(order), 4):
            log_messages(engine, order[start : start + 4])
            process(engine, chunk_size=size)
        results.append(world(engine))
        for profile in results[-1]["profiles"].values():
            for kind, limit in IdentityRules().limits.items():
                assert profile["identity_counts"].get(kind, 0) <= limit
                assert sum(1 for i in profile["identifiers"] if i.startswith(kind + ":")) <= limit
        assert results[-1]["merged_resolve_to_live"]
    assert results[0] == results[1]


def test_rebuild_gives_the_same_profiles_as_live_processing(cdp: OpenCDP) -> None:
    from datetime import UTC, datetime

    from opencdp.demo.shop import ShopGenerator

    pinned = datetime(2026, 11, 1, 12, tzinfo=UTC)  # reproducible: the same events on every run
    messages = [e.message for e in ShopGenerator(customers=120, seed=7, now=pinned).events()]
    for start in range(0, len(messages), 97):
        log_messages(cdp.engine, messages[start : start + 97])
        process(cdp.engine, chunk_size=64)
    live = world(cdp.engine)
    assert live["conflict_count"] >= 0 and len(live["profiles"]) > 100
    reset_derived_state(cdp.engine)
    process(cdp.engine)
    assert world(cdp.engine) == live
    with cdp.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one() == len(messages)
