"""Segment performance numbers, and the uplift report and segment performance over the API and CLI
(both engines)."""

from __future__ import annotations

from typing import Any

import orjson
from click.testing import CliRunner
from fastapi.testclient import TestClient

from opencdp.access.keys import create_api_key
from opencdp.cli import main
from opencdp.personalise.segment_performance import segment_performance
from opencdp.system import OpenCDP
from tests import segment_performance_scenario
from tests.test_uplift import _small
from tests.uplift_scenario import EXPERIENCE


def test_segment_performance_counts_and_flags_the_low_cell(system: OpenCDP) -> None:
    now = segment_performance_scenario.fill(system.engine)
    view = segment_performance(system.engine, now=now, min_visitors=30)
    assert view["categories"] == ["bags", "shoes"]
    shoes = view["overall"]["shoes"]
    assert (shoes["visitors"], shoes["converters"]) == (200, 45)
    assert shoes["revenue"] == 4500.0
    rows = {s["segment"]: s for s in view["segments"]}
    gold, silver = rows["gold"]["cells"], rows["silver"]["cells"]
    assert (gold["shoes"]["visitors"], gold["shoes"]["converters"]) == (100, 40)
    assert (gold["bags"]["visitors"], gold["bags"]["converters"], gold["bags"]["revenue"]) == (50, 10, 300.0)
    assert (silver["shoes"]["visitors"], silver["shoes"]["converters"]) == (
        100,
        5,
    )  # orders before the view: no
    assert silver["bags"] is None
    assert silver["shoes"]["low"] and silver["shoes"]["conversion_high"] < shoes["conversion_rate"]
    assert not gold["shoes"]["low"] and not gold["bags"]["low"]
    assert view["low_cells"] == 1
    # with a higher bar for "enough visitors" nothing is flagged
    assert segment_performance(system.engine, now=now, min_visitors=101)["low_cells"] == 0
    assert segment_performance(system.engine, now=now, days=5)["categories"] == []


def _get(client: TestClient, key: str, url: str, **params: Any) -> Any:
    return client.get(url, params=params, headers={"Authorization": f"Bearer {key}"})


def test_uplift_and_segment_performance_over_the_api(cdp: OpenCDP, client: TestClient) -> None:
    _small(cdp)
    segment_performance_scenario.fill(cdp.engine)
    read = create_api_key(cdp.engine, "read")[1]
    metrics = create_api_key(cdp.engine, "metrics")[1]
    got = _get(client, read, f"/api/experiences/{EXPERIENCE}/uplift")
    assert got.status_code == 200, got.text
    row = next(r for r in got.json()["variants"] if r["variant"] == "A")
    assert row["treated"]["visitors"] == 2 and "small_sample" in row["flags"]
    longer = _get(
        client, read, f"/api/experiences/{EXPERIENCE}/uplift", attribution_days=8, goal="Order Completed"
    )
    assert next(r for r in longer.json()["variants"] if r["variant"] == "A")["treated"]["converters"] == 2
    assert _get(client, read, "/api/experiences/nope/uplift").status_code == 404
    assert _get(client, read, f"/api/experiences/{EXPERIENCE}/uplift", segment="nope").status_code == 404
    assert _get(client, read, f"/api/experiences/{EXPERIENCE}/uplift", days=0).status_code == 400
    assert _get(client, metrics, f"/api/experiences/{EXPERIENCE}/uplift").status_code == 403
    assert client.get(f"/api/experiences/{EXPERIENCE}/uplift").status_code == 401
    perf = _get(client, read, "/api/reports/segment-performance", min_visitors=30)
    assert perf.status_code == 200, perf.text
    assert perf.json()["low_cells"] == 1
    assert _get(client, metrics, "/api/reports/segment-performance").status_code == 403
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/experiences/{name}/uplift" in paths and "/api/reports/segment-performance" in paths


def _cli(system: OpenCDP, *args: str) -> Any:
    env = {
        "OPENCDP_DATABASE_URL": system.settings.database_url,
        "OPENCDP_DATA_DIR": str(system.settings.data_dir),
        "OPENCDP_LOG_LEVEL": "WARNING",
    }
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_uplift_and_segment_performance_on_the_command_line(system: OpenCDP) -> None:
    _small(system)
    segment_performance_scenario.fill(system.engine)
    table = _cli(system, "experiences", "uplift", EXPERIENCE)
    assert table.exit_code == 0, table.output
    assert "small_sample" in table.output and "treated n" in table.output
    as_json = _cli(system, "experiences", "uplift", EXPERIENCE, "--json", "--goal", "Order Completed")
    report = orjson.loads(as_json.output)
    assert report["experience"] == EXPERIENCE and report["goal"] == "Order Completed"
    missing = _cli(system, "experiences", "uplift", "nope")
    assert missing.exit_code == 1 and "no experience named 'nope'" in missing.output
    perf = _cli(system, "reports", "segment-performance", "--min-visitors", "30")
    assert perf.exit_code == 0, perf.output
    assert "LOW" in perf.output and "silver" in perf.output
    data = orjson.loads(_cli(system, "reports", "segment-performance", "--json").output)
    assert data["categories"] == ["bags", "shoes"]
