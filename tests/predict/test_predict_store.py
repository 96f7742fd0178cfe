"""Predicted traits as storage: merged across models, cleared when a run no longer scores a profile,
kept by the processor, shown by the profile API with model and version, usable in segments."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient

from opencdp.access.keys import create_api_key
from opencdp.api.app import create_app
from opencdp.cli import main
from opencdp.predict import store
from opencdp.predict.model import Fitted
from opencdp.segments import store as segment_store
from opencdp.store.schema import profiles, segment_memberships
from opencdp.system import OpenCDP
from tests.identity_helpers import log_messages, process, track

AT = datetime(2026, 6, 2, tzinfo=UTC)


def _people(system: OpenCDP, n: int = 3) -> list[str]:
    log_messages(
        system.engine,
        [
            {"type": "identify", "userId": f"u-{i}", "traits": {"email": f"u{i}@example.com"}}
            for i in range(n)
        ],
    )
    process(system.engine)
    with system.engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.select(profiles.c.id).order_by(profiles.c.id))]


def _model(system: OpenCDP, name: str, traits: list[str]) -> store.ModelRecord:
    with system.engine.begin() as conn:
        store.define(conn, name, "goal", {"event": "X", "horizon_days": 7})
        return store.save_fit(
            conn,
            Fitted(
                kind="goal",
                name=name,
                trained_at=AT,
                window={"train_until": "2026-06-01"},
                features=["f"],
                params={},
                quality={"auc": 0.75},
                traits=traits,
                options={"event": "X", "horizon_days": 7},
            ),
        )


def _predicted(system: OpenCDP) -> dict[str, dict[str, object]]:
    with system.engine.connect() as conn:
        return {r.id: r.predicted or {} for r in conn.execute(sa.select(profiles.c.id, profiles.c.predicted))}


def test_models_merge_their_traits_and_a_rerun_clears_profiles_it_no_longer_scores(system: OpenCDP) -> None:
    a, b, c = _people(system)
    one = _model(system, "one", ["one_probability"])
    two = _model(system, "two", ["two_probability"])
    assert (
        store.write_scores(
            system.engine, one, [(a, {"one_probability": 0.9}), (b, {"one_probability": 0.1})], AT
        )
        == 2
    )
    store.write_scores(system.engine, two, [(a, {"two_probability": 0.5})], AT)
    assert _predicted(system) == {
        a: {"one_probability": 0.9, "two_probability": 0.5},
        b: {"one_probability": 0.1},
        c: {},
    }
    store.write_scores(system.engine, one, [(b, {"one_probability": 0.2})], AT)  # a no longer qualifies
    assert _predicted(system) == {a: {"two_probability": 0.5}, b: {"one_probability": 0.2}, c: {}}
    with system.engine.connect() as conn:
        record = store.get_model(conn, "one")
    assert (record.scored_count, record.version, record.status) == (1, 1, "ready")


def test_the_processor_keeps_predicted_traits_and_the_profile_api_shows_model_and_version(
    system: OpenCDP,
) -> None:
    a, _b, _c = _people(system)
    one = _model(system, "one", ["one_probability"])
    store.write_scores(system.engine, one, [(a, {"one_probability": 0.9})], AT)
    log_messages(system.engine, [track("u-0", "Order Completed", 5, revenue=10)])
    process(system.engine)
    assert _predicted(system)[a] == {"one_probability": 0.9}
    admin = {"Authorization": f"Bearer {create_api_key(system.engine, 'admin')[1]}"}
    with TestClient(create_app(system)) as client:
        body = client.get(f"/api/profiles/{a}", headers=admin).json()
        models = client.get("/api/predictions", headers=admin).json()
        missing = client.get("/api/predictions/nope", headers=admin)
    assert body["predicted"] == {
        "one_probability": {
            "value": 0.9,
            "model": "one",
            "version": 1,
            "predicted_at": "2026-06-02T00:00:00Z",
        }
    }
    assert {"clv", "purchase", "churn", "channels", "advocacy", "interests", "one"} <= {
        m["name"] for m in models
    }
    assert missing.status_code == 404 and "nope" in missing.json()["message"]


def test_segments_select_on_predicted_traits_and_the_cli_shows_the_card(
    system: OpenCDP, env_for: dict[str, str]
) -> None:
    a, b, _c = _people(system)
    one = _model(system, "one", ["one_probability"])
    store.write_scores(system.engine, one, [(a, {"one_probability": 0.9}), (b, {"one_probability": 0.1})], AT)
    segment_store.save(system.engine, "likely", {"predicted": "one_probability", "op": "gte", "value": 0.5})
    with system.engine.connect() as conn:
        members = {r[0] for r in conn.execute(sa.select(segment_memberships.c.profile_id))}
    assert members == {a}
    result = CliRunner().invoke(main, ["predict", "show", "one", "--json"], env=env_for)
    assert result.exit_code == 0, result.output
    card = orjson.loads(result.output)
    assert card["quality"] == {"auc": 0.75} and card["traits"] == ["one_probability"]
    missing = CliRunner().invoke(main, ["predict", "fit", "nope"], env=env_for)
    assert missing.exit_code == 1 and "no model named 'nope'" in missing.output


def test_goals_over_the_api_name_their_problems(system: OpenCDP) -> None:
    admin = {"Authorization": f"Bearer {create_api_key(system.engine, 'admin')[1]}"}
    with TestClient(create_app(system)) as client:
        made = client.post(
            "/api/predictions/goals", json={"event": "Trial Started", "days": 14}, headers=admin
        )
        nul = client.post("/api/predictions/goals", json={"event": "a\u0000b", "days": 14}, headers=admin)
        named = client.post(
            "/api/predictions/goals", json={"event": "X", "days": 7, "name": "Bad Name"}, headers=admin
        )
        weird = client.get("/api/predictions/no%20such", headers=admin)
    assert made.status_code == 201 and made.json()["name"] == "goal_trial_started_14d"
    assert made.json()["options"] == {
        "event": "Trial Started",
        "horizon_days": 14,
        "name": "goal_trial_started_14d",
    }
    assert nul.status_code == 400 and "event" in nul.text
    assert named.status_code == 400 and "name" in named.text
    assert weird.status_code == 400 and "name" in weird.text
