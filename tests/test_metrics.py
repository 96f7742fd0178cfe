"""Operability: Prometheus /metrics (counters per source, latency by route, lag from the database,
counters of other processes), and `opencdp status` for an operator."""

from __future__ import annotations

import base64
import dataclasses
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from opencdp.access.keys import create_api_key, create_source
from opencdp.api.app import create_app
from opencdp.cli import main
from opencdp.collect.messages import Envelope, Limits, normalise
from opencdp.config import Settings
from opencdp.log.append import LogAppender
from opencdp.system import OpenCDP
from tests.identity_helpers import RULES, process, source_id
from tests.serverproc import Server


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """{(name, labels): value} of a scrape."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return scrape.get((name, frozenset(labels.items())), 0.0)


def basic(write_key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def metrics_key(cdp: OpenCDP) -> str:
    return create_api_key(cdp.engine, "metrics", "prometheus")[1]


def test_events_accepted_and_rejected_are_counted_per_source(
    client: TestClient, cdp: OpenCDP, metrics_key: str
) -> None:
    name = f"web-{uuid.uuid4().hex[:8]}"  # counters live as long as the process: a fresh label
    auth = basic(create_source(cdp.engine, name)[1])
    track = {"type": "track", "userId": "u1", "event": "Viewed"}
    assert client.post("/v1/batch", json={"batch": [track] * 3}, headers=auth).status_code == 200
    assert client.post("/v1/track", json=track, headers=auth).status_code == 200
    assert (
        client.post("/v1/batch", json={"batch": [track, {"type": "track"}]}, headers=auth).status_code == 400
    )
    assert (
        client.post("/v1/track", json={"event": "x" * 40_000, "userId": "u"}, headers=auth).status_code == 413
    )
    assert client.post("/v1/track", json=track, headers=basic("wk_nobody")).status_code == 401

    scrape = samples(client.get("/metrics", headers=bearer(metrics_key)).text)
    assert value(scrape, "opencdp_events_accepted_total", source=name) == 4
    assert value(scrape, "opencdp_events_rejected_total", source=name, reason="invalid") == 2
    assert value(scrape, "opencdp_events_rejected_total", source=name, reason="too_large") == 1
    assert value(scrape, "opencdp_events_rejected_total", source="(unknown)", reason="unauthorized") >= 1


def test_metrics_need_a_key_unless_public(client: TestClient, cdp: OpenCDP, metrics_key: str) -> None:
    refused = client.get("/metrics")
    assert refused.status_code == 401 and "metrics" in refused.json()["message"]
    read_key = create_api_key(cdp.engine, "read")[1]
    for key in (metrics_key, read_key):
        ok = client.get("/metrics", headers=bearer(key))
        assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/plain")
    # a metrics key opens nothing else
    assert client.get("/api/events", headers=bearer(metrics_key)).status_code == 403

    public = OpenCDP(dataclasses.replace(cdp.settings, metrics_public=True), engine=cdp.engine, process=False)
    with TestClient(create_app(public)) as open_client:
        assert open_client.get("/metrics").status_code == 200


def test_latency_is_recorded_by_route_template(client: TestClient, admin_key: str, metrics_key: str) -> None:
    profile_id = f"p-{uuid.uuid4().hex}"
    assert client.get(f"/api/profiles/{profile_id}", headers=bearer(admin_key)).status_code == 404
    assert client.get(f"/no/such/{profile_id}").status_code == 404
    text = client.get("/metrics", headers=bearer(metrics_key)).text
    scrape = samples(text)
    assert profile_id not in text  # raw paths would be unbounded (and could carry personal data)
    route = {"route": "/api/profiles/{profile_id}", "method": "GET", "status": "4xx"}
    assert value(scrape, "opencdp_http_request_duration_seconds_count", **route) >= 1
    assert value(scrape, "opencdp_http_request_duration_seconds_bucket", **route, le="+Inf") >= 1
    unmatched = {"route": "(unmatched)", "method": "GET", "status": "4xx"}
    assert value(scrape, "opencdp_http_request_duration_seconds_count", **unmatched) >= 1


def test_lag_in_metrics_agrees_with_health(settings: Settings) -> None:
    cdp = OpenCDP(dataclasses.replace(settings, metrics_public=True), process=False)  # no processor
    cdp.start()
    try:
        received = datetime.now(UTC) - timedelta(minutes=5)
        sid = source_id(cdp.engine)
        rows = [
            normalise({"type": "track", "userId": f"u{i}", "event": "E"}, Envelope(received), sid, Limits())
            for i in range(4)
        ]
        LogAppender.for_engine(cdp.engine, RULES).append_committed(cdp.engine, rows)
        with TestClient(create_app(cdp)) as api:
            health = api.get("/api/health").json()["processing"]
            scrape = samples(api.get("/metrics").text)
            assert value(scrape, "opencdp_processor_lag_events") == health["events_waiting"] == 4
            assert health["lag_seconds"] >= 299
            assert abs(value(scrape, "opencdp_processor_lag_seconds") - health["lag_seconds"]) < 5
            assert value(scrape, "opencdp_processor_checkpoint") == health["checkpoint"] == 0
            assert value(scrape, "opencdp_database_up") == 1
            assert value(scrape, "opencdp_log_writer_queue_depth") == 0
            process(cdp.engine)
            scrape = samples(api.get("/metrics").text)
            assert value(scrape, "opencdp_processor_lag_events") == 0
            assert value(scrape, "opencdp_processor_lag_seconds") == 0
            assert (
                value(scrape, "opencdp_processor_checkpoint")
                == api.get("/api/health").json()["processing"]["checkpoint"]
                > 0
            )
    finally:
        cdp.stop()
        cdp.engine.dispose()


def test_processor_api_records_stages_and_events(cdp: OpenCDP) -> None:
    from opencdp import metrics

    before = samples(metrics.exposition(cdp.engine)[0].decode())
    metrics.record_stage("identity", 0.25)
    metrics.record_processed(10)
    after = samples(metrics.exposition(cdp.engine)[0].decode())
    stage = value(after, "opencdp_processor_stage_seconds_total", stage="identity")
    assert stage - value(before, "opencdp_processor_stage_seconds_total", stage="identity") == 0.25
    assert (
        value(after, "opencdp_processor_events_total") - value(before, "opencdp_processor_events_total") == 10
    )


# --- Counters of other processes ---------------------------------------------------------------


@pytest.fixture
def multiproc_server(
    env_for: dict[str, str], settings: Settings, tmp_path: Path
) -> Iterator[tuple[Server, dict[str, str]]]:
    if not settings.is_sqlite:
        pytest.skip("the multiprocess path does not depend on the engine: one real server is enough")
    env = {**env_for, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "OPENCDP_METRICS_PUBLIC": "1"}
    (tmp_path / "prom").mkdir()
    (tmp_path / "prom" / "counter_999999.db").write_bytes(b"stale")  # serve empties it at start
    server = Server(env, tmp_path / "server.log")
    yield server.start(), env
    server.stop()


@pytest.mark.server
def test_counters_of_another_process_show_on_the_servers_metrics(
    multiproc_server: tuple[Server, dict[str, str]], settings: Settings, tmp_path: Path
) -> None:
    server, env = multiproc_server
    engine_settings = Settings(data_dir=settings.data_dir, database_url=settings.database_url)
    from opencdp.store.database import open_database

    engine = open_database(engine_settings)
    write_key = create_source(engine, "app")[1]
    engine.dispose()
    assert not (tmp_path / "prom" / "counter_999999.db").exists()
    track = {"type": "track", "userId": "u1", "event": "Opened"}
    assert httpx.post(
        server.url + "/v1/batch", json={"batch": [track] * 2}, headers=basic(write_key)
    ).is_success
    deadline = time.monotonic() + 30  # serve's own processor child counts the 2 events it applies
    while value(samples(httpx.get(server.url + "/metrics").text), "opencdp_processor_events_total") != 2:
        assert time.monotonic() < deadline, "serve's processor did not report the 2 events"
        time.sleep(0.1)
    # another process sharing the directory (a worker)
    child = "from opencdp import metrics; metrics.record_processed(7); metrics.record_stage('profiles', 1.5)"
    subprocess.run([sys.executable, "-c", child], env=env, check=True, timeout=60)

    scrape = samples(httpx.get(server.url + "/metrics").text)
    assert value(scrape, "opencdp_events_accepted_total", source="app") == 2  # the server's own
    assert value(scrape, "opencdp_processor_events_total") == 2 + 7  # its processor's and the other's
    assert value(scrape, "opencdp_processor_stage_seconds_total", stage="profiles") == 1.5
    assert value(scrape, "opencdp_database_up") == 1  # and the database gauges in the same registry
    assert ("opencdp_processor_lag_events", frozenset()) in scrape


def test_serve_makes_and_removes_a_private_multiprocess_dir(tmp_path: Path) -> None:
    from opencdp import metrics

    env = {k: v for k, v in os.environ.items() if k != metrics.MULTIPROC_ENV}
    script = (
        "import os; from opencdp import metrics; path, own = metrics.prepare_multiprocess_dir(); "
        "metrics.record_processed(3); "
        "print(os.environ['PROMETHEUS_MULTIPROC_DIR'] == str(path), own, len(list(path.glob('*.db'))) > 0); "
        "metrics.remove_multiprocess_dir(path); print(path.exists())"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "True", "False"]


# --- opencdp status ----------------------------------------------------------------------------


def test_status_for_an_operator_and_for_machines(settings: Settings, env_for: dict[str, str]) -> None:
    cdp = OpenCDP(settings, process=False)
    try:
        sid = source_id(cdp.engine)
        received = datetime.now(UTC) - timedelta(minutes=5)
        rows = [
            normalise({"type": "track", "userId": f"u{i}", "event": "E"}, Envelope(received), sid, Limits())
            for i in range(3)
        ]
        LogAppender.for_engine(cdp.engine, RULES).append_committed(cdp.engine, rows)
        runner = CliRunner()
        env = {k: env_for[k] for k in ("OPENCDP_DATABASE_URL", "OPENCDP_DATA_DIR", "OPENCDP_LOG_LEVEL")}

        behind = runner.invoke(main, ["status", "--json", "--sample", "0"], env=env)
        assert behind.exit_code == 1, behind.output  # degraded
        status = orjson.loads(behind.output)
        assert status["status"] == "degraded" and "processing is 30" in status["reasons"][0]
        assert status["events"] == {"count": 3, "last_id": status["events"]["last_id"]}
        assert status["processing"]["events_waiting"] == 3 and status["processing"]["checkpoint"] == 0
        assert status["processing"]["lag_seconds"] >= 299

        table = runner.invoke(main, ["status", "--sample", "0"], env=env)
        assert table.exit_code == 1
        assert "degraded" in table.output and "opencdp worker" in table.output
        assert "processor checkpoint" in table.output and "3 events" in table.output

        process(cdp.engine)
        caught_up = runner.invoke(main, ["status", "--json", "--sample", "0.2"], env=env)
        assert caught_up.exit_code == 0, caught_up.output
        status = orjson.loads(caught_up.output)
        assert status["status"] == "ok" and status["reasons"] == []
        assert status["processing"]["checkpoint"] == status["events"]["last_id"]
        assert status["processing"]["events_per_second"] == 0.0  # nothing moved during the sample
        assert status["processing"]["catch_up_seconds"] == 0.0
        table = runner.invoke(main, ["status", "--sample", "0.2"], env=env)
        assert table.exit_code == 0 and "ok" in table.output and "events/s" in table.output
    finally:
        cdp.engine.dispose()
