"""Experiences over the admin API: what each placement of the website shows to whom
(docs/personalisation.md). Create (disabled until enabled), change (a new version), enable,
disable, delete, list and read.

Reading needs the `read` scope, changing the `admin` scope (as for segments and journeys). The body
of a create or change is the experience definition itself; an invalid one is refused with 400 and
`problems`, each with the exact `path` in the definition (`variants.1.audience.and.0.value`) and
the `problem`. The audit log gets ids, names, placements and versions, never content.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Body, Path, Query, Request
from pydantic import BaseModel, Field

from opencdp.api.activation import Document
from opencdp.api.auth import AdminKey, ReadKey
from opencdp.api.decide import invalidate_decisions
from opencdp.api.errors import ApiError
from opencdp.api.schemas import error_responses
from opencdp.personalise import store
from opencdp.personalise.experiences import ExperienceError
from opencdp.personalise.store import ExperienceNotSaved
from opencdp.system import OpenCDP

router = APIRouter(prefix="/api", tags=["experiences"])

NameOrId = Annotated[
    str, Path(min_length=1, max_length=200, description="The experience's name or its numeric id")
]
DEFINITION = (
    "An experience definition: name, placement, variants, and optionally description, priority, "
    "audience, strategy, holdout_percent, default, fallback, goal (docs/personalisation.md)"
)
EXAMPLE: dict[str, Any] = {
    "name": "winter boots hero",
    "placement": "home-hero",
    "priority": 10,
    "strategy": "first_match",
    "variants": [
        {
            "name": "boots",
            "audience": {"trait": "favourite_category", "op": "eq", "value": "shoes"},
            "content": {"html": "<h2>Boots for the snow</h2>"},
        },
        {"name": "everyone else", "content": {"html": "<h2>Winter sale</h2>"}},
    ],
    "holdout_percent": 10,
    "fallback": {"html": "<h2>Welcome</h2>"},
    "goal": "Order Completed",
}


class Problem(BaseModel):
    path: str = Field(..., description='Where in the definition, e.g. "variants.1.audience.and.0.value"')
    problem: str


class ExperienceOut(BaseModel):
    id: int
    name: str
    placement: str
    enabled: bool = Field(..., description="Only enabled experiences decide")
    version: int = Field(..., description="Grows with every change; logged with each decision")
    strategy: Literal["first_match", "weighted", "highest_score"]
    holdout_percent: float
    priority: int
    variants: list[str] = Field(..., description="The variants' names, in order")
    definition: dict[str, Any] = Field(..., description="The stored definition, defaults spelt out")
    created_by: str | None = Field(..., description='"key:<id>", "cli", "user:<id>"')
    created_at: str
    updated_at: str


class InvalidExperience(ApiError):
    """400 whose body also lists `problems` with exact paths into the definition."""

    def __init__(self, exc: ExperienceError) -> None:
        errors = [{"field": p["path"] or "body", "problem": p["problem"]} for p in exc.problems]
        super().__init__(400, "invalid_experience", str(exc), errors)
        self.problems = exc.problems

    def body(self) -> dict[str, Any]:
        return {**super().body(), "problems": self.problems}


def _responses() -> dict[int | str, dict[str, Any]]:
    return {
        **error_responses(),
        404: {"description": "No experience with this name or id"},
        409: {"description": "Another experience has this name"},
    }


def _engine(request: Request) -> sa.Engine:
    cdp: OpenCDP = request.app.state.cdp
    return cdp.engine


def _error(exc: ExperienceNotSaved | ExperienceError) -> ApiError:
    if isinstance(exc, ExperienceError):
        return InvalidExperience(exc)
    code = {404: "not_found", 409: "conflict"}.get(exc.status, "invalid_request")
    return ApiError(exc.status, code, str(exc), [{"field": exc.field, "problem": exc.message}])


DefinitionBody = Annotated[Document, Body(..., description=DEFINITION, examples=[EXAMPLE])]


@router.get(
    "/experiences",
    response_model=list[ExperienceOut],
    summary="Experiences, by placement and name",
    responses=_responses(),
)
def list_experiences(
    request: Request,
    _key: ReadKey,
    placement: Annotated[str | None, Query(max_length=100, description="Only this placement's")] = None,
) -> list[dict[str, Any]]:
    with _engine(request).connect() as conn:
        return store.list_all(conn, placement)


@router.post(
    "/experiences",
    response_model=ExperienceOut,
    status_code=201,
    summary="Create an experience (disabled until enabled, unless ?enabled=true)",
    responses={**_responses(), 400: {"description": "Invalid definition: `problems` name the paths"}},
)
def create_experience(
    request: Request,
    key: AdminKey,
    definition: DefinitionBody,
    enabled: Annotated[bool, Query(description="Start deciding at once")] = False,
) -> dict[str, Any]:
    try:
        with _engine(request).begin() as conn:
            out = store.create(conn, definition, actor=key.actor, enabled=enabled)
    except (ExperienceNotSaved, ExperienceError) as exc:
        raise _error(exc) from None
    invalidate_decisions(request)
    return out


@router.get(
    "/experiences/{name_or_id}",
    response_model=ExperienceOut,
    summary="One experience",
    responses=_responses(),
)
def get_experience(request: Request, _key: ReadKey, name_or_id: NameOrId) -> dict[str, Any]:
    try:
        with _engine(request).connect() as conn:
            return store.get(conn, name_or_id)
    except ExperienceNotSaved as exc:
        raise _error(exc) from None


@router.put(
    "/experiences/{name_or_id}",
    response_model=ExperienceOut,
    summary="Replace an experience's definition (a new version; enabled stays as it was)",
    responses={**_responses(), 400: {"description": "Invalid definition: `problems` name the paths"}},
)
def update_experience(
    request: Request, key: AdminKey, name_or_id: NameOrId, definition: DefinitionBody
) -> dict[str, Any]:
    try:
        with _engine(request).begin() as conn:
            out = store.update(conn, name_or_id, definition, actor=key.actor)
    except (ExperienceNotSaved, ExperienceError) as exc:
        raise _error(exc) from None
    invalidate_decisions(request)
    return out


@router.delete(
    "/experiences/{name_or_id}",
    status_code=204,
    summary="Delete an experience (its logged decisions stay in the event log)",
    responses=_responses(),
)
def delete_experience(request: Request, key: AdminKey, name_or_id: NameOrId) -> None:
    try:
        with _engine(request).begin() as conn:
            store.delete(conn, name_or_id, actor=key.actor)
    except ExperienceNotSaved as exc:
        raise _error(exc) from None
    invalidate_decisions(request)


def _switch(request: Request, key: AdminKey, name_or_id: str, enabled: bool) -> dict[str, Any]:
    try:
        with _engine(request).begin() as conn:
            out = store.set_enabled(conn, name_or_id, enabled, actor=key.actor)
    except ExperienceNotSaved as exc:
        raise _error(exc) from None
    invalidate_decisions(request)
    return out


@router.post(
    "/experiences/{name_or_id}/enable",
    response_model=ExperienceOut,
    summary="Enable: the experience decides from now on",
    responses=_responses(),
)
def enable_experience(request: Request, key: AdminKey, name_or_id: NameOrId) -> dict[str, Any]:
    return _switch(request, key, name_or_id, True)


@router.post(
    "/experiences/{name_or_id}/disable",
    response_model=ExperienceOut,
    summary="Disable: the experience stops deciding (its placement falls to the next one)",
    responses=_responses(),
)
def disable_experience(request: Request, key: AdminKey, name_or_id: NameOrId) -> dict[str, Any]:
    return _switch(request, key, name_or_id, False)
