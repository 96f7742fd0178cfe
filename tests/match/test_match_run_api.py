"""Starting a matching run from the API and the dashboard: it runs in the background, merges and
queues like the command line, refuses a second run at once, and needs an admin key / an editor."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.access.keys import create_api_key
from opencdp.match import runner
from opencdp.match.synthetic import records
from opencdp.store.schema import match_models
from opencdp.system import OpenCDP
from tests.match.test_match_run import _import, _partition


def _wait_for_the_run(cdp: OpenCDP) -> None:
    deadline = time.monotonic() + 120
    while runner.running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not runner.running()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_run_started_over_the_api(client: TestClient, cdp: OpenCDP, admin_key: str) -> None:
    read = {"Authorization": f"Bearer {create_api_key(cdp.engine, 'read')[1]}"}
    admin = {"Authorization": f"Bearer {admin_key}"}
    assert client.post("/api/match/run", json={}, headers=read).status_code == 403
    bad = client.post("/api/match/run", json={"model": "Bad Name"}, headers=admin)
    assert bad.status_code == 400 and "model" in bad.text

    cdp.stop()  # the test drives processing itself: the records first, then the merges
    _import(cdp.engine, list(records(400, duplicate_share=0.25, seed=3)))
    started = client.post("/api/match/run", json={}, headers=admin)
    assert started.status_code == 202, started.text
    assert started.json() == {"model": "people", "status": "started"}
    again = client.post("/api/match/run", json={}, headers=admin)
    assert again.status_code in (202, 409)  # 409 while the first still runs
    _wait_for_the_run(cdp)
    cdp.processor.run_until_caught_up()
    with cdp.engine.connect() as conn:
        summary = conn.execute(sa.select(match_models.c.last_summary)).scalar_one()
    assert summary["auto_merges"] > 50 and "error" not in summary
    assert len(set(_partition(cdp.engine).values())) == 400 - summary["auto_merges"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_run_that_cannot_go_on_leaves_its_reason(client: TestClient, cdp: OpenCDP, admin_key: str) -> None:
    started = client.post("/api/match/run", json={}, headers={"Authorization": f"Bearer {admin_key}"})
    assert started.status_code == 202
    _wait_for_the_run(cdp)
    with cdp.engine.connect() as conn:
        summary = conn.execute(sa.select(match_models.c.last_summary)).scalar_one()
    assert "at least 20 are needed" in summary["error"]
