"""Weather by region and day: `opencdp weather import/list`, `POST/GET /api/weather` and the lookup
decisions use; both engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient

from opencdp.cli import main
from opencdp.personalise.weather import WeatherRowError, lookup, parse_row
from opencdp.store.schema import weather
from opencdp.system import OpenCDP


def _cli(cdp: OpenCDP, *args: str) -> Result:
    env = {
        "OPENCDP_DATABASE_URL": cdp.settings.database_url,
        "OPENCDP_DATA_DIR": str(cdp.settings.data_dir),
        "OPENCDP_LOG_LEVEL": "WARNING",
    }
    return CliRunner().invoke(main, list(args), env=env)


def _stored(cdp: OpenCDP) -> dict[tuple[str, str], tuple[str, float | None]]:
    with cdp.engine.connect() as conn:
        return {
            (r.region, r.day): (r.condition, r.temperature_c)
            for r in conn.execute(
                sa.select(weather.c.region, weather.c.day, weather.c.condition, weather.c.temperature_c)
            )
        }


def test_import_list_and_reimport(cdp: OpenCDP, tmp_path: Path) -> None:
    first = tmp_path / "weather.csv"
    first.write_text(
        "\ufeffregion,day,condition,temperature_c\n"
        "DE,2026-12-07,Cloudy,5\n"
        "de-be,2026-12-07,rain,4.5\n"
        "FR,2026-12-07,sunny,\n"
        "DE,2026-12-08,snow,-1.5\n",
        encoding="utf-8",
    )
    out = _cli(cdp, "weather", "import", str(first), "--no-progress")
    assert out.exit_code == 0, out.output
    assert "imported 4 weather rows from weather.csv" in out.output
    assert _stored(cdp) == {
        ("DE", "2026-12-07"): ("cloudy", 5.0),
        ("DE-BE", "2026-12-07"): ("rain", 4.5),
        ("FR", "2026-12-07"): ("sunny", None),
        ("DE", "2026-12-08"): ("snow", -1.5),
    }
    # a second file replaces a stored region and day (a later row of the same file wins) and adds
    second = tmp_path / "update.csv"
    second.write_text(
        "day,region,condition\n2026-12-07,DE,fog\n2026-12-07,DE,storm\n2026-12-09,AT,clear\n",
        encoding="utf-8",
    )
    assert _cli(cdp, "weather", "import", str(second), "--no-progress").exit_code == 0
    stored = _stored(cdp)
    assert len(stored) == 5
    assert stored[("DE", "2026-12-07")] == ("storm", None) and stored[("AT", "2026-12-09")] == ("clear", None)

    listed = _cli(cdp, "weather", "list", "--region", "de")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines() == ["DE\t2026-12-08\tsnow\t-1.5", "DE\t2026-12-07\tstorm\t"]
    assert len(_cli(cdp, "weather", "list").stdout.splitlines()) == 5
    assert "no weather stored for XX" in _cli(cdp, "weather", "list", "--region", "XX").output

    with cdp.engine.connect() as conn:
        found = lookup(conn, ["de-be", "DE"], "2026-12-07")
        fallback = lookup(conn, ["AT-9", "AT"], "2026-12-09")
        none = lookup(conn, ["IT"], "2026-12-07")
    assert found is not None and (found.region, found.condition, found.temperature_c) == (
        "DE-BE",
        "rain",
        4.5,
    )
    assert fallback is not None and fallback.region == "AT"
    assert none is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("region,day,condition\nDE,2026-12-07,rain\nDE,2026-13-01,rain\n", "line 3: day: must be a date"),
        ("region,day,condition\nDE,2026-12-07,rain\n,2026-12-08,rain\n", "line 3: region: is required"),
        (
            "region,day,condition,temperature_c\nDE,2026-12-07,rain,warm\n",
            "line 2: temperature_c: must be a number",
        ),
        (
            "region,day,condition,temperature_c\nDE,2026-12-07,rain,99\n",
            "line 2: temperature_c: must be between",
        ),
        ("region,day,condition\nDE,2026-12-07,rain,extra\n", "line 2: 4 cells, the header has 3"),
        ("region,date,condition\nDE,2026-12-07,rain\n", "line 1: the header lacks day"),
    ],
)
def test_a_bad_row_stops_the_import_with_its_line(
    cdp: OpenCDP, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    out = _cli(cdp, "weather", "import", str(path), "--no-progress")
    assert out.exit_code == 1
    assert message in out.output and "nothing was imported" in out.output
    assert _stored(cdp) == {}  # all or nothing


def test_a_large_file_with_progress(cdp: OpenCDP, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    rows = [f"R{i % 50},2026-{1 + i // 1000 % 12:02d}-{1 + i % 28:02d},rain,{i % 30}" for i in range(3000)]
    path.write_text("region,day,condition,temperature_c\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out = _cli(cdp, "weather", "import", str(path))
    assert out.exit_code == 0, out.output
    assert "imported 3,000 weather rows" in out.output
    keys = {(f"R{i % 50}", f"2026-{1 + i // 1000 % 12:02d}-{1 + i % 28:02d}") for i in range(3000)}
    assert len(_stored(cdp)) == len(keys)


def test_parse_row_names_the_field() -> None:
    assert parse_row({"region": " at ", "day": "2026-01-02", "condition": "Rain ", "temperature_c": 3}) == {
        "region": "AT",
        "day": "2026-01-02",
        "condition": "rain",
        "temperature_c": 3.0,
    }
    for raw, field in (
        ({"region": "AT", "day": "2026-1-2", "condition": "rain"}, "day"),
        ({"region": "AT", "day": "2026-01-02"}, "condition"),
        ({"region": 7, "day": "2026-01-02", "condition": "rain"}, "region"),
        ({"region": "AT", "day": "2026-01-02", "condition": "rain", "temperature_c": True}, "temperature_c"),
        ({"region": "AT", "day": "2026-01-02", "condition": "x" * 33}, "condition"),
        ({"region": "A\x00T", "day": "2026-01-02", "condition": "rain"}, "region"),
        ({"region": "AT", "day": "2026-01-02", "condition": "r\ud800"}, "condition"),
    ):
        with pytest.raises(WeatherRowError) as caught:
            parse_row(raw)
        assert caught.value.field == field, raw


def test_weather_api(client: TestClient, cdp: OpenCDP, admin_key: str) -> None:
    from opencdp.access.keys import create_api_key

    admin = {"Authorization": f"Bearer {admin_key}"}
    read = {"Authorization": f"Bearer {create_api_key(cdp.engine, 'read')[1]}"}
    rows: list[dict[str, Any]] = [
        {"region": "DE-BE", "day": "2026-12-07", "condition": "rain", "temperature_c": 4.5},
        {"region": "DE", "day": "2026-12-07", "condition": "cloudy", "temperature_c": "5"},
        {"region": "DE", "day": "2026-12-08", "condition": "snow"},
    ]
    stored = client.post("/api/weather", json={"rows": rows}, headers=admin)
    assert stored.status_code == 200, stored.text
    assert stored.json() == {"stored": 3}
    assert client.post("/api/weather", json={"rows": rows[:1]}, headers=read).status_code == 403

    bad = client.post(
        "/api/weather",
        json={"rows": [rows[0], {"region": "DE", "day": "07.12.2026", "condition": "rain"}]},
        headers=admin,
    )
    assert bad.status_code == 400
    body = bad.json()
    assert body["error"] == "invalid_request"
    assert body["message"].startswith("row 2: day: must be a date")
    assert body["errors"] == [
        {"field": "rows.1.day", "problem": "must be a date as YYYY-MM-DD, got '07.12.2026'"}
    ]
    assert client.post("/api/weather", json={"rows": []}, headers=admin).status_code == 400
    nul = client.post(
        "/api/weather",
        json={"rows": [{"region": "D\u0000E", "day": "2026-12-07", "condition": "rain"}]},
        headers=admin,
    )
    assert nul.status_code == 400 and nul.json()["errors"][0]["field"] == "rows.0.region"

    by_region = client.get("/api/weather", params={"region": "de"}, headers=read)
    assert by_region.status_code == 200, by_region.text
    assert [(r["day"], r["condition"], r["temperature_c"]) for r in by_region.json()["rows"]] == [
        ("2026-12-08", "snow", None),
        ("2026-12-07", "cloudy", 5.0),
    ]
    by_day = client.get("/api/weather", params={"day": "2026-12-07"}, headers=read).json()["rows"]
    assert {r["region"] for r in by_day} == {"DE", "DE-BE"}
    assert client.get("/api/weather", params={"day": "7 Dec"}, headers=read).status_code == 400
