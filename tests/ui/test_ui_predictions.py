"""Predictions in the dashboard, in-process on SQLite and PostgreSQL: the model list, a model card
(quality, calibration plot, top features, all escaped), predicted traits in the 360° view with
model and version, and the run button for editors only."""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from fastapi.testclient import TestClient
from markupsafe import escape

from opencdp.predict import runner, store
from opencdp.predict.model import Fitted
from opencdp.store.schema import profiles
from opencdp.system import OpenCDP
from tests.ui.conftest import csrf_token
from tests.ui.demo_data import XSS_EVENT

QUALITY = {
    "auc": 0.8123,
    "log_loss": 0.41,
    "lift_top_decile": 3.2,
    "base_rate": 0.1,
    "calibration": [{"predicted": p / 10 + 0.05, "observed": p / 10 + 0.03, "n": 40} for p in range(10)],
    "top_features": [
        {"feature": f"count_7d:{XSS_EVENT}", "importance": 0.05},
        {"feature": "days_since_last_order", "importance": 0.03},
    ],
    "baseline": {"name": "p_alive", "auc": 0.7},
    "beats_baseline": True,
}


def _goal(cdp: OpenCDP) -> None:
    """A goal model as a fit stores it (the propensity job's own tests fit real ones)."""
    with cdp.engine.begin() as conn:
        store.define(conn, "goal_newsletter_30d", "goal", {"event": "Newsletter", "horizon_days": 30})
        store.save_fit(
            conn,
            Fitted(
                kind="goal",
                name="goal_newsletter_30d",
                trained_at=datetime.now(UTC),
                window={"train_until": "2026-11-01"},
                features=[f"count_7d:{XSS_EVENT}", "days_since_last_order"],
                params={},
                quality=QUALITY,
                traits=["goal_newsletter_30d_probability"],
                options={"event": "Newsletter", "horizon_days": 30},
            ),
        )


def test_model_list_card_and_the_360_view(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    runner.fit(shop.engine, "channels")
    scored = runner.score(shop.engine, "channels")
    assert scored > 0
    _goal(shop)
    as_role("analyst")
    listing = client.get("/predictions")
    assert listing.status_code == 200
    for name in ("clv", "purchase", "churn", "channels", "advocacy", "interests", "goal_newsletter_30d"):
        assert f'href="/predictions/{name}"' in listing.text
    assert "not run yet" in listing.text and "0.812" in listing.text
    card = client.get("/predictions/goal_newsletter_30d")
    assert card.status_code == 200
    assert 'id="calibration"' in card.text and "<svg" in card.text
    assert XSS_EVENT not in card.text and str(escape(f"count_7d:{XSS_EVENT}")) in card.text
    assert "p_alive" in card.text  # the baseline it is compared with
    assert "Fit and score now" not in card.text  # analysts read only
    channels = client.get("/predictions/channels").text
    assert f"{scored:,}" in html.unescape(channels) or str(scored) in channels
    with shop.engine.connect() as conn:
        someone = conn.execute(
            sa.select(profiles.c.id).where(profiles.c.predicted.is_not(None)).order_by(profiles.c.id).limit(1)
        ).scalar_one()
    view = client.get(f"/profiles/{someone}").text
    assert 'id="predicted"' in view and 'href="/predictions/channels"' in view and "v1" in view
    assert client.get("/predictions/nope").status_code == 404


def test_only_editors_can_run_a_model_and_the_run_lands(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    as_role("analyst")
    token = csrf_token(client, "/predictions")
    refused = client.post("/predictions/channels/run", data={"csrf_token": token}, follow_redirects=False)
    assert refused.status_code == 403
    as_role("marketer")
    token = csrf_token(client, "/predictions")
    started = client.post("/predictions/channels/run", data={"csrf_token": token}, follow_redirects=False)
    assert started.status_code == 303 and started.headers["location"].startswith("/predictions/channels")
    deadline = time.monotonic() + 60
    while "channels" in runner.running() and time.monotonic() < deadline:
        time.sleep(0.1)
    with shop.engine.connect() as conn:
        record = store.get_model(conn, "channels")
    assert record.status == "ready" and record.version == 1 and record.scored_count > 0
