"""Computed traits in the profile API and CLI, and `opencdp events --count` with its filters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from click.testing import CliRunner
from fastapi.testclient import TestClient

from opencdp.access.keys import create_api_key
from opencdp.api.app import create_app
from opencdp.cli import main
from opencdp.collect.messages import Envelope, Limits, normalise
from opencdp.log.append import LogAppender
from opencdp.system import OpenCDP
from tests.identity_helpers import RULES, log_messages, process, source_id, track


def _orders(system: OpenCDP) -> None:
    log_messages(
        system.engine,
        [
            {"type": "identify", "userId": "c-1", "traits": {"email": "c1@example.com"}},
            track("c-1", "Order Completed", 1, revenue=30, category="shoes"),
            track("c-1", "Order Completed", 2, revenue=12.5, category="bags"),
            {"type": "page", "userId": "c-1", "name": "Home", "timestamp": "2026-06-01T10:00:03Z"},
        ],
    )
    process(system.engine)


def test_profile_api_returns_computed_traits_with_their_time(system: OpenCDP) -> None:
    _orders(system)
    admin = {"Authorization": f"Bearer {create_api_key(system.engine, 'admin')[1]}"}
    with TestClient(create_app(system)) as client:
        found = client.get(
            "/api/profiles/lookup", params={"type": "email", "value": "c1@example.com"}, headers=admin
        )
        assert found.status_code == 200, found.text
        by_id = client.get(f"/api/profiles/{found.json()['id']}", headers=admin).json()
    for profile in (found.json(), by_id):
        computed = profile["computed"]
        assert computed["order_count"]["value"] == 2
        assert computed["total_revenue"]["value"] == 42.5
        assert computed["first_order_at"]["value"] == "2026-06-01T10:00:01Z"
        assert computed["favourite_category"]["value"] in ("bags", "shoes")
        assert isinstance(computed["rfm_segment"]["value"], str)
        assert "orders_last_365_days" in computed and "engagement_score" in computed
        moments = {c["computed_at"] for c in computed.values()}
        assert len(moments) == 1 and None not in moments
        assert datetime.fromisoformat(moments.pop()) > datetime(2026, 6, 1, tzinfo=UTC)
        assert "order_count" not in profile["traits"]


def test_profile_without_computed_traits_yet_has_an_empty_map(system: OpenCDP) -> None:
    log_messages(system.engine, [{"type": "identify", "userId": "n-1", "traits": {"plan": "pro"}}])
    admin = {"Authorization": f"Bearer {create_api_key(system.engine, 'admin')[1]}"}
    from opencdp.process.chunk import _PROFILE_COLUMNS  # the processor must not write them

    assert "computed_at" not in _PROFILE_COLUMNS and "computed" not in _PROFILE_COLUMNS
    process(system.engine)
    with TestClient(create_app(system)) as client:
        out = client.get(
            "/api/profiles/lookup", params={"type": "user_id", "value": "n-1"}, headers=admin
        ).json()
    assert out["computed"]["order_count"] == {
        "value": 0,
        "computed_at": out["computed"]["order_count"]["computed_at"],
    }
    assert out["computed"]["order_count"]["computed_at"] is not None


def _cli(system: OpenCDP, *args: str) -> Any:
    env = {
        "OPENCDP_DATABASE_URL": system.settings.database_url,
        "OPENCDP_DATA_DIR": str(system.settings.data_dir),
        "OPENCDP_LOG_LEVEL": "WARNING",
    }
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result


def test_cli_profiles_get_shows_computed_traits(system: OpenCDP) -> None:
    _orders(system)
    shown = _cli(system, "profiles", "get", "--type", "user_id", "--value", "c-1")
    assert shown.exit_code == 0, shown.output
    out = orjson.loads(shown.output)
    assert out["computed"]["order_count"]["value"] == 2
    assert out["computed"]["total_revenue"]["value"] == 42.5
    assert out["computed"]["order_count"]["computed_at"]


def test_cli_events_count_honours_type_source_and_after(system: OpenCDP) -> None:
    _orders(system)  # source "test": identify, 2 tracks, page
    crm = source_id(system.engine, "crm")
    rows = [
        normalise(
            {"type": "track", "userId": "c-2", "event": "Ticket Opened", "messageId": f"crm-{i}"},
            Envelope(datetime(2026, 6, 1, tzinfo=UTC)),
            crm,
            Limits(),
        )
        for i in range(3)
    ]
    LogAppender.for_engine(system.engine, RULES).append_committed(system.engine, rows)

    def count(*args: str) -> int:
        result = _cli(system, "events", "--count", *args)
        assert result.exit_code == 0, result.output
        return int(result.output.strip())

    assert count() == 7
    assert count("--type", "track") == 5
    assert count("--source", "crm") == 3
    assert count("--source", "test", "--type", "track") == 2
    assert count("--source", "test", "--type", "identify") == 1
    assert count("--source", "nobody") == 0
    assert count("--after", "4") == 3
    assert count("--after", "1", "--type", "track", "--source", "test") == 2
    listed = _cli(system, "events", "--type", "track", "--source", "crm")
    assert len(listed.output.strip().splitlines()) == 3
