"""Sessions on the profile: `sessions_of` (with the entry read from the log's context), the API,
and the session computed traits, against expectations worked out by hand; both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from opencdp.cli import main
from opencdp.personalise.profile_sessions import sessions_of
from opencdp.segments.queries import preview
from opencdp.system import OpenCDP
from opencdp.traits.store import refresh_computed
from tests.identity_helpers import log_messages, process, profile_of

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
SESSION_TRAITS = (
    "sessions_30_days",
    "avg_session_seconds_30_days",
    "last_session_started_at",
)
_n = 0


def _msg(kind: str, user: str, ts: str, name: str | None = None, **extra: Any) -> dict[str, Any]:
    global _n
    _n += 1
    out: dict[str, Any] = {"type": kind, "userId": user, "timestamp": ts, "messageId": f"m-{user}-{_n}"}
    if kind == "track":
        out["event"] = name
    elif name:
        out["name"] = name
    return out | extra


NEWSLETTER = {"source": "newsletter", "medium": "email", "name": "spring"}


def _visitor() -> list[dict[str, Any]]:
    """v-1's history (hand-worked sessions with a 30-minute gap):
    S1 2026-05-01 10:00-10:25 (1500 s, 2 pages, 3 events), from the newsletter, landed on /home;
    S2 2026-06-10 09:00-09:59 (3540 s; gaps 29:59 and 29:01), the identify at 10:20 counts for none;
    S3 2026-06-10 10:29:01 (0 s: 30:01 after S2's last event), from ads;
    S4 2026-06-29 08:00-08:30 (1800 s: a gap of exactly 30 minutes stays in the session);
    and one event after NOW (ignored by the traits computed at NOW)."""
    u = "v-1"
    return [
        _msg(
            "page",
            u,
            "2026-05-01T10:00:00Z",
            "Home",
            context={"campaign": NEWSLETTER, "page": {"path": "/home", "referrer": "https://mail.example/"}},
            properties={"path": "/home"},
        ),
        _msg("track", u, "2026-05-01T10:10:00Z", "Product Viewed", properties={"sku": "s-1"}),
        _msg("page", u, "2026-05-01T10:25:00Z", "Shoes", context={"page": {"path": "/shoes"}}),
        _msg("page", u, "2026-06-10T09:00:00Z", "Home", properties={"url": "https://shop.example/?q=1"}),
        _msg("track", u, "2026-06-10T09:29:59Z", "Product Viewed"),
        _msg("track", u, "2026-06-10T09:59:00Z", "Cart Viewed"),
        {"type": "identify", "userId": u, "timestamp": "2026-06-10T10:20:00Z", "traits": {"plan": "pro"}},
        _msg(
            "page",
            u,
            "2026-06-10T10:29:01Z",
            "Sale",
            context={"campaign": {"source": "ads", "name": "summer"}, "page": {"path": "/sale"}},
        ),
        _msg("page", u, "2026-06-29T08:00:00Z", "Home", context={"page": {"path": "/"}}),
        _msg("track", u, "2026-06-29T08:30:00Z", "Order Completed", properties={"revenue": 20}),
        _msg("page", u, "2026-07-05T08:00:00Z", "Later"),
    ]


def _others() -> list[dict[str, Any]]:
    return [
        # w-1: one visit without a campaign; its single event makes a 0-second session
        _msg(
            "page",
            "w-1",
            "2026-06-20T10:00:00Z",
            "Home",
            context={"page": {"referrer": "https://g.example/"}},
        ),
        # i-1: only identify calls: no sessions at all
        {"type": "identify", "userId": "i-1", "timestamp": "2026-06-20T10:00:00Z", "traits": {"plan": "x"}},
    ]


def _setup(system: OpenCDP) -> dict[str, str]:
    log_messages(system.engine, _visitor() + _others())
    process(system.engine)
    ids = {u: profile_of(system.engine, "user_id", u) for u in ("v-1", "w-1", "i-1")}
    with system.engine.begin() as conn:
        refresh_computed(conn, ids.values(), NOW)
    return ids


def _computed(system: OpenCDP, pid: str) -> dict[str, Any]:
    from opencdp.profiles.reader import get_profile

    return {k: v["value"] for k, v in get_profile(system.engine, pid)["computed"].items()}


def test_sessions_of_splits_by_inactivity_and_reads_the_entry_from_the_log(system: OpenCDP) -> None:
    ids = _setup(system)
    with system.engine.connect() as conn:
        found = sessions_of(conn, ids["v-1"])
        recent = sessions_of(conn, ids["v-1"], since=datetime(2026, 6, 1, tzinfo=UTC))
        newest = sessions_of(conn, ids["v-1"], limit=2)
        longer = sessions_of(conn, ids["v-1"], gap=timedelta(minutes=60))
        none = sessions_of(conn, ids["i-1"])
        full = sessions_of(conn, ids["v-1"], all_properties=True)
    assert [(s.started_at.isoformat(), s.duration_seconds, len(s.events)) for s in found] == [
        ("2026-05-01T10:00:00+00:00", 1500.0, 3),
        ("2026-06-10T09:00:00+00:00", 3540.0, 3),
        ("2026-06-10T10:29:01+00:00", 0.0, 1),
        ("2026-06-29T08:00:00+00:00", 1800.0, 2),
        ("2026-07-05T08:00:00+00:00", 0.0, 1),
    ]
    first = found[0].summary()
    assert first["page_views"] == 2 and first["events"] == 3 and first["number"] == 1
    assert {k: first[k] for k in ("source", "medium", "campaign", "referrer", "landing_path")} == {
        "source": "newsletter",
        "medium": "email",
        "campaign": "spring",
        "referrer": "https://mail.example/",
        "landing_path": "/home",
    }
    assert found[1].entry()["landing_path"] == "/"  # from properties.url
    assert found[1].entry()["source"] is None
    assert found[2].entry() | {} == {
        "source": "ads",
        "medium": None,
        "campaign": "summer",
        "referrer": None,
        "landing_path": "/sale",
    }
    assert [s.started_at.day for s in recent] == [10, 10, 29, 5]
    assert [len(s.events) for s in newest] == [1, 1]  # the newest 2 events: S4 cut, and the later one
    assert [len(s.events) for s in longer] == [3, 4, 2, 1]  # S2 and S3 join under a 60-minute gap
    assert none == []
    assert found[0].events[1].properties == {}  # only what the entry reads: path, url, referrer
    assert found[0].events[0].properties == {"path": "/home"}
    assert full[0].events[1].properties == {"sku": "s-1"}
    assert [s.summary() for s in full] == [s.summary() for s in found]


def test_session_computed_traits(system: OpenCDP) -> None:
    ids = _setup(system)
    v = _computed(system, ids["v-1"])
    assert v["sessions_30_days"] == 3  # S2, S3, S4 started after 2026-05-31 12:00
    assert v["avg_session_seconds_30_days"] == round((3540 + 0 + 1800) / 3, 1) == 1780.0
    assert v["last_session_started_at"] == "2026-06-29T08:00:00Z"
    assert v["order_count"] == 1  # the other computed traits are still there
    w = _computed(system, ids["w-1"])
    assert (w["sessions_30_days"], w["avg_session_seconds_30_days"]) == (1, 0.0)
    assert w["last_session_started_at"] == "2026-06-20T10:00:00Z"
    i = _computed(system, ids["i-1"])
    assert i["sessions_30_days"] == 0
    assert not {"avg_session_seconds_30_days", "last_session_started_at"} & set(i)


def test_session_traits_follow_the_gap_setting(system: OpenCDP, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _setup(system)
    monkeypatch.setenv("OPENCDP_SESSION_GAP_MINUTES", "60")
    with system.engine.begin() as conn:
        refresh_computed(conn, [ids["v-1"]], NOW)
    v = _computed(system, ids["v-1"])
    assert v["sessions_30_days"] == 2  # S2+S3 (09:00-10:29:01, 5341 s) and S4 (1800 s)
    assert v["avg_session_seconds_30_days"] == round((5341 + 1800) / 2, 1)


def test_session_traits_in_segments_and_the_trait_list(system: OpenCDP) -> None:
    ids = _setup(system)
    for criteria, expected in (
        ({"computed": "sessions_30_days", "op": "gte", "value": 1}, {ids["v-1"], ids["w-1"]}),
        ({"computed": "avg_session_seconds_30_days", "op": "gt", "value": 600}, {ids["v-1"]}),
    ):
        out = preview(system.engine, criteria, sample_size=10, now=NOW)
        assert {s["id"] for s in out["sample"]} == expected, criteria
    env = {
        "OPENCDP_DATABASE_URL": system.settings.database_url,
        "OPENCDP_DATA_DIR": str(system.settings.data_dir),
        "OPENCDP_LOG_LEVEL": "WARNING",
    }
    listed = CliRunner().invoke(main, ["traits", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    for name in SESSION_TRAITS:
        assert f"\n{name}\t" in listed.output


def test_sessions_api(system: OpenCDP) -> None:
    from opencdp.access.keys import create_api_key
    from opencdp.api.app import create_app

    ids = _setup(system)
    read = {"Authorization": f"Bearer {create_api_key(system.engine, 'read')[1]}"}
    with TestClient(create_app(system)) as client:
        out = client.get(f"/api/profiles/{ids['v-1']}/sessions", params={"days": 3650}, headers=read)
        short = client.get(f"/api/profiles/{ids['v-1']}/sessions", params={"days": 1}, headers=read)
        missing = client.get("/api/profiles/nope/sessions", headers=read)
        bad = client.get(f"/api/profiles/{ids['v-1']}/sessions", params={"days": 0}, headers=read)
        anonymous = client.get(f"/api/profiles/{ids['v-1']}/sessions")
    assert out.status_code == 200, out.text
    body = out.json()
    assert body["profile_id"] == ids["v-1"] and body["gap_minutes"] == 30
    starts = [s["started_at"] for s in body["sessions"]]
    assert starts == sorted(starts, reverse=True) and len(starts) == 5  # newest first
    oldest = body["sessions"][-1]
    assert (oldest["source"], oldest["campaign"], oldest["landing_path"]) == ("newsletter", "spring", "/home")
    assert oldest["duration_seconds"] == 1500.0 and oldest["page_views"] == 2
    assert [(i["type"], i["name"], i["path"]) for i in oldest["items"]] == [
        ("page", "Home", "/home"),
        ("track", "Product Viewed", None),
        ("page", "Shoes", "/shoes"),
    ]
    assert short.status_code == 200 and short.json()["sessions"] == []  # the events are months old
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert bad.status_code in (400, 422)
    assert anonymous.status_code == 401


def test_entry_is_read_from_the_visits_start() -> None:
    from opencdp.personalise.sessions import SessionEvent, split_sessions

    t = datetime(2026, 6, 1, 10, tzinfo=UTC)
    direct = split_sessions(
        [
            SessionEvent(t, "page", "Home", {"path": "/"}, {"page": {"path": "/"}}),
            SessionEvent(
                t + timedelta(minutes=1),
                "page",
                "Shoes",
                {},
                {"page": {"path": "/shoes", "referrer": "https://shop.example/"}},  # the site itself
            ),
        ]
    )[0].entry()
    assert direct["referrer"] is None and direct["landing_path"] == "/"
    named = split_sessions(
        [
            SessionEvent(t, "track", "Email Link Clicked", {}, {"campaign": {"name": "spring"}}),
            SessionEvent(t + timedelta(minutes=1), "page", "Home", {}, {"campaign": {"source": "ads"}}),
        ]
    )[0].entry()
    assert (named["source"], named["campaign"]) == (None, "spring")


def test_session_traits_agree_with_a_plain_computation() -> None:
    """session_traits on random events against gaps between sorted times, worked out separately."""
    import random

    from opencdp.personalise.profile_sessions import session_traits
    from opencdp.segments.oracle import OracleEvent

    rng = random.Random(10)
    for _ in range(300):
        gap = timedelta(minutes=rng.choice([5, 30, 60]))
        events = [
            OracleEvent(
                None,
                rng.choice(["track", "page", "screen", "identify"]),
                NOW - timedelta(minutes=rng.randrange(-600, 60 * 24 * 45)),
                {},
            )
            for _ in range(rng.randrange(0, 40))
        ]
        values = session_traits(events, NOW, gap)
        times = sorted(e.ts for e in events if e.type != "identify" and e.ts <= NOW)
        starts = [t for i, t in enumerate(times) if i == 0 or t - times[i - 1] > gap]
        ends = [t for i, t in enumerate(times) if i == len(times) - 1 or times[i + 1] - t > gap]
        recent = [(s, e) for s, e in zip(starts, ends, strict=True) if s >= NOW - timedelta(days=30)]
        expected: dict[str, Any] = {"sessions_30_days": len(recent)}
        if starts:
            expected["last_session_started_at"] = starts[-1].isoformat().replace("+00:00", "Z")
        if recent:
            average = sum((e - s).total_seconds() for s, e in recent) / len(recent)
            expected["avg_session_seconds_30_days"] = round(average, 1)
        assert values == expected
