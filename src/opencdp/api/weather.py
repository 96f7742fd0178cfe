"""Weather by region and day for decisions' context conditions: `POST /api/weather` (admin) stores
rows, `GET /api/weather` reads them. The CLI twin is `opencdp weather import FILE.csv`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from opencdp.api.audit import audit
from opencdp.api.auth import AdminKey, ReadKey
from opencdp.api.errors import ApiError
from opencdp.personalise.weather import WeatherRowError, listing, parse_row, store
from opencdp.system import OpenCDP

router = APIRouter(prefix="/api/weather", tags=["weather"])
MAX_ROWS = 10_000


class WeatherUpload(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "rows": [
                        {"region": "DE-BE", "day": "2026-12-07", "condition": "rain", "temperature_c": 4.5},
                        {"region": "DE", "day": "2026-12-07", "condition": "cloudy", "temperature_c": 5},
                    ]
                }
            ]
        }
    )
    rows: list[dict[str, Any]] = Field(
        ...,
        min_length=1,
        max_length=MAX_ROWS,
        description="region (ISO 3166 code or subdivision, e.g. DE or DE-BE), day (YYYY-MM-DD), "
        "condition (e.g. rain, sunny), temperature_c (optional)",
    )


class WeatherRow(BaseModel):
    region: str
    day: str
    condition: str
    temperature_c: float | None


class WeatherStored(BaseModel):
    stored: int = Field(..., description="Rows written (a region and day already stored is replaced)")


class WeatherList(BaseModel):
    rows: list[WeatherRow]


def _cdp(request: Request) -> OpenCDP:
    return request.app.state.cdp


@router.post("", response_model=WeatherStored, summary="Store weather rows (upsert by region and day)")
def upload(request: Request, key: AdminKey, body: WeatherUpload) -> dict[str, Any]:
    parsed = []
    for index, raw in enumerate(body.rows):
        try:
            parsed.append(parse_row(raw))
        except WeatherRowError as exc:
            field = f"rows.{index}.{exc.field}"
            raise ApiError(
                400,
                "invalid_request",
                f"row {index + 1}: {exc}; nothing was stored",
                [{"field": field, "problem": exc.problem}],
            ) from None
    with _cdp(request).engine.begin() as conn:
        count = store(conn, parsed)
    audit(request, key, "weather.import", detail={"rows": count})
    return {"stored": count}


@router.get("", response_model=WeatherList, summary="Stored weather by region and day")
def read(
    request: Request,
    _key: ReadKey,
    region: Annotated[str | None, Query(max_length=64, description="e.g. DE or DE-BE")] = None,
    day: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    with _cdp(request).engine.connect() as conn:
        return {"rows": listing(conn, region, day, limit)}
