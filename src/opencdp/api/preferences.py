"""The preference centre and surveys over the admin API: links that open a customer's preference
centre (for e-mail footers, journeys and support staff), and surveys defined as data.

A link is created with the `export` scope (opening it shows and exports the person's data, as the
privacy export does) and its URL is answered once; only its hash is kept. Surveys are read with
`read` and changed with `admin`; an invalid definition is refused with 400 and `problems`, each
with its exact path (`questions.1.options`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request, Response
from pydantic import AfterValidator, BaseModel, Field

from opencdp.access.audit import record
from opencdp.accounts import survey_store
from opencdp.accounts.preference_links import DEFAULT_HOURS, MAX_HOURS, PATH, create_link
from opencdp.accounts.surveys import SurveyError
from opencdp.api.activation import Document
from opencdp.api.auth import AdminKey, ExportKey, ReadKey, storable
from opencdp.api.errors import ApiError
from opencdp.api.schemas import error_responses
from opencdp.profiles.reader import ProfileNotFound, find_profile_id
from opencdp.system import OpenCDP

router = APIRouter(prefix="/api", tags=["preference centre"])
Text = Annotated[str, AfterValidator(storable)]
SurveyName = Annotated[str, Path(min_length=1, max_length=100, description="The survey's name")]
EXAMPLE: dict[str, Any] = {
    "name": "style-quiz",
    "title": "Tell us your style",
    "description": "Two questions, ten seconds.",
    "questions": [
        {
            "key": "favourite_colour",
            "text": "Which colour do you wear most?",
            "kind": "single",
            "options": ["black", "blue", "red"],
            "required": True,
        },
        {"key": "budget", "text": "Budget per month", "kind": "scale", "min": 1, "max": 5},
    ],
}


class LinkIn(BaseModel):
    type: Text = Field(..., min_length=1, description="Identifier type, e.g. email or user_id")
    value: Text = Field(..., min_length=1)
    hours: int = Field(DEFAULT_HOURS, ge=1, le=MAX_HOURS, description="How long the link works")


class LinkOut(BaseModel):
    url: str = Field(..., description="The preference centre for this person; shown only now")
    profile_id: str
    expires_at: datetime


class SurveyOut(BaseModel):
    id: int
    name: str
    enabled: bool = Field(..., description="Only enabled surveys are shown to customers")
    definition: dict[str, Any]
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class InvalidSurvey(ApiError):
    """400 whose body also lists `problems` with exact paths into the definition."""

    def __init__(self, exc: SurveyError) -> None:
        problems = [{"path": path, "problem": problem} for path, problem in exc.problems]
        super().__init__(
            400,
            "invalid_survey",
            str(exc),
            [{"field": p["path"] or "body", "problem": p["problem"]} for p in problems],
        )
        self.problems = problems

    def body(self) -> dict[str, Any]:
        return {**super().body(), "problems": self.problems}


def _cdp(request: Request) -> OpenCDP:
    cdp: OpenCDP = request.app.state.cdp
    return cdp


def public_base(cdp: OpenCDP, request: Request) -> str:
    """Where customers reach this server: OPENCDP_PUBLIC_URL, else the address of this request."""
    return cdp.settings.public_url or str(request.base_url).rstrip("/")


@router.post(
    "/preferences/links",
    response_model=LinkOut,
    status_code=201,
    summary="A link to a person's preference centre (consent, interests, channel, surveys, their data)",
    responses={**error_responses(), 404: {"description": "No profile has this identifier"}},
)
def new_link(request: Request, key: ExportKey, body: LinkIn) -> dict[str, Any]:
    cdp = _cdp(request)
    try:
        pid = find_profile_id(cdp.engine, cdp.processor.rules, body.type, body.value)
        token, expires = create_link(cdp.engine, pid, body.hours, key.actor)
    except ProfileNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    record(cdp.engine, key.actor, "preferences.link", "profile", pid, {"hours": body.hours})
    return {"url": f"{public_base(cdp, request)}{PATH}{token}", "profile_id": pid, "expires_at": expires}


def _not_found(exc: survey_store.SurveyNotFound) -> ApiError:
    return ApiError(404, "not_found", str(exc))


@router.get("/surveys", response_model=list[SurveyOut], summary="Surveys, by name")
def list_surveys(request: Request, _key: ReadKey) -> list[dict[str, Any]]:
    return survey_store.list_surveys(_cdp(request).engine)


@router.get("/surveys/{name}", response_model=SurveyOut, summary="One survey")
def get_survey(request: Request, _key: ReadKey, name: SurveyName) -> dict[str, Any]:
    try:
        return survey_store.get_survey(_cdp(request).engine, name)
    except survey_store.SurveyNotFound as exc:
        raise _not_found(exc) from None


@router.post(
    "/surveys",
    response_model=SurveyOut,
    status_code=201,
    summary="Create a survey, or replace the definition of the one with this name (200)",
    responses={**error_responses(), 400: {"description": "Invalid definition: `problems` name the paths"}},
)
def save_survey(
    request: Request,
    response: Response,
    key: AdminKey,
    definition: Annotated[Document, Body(..., examples=[EXAMPLE])],
) -> dict[str, Any]:
    cdp = _cdp(request)
    try:
        saved, created = survey_store.save_survey(cdp.engine, definition, key.actor)
    except SurveyError as exc:
        raise InvalidSurvey(exc) from None
    response.status_code = 201 if created else 200
    record(cdp.engine, key.actor, "survey.create" if created else "survey.update", "survey", saved["name"])
    return saved


def _switch(request: Request, key: Any, name: str, enabled: bool) -> dict[str, Any]:
    cdp = _cdp(request)
    try:
        out = survey_store.set_enabled(cdp.engine, name, enabled)
    except survey_store.SurveyNotFound as exc:
        raise _not_found(exc) from None
    record(cdp.engine, key.actor, "survey.enable" if enabled else "survey.disable", "survey", name)
    return out


@router.post("/surveys/{name}/enable", response_model=SurveyOut, summary="Show the survey to customers")
def enable_survey(request: Request, key: AdminKey, name: SurveyName) -> dict[str, Any]:
    return _switch(request, key, name, True)


@router.post("/surveys/{name}/disable", response_model=SurveyOut, summary="Stop showing the survey")
def disable_survey(request: Request, key: AdminKey, name: SurveyName) -> dict[str, Any]:
    return _switch(request, key, name, False)


@router.delete("/surveys/{name}", status_code=204, summary="Delete a survey (answers stay on the profiles)")
def delete_survey(request: Request, key: AdminKey, name: SurveyName) -> Response:
    cdp = _cdp(request)
    try:
        survey_store.remove_survey(cdp.engine, name)
    except survey_store.SurveyNotFound as exc:
        raise _not_found(exc) from None
    record(cdp.engine, key.actor, "survey.delete", "survey", name)
    return Response(status_code=204)
