"""Prediction models over the admin API: list, one model's card, define a custom goal, and fit and
score now (in the background: 202, then poll the model). Reading needs `read`, changing `admin`."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Path, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from opencdp.api.audit import audit
from opencdp.api.auth import AdminKey, ReadKey, storable
from opencdp.api.errors import ApiError
from opencdp.predict import store
from opencdp.predict.runner import NAME_PATTERN, define_goal, ensure_builtin, run_in_background, running
from opencdp.system import OpenCDP

router = APIRouter(prefix="/api", tags=["predictions"])


#: A model's name: a built-in kind or a goal's name (goal_<event>_<days>d or one given).
ModelName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,99}$", description="clv, churn, goal_…")]


class GoalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: Annotated[str, AfterValidator(storable)] = Field(
        ..., min_length=1, max_length=200, description="The goal event, e.g. 'Trial Started'"
    )
    days: int = Field(..., ge=1, le=3650, description="…done within this many days")
    name: str | None = Field(
        None, pattern=NAME_PATTERN, description="Model name [default: goal_<event>_<days>d]"
    )


def _engine(request: Request) -> sa.Engine:
    cdp: OpenCDP = request.app.state.cdp
    return cdp.engine


def _model(engine: sa.Engine, name: str) -> store.ModelRecord:
    with engine.connect() as conn:
        record = store.find_model(conn, name)
    if record is None:
        raise ApiError(404, "not_found", f"there is no prediction model named {name!r}")
    return record


def _out(record: store.ModelRecord, running: bool) -> dict[str, Any]:
    return record.summary() | {"features": record.features, "running": running}


@router.get("/predictions", summary="Prediction models with their status and held-out quality")
def list_models(request: Request, _key: ReadKey) -> list[dict[str, Any]]:
    engine = _engine(request)
    ensure_builtin(engine)
    now_running = running()
    with engine.connect() as conn:
        return [_out(r, r.name in now_running) for r in store.all_models(conn)]


@router.get("/predictions/{name}", summary="One model: window, features, quality, traits, last scoring")
def get_model(request: Request, _key: ReadKey, name: ModelName) -> dict[str, Any]:
    engine = _engine(request)
    ensure_builtin(engine)
    return _out(_model(engine, name), name in running())


@router.post("/predictions/goals", status_code=201, summary="Define a custom goal model")
def create_goal(request: Request, key: AdminKey, body: GoalIn) -> dict[str, Any]:
    engine = _engine(request)
    try:
        record = define_goal(engine, body.event, body.days, body.name)
    except ValueError as error:
        raise ApiError(400, "invalid", str(error), [{"field": "name", "problem": str(error)}]) from None
    audit(request, key, "prediction.define", "prediction", record.name)
    return _out(record, False)


@router.post("/predictions/{name}/run", status_code=202, summary="Fit and score now, in the background")
def run_model(request: Request, key: AdminKey, name: ModelName) -> dict[str, Any]:
    engine = _engine(request)
    ensure_builtin(engine)
    record = _model(engine, name)
    started = run_in_background(engine, name)
    audit(request, key, "prediction.run", "prediction", name)
    return _out(record, True) | {"started": started}


@router.delete("/predictions/{name}", status_code=204, summary="Delete a model and the traits it wrote")
def delete_model(request: Request, key: AdminKey, name: ModelName) -> None:
    engine = _engine(request)
    _model(engine, name)
    store.delete_model(engine, name)
    audit(request, key, "prediction.delete", "prediction", name)
