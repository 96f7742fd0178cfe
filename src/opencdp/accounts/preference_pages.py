"""The hosted preference centre: the pages a customer opens from a link (`preference_links`) to see
and change their consent per purpose, interests and preferred channel, answer surveys, download
their data and erase it. Server-rendered, no script, no CDN; every form carries the link's CSRF
token; the token in the URL is never sent on (`Referrer-Policy: no-referrer`) and pages are not
cached (they show personal data)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from opencdp.access.audit import record
from opencdp.accounts.preference_links import PATH, LinkInvalid, PreferenceLink, open_link, revoke_links
from opencdp.accounts.preferences import (
    PreferenceError,
    PreferenceOptions,
    current_preferences,
    preference_events,
    survey_events,
    wanted_from_form,
)
from opencdp.accounts.survey_store import SurveyNotFound, enabled_survey, list_surveys
from opencdp.accounts.surveys import Survey, SurveyError, parse_answers
from opencdp.api.responses import FastJSONResponse
from opencdp.privacy.erasure import erase_person
from opencdp.privacy.requests import export_profile
from opencdp.store.schema import identities
from opencdp.system import OpenCDP
from opencdp.ui.web import secure

HERE = Path(__file__).parent


class Answered(Exception):
    """A page that ends the request early (an invalid link, a forged form): raised by the helpers
    every view starts with, answered by `PageRoute`."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class PageRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except Answered as answered:
                return answered.response

        return handler


router = APIRouter(tags=["preference centre"], include_in_schema=False, route_class=PageRoute)
CSS = (HERE / "static" / "preferences.css").read_bytes()


@lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    response = HTMLResponse(_templates().get_template(template).render(**context), status_code=status)
    response.headers["Referrer-Policy"] = "no-referrer"  # the URL holds the link's token
    return secure(response)  # type: ignore[return-value]


def _cdp(request: Request) -> OpenCDP:
    cdp: OpenCDP = request.app.state.cdp
    return cdp


def options_of(cdp: OpenCDP) -> PreferenceOptions:
    return PreferenceOptions(interests=cdp.settings.preference_interests)


def _invalid() -> HTMLResponse:
    return _page("preferences/message.html", 404, title="Link not valid", message=str(LinkInvalid()))


def _link(cdp: OpenCDP, token: str) -> PreferenceLink:
    try:
        return open_link(cdp.engine, token)
    except LinkInvalid:
        raise Answered(_invalid()) from None


async def _posted(request: Request, cdp: OpenCDP, token: str) -> tuple[PreferenceLink, dict[str, list[str]]]:
    """The link and the submitted form, if the form carries the link's CSRF token."""
    link = _link(cdp, token)
    form = await _form(request)
    if not link.csrf_matches((form.get("csrf") or [""])[0]):
        raise Answered(
            _page(
                "preferences/message.html",
                403,
                title="Please try again",
                message="This form has expired or did not come from this page. Open the link again.",
            )
        )
    return link, form


async def _form(request: Request) -> dict[str, list[str]]:
    form = await request.form()
    return {key: [str(v) for v in form.getlist(key)] for key in form}


def _centre(cdp: OpenCDP, token: str, link: PreferenceLink, status: int = 200, **extra: Any) -> HTMLResponse:
    with cdp.engine.connect() as conn:
        shown = current_preferences(conn, cdp.engine, link.profile_id)
    context: dict[str, Any] = {
        "base": PATH + token,
        "csrf": link.csrf_token,
        "prefs": shown,
        "options": options_of(cdp),
        "surveys": [s["definition"] for s in list_surveys(cdp.engine, enabled_only=True)],
        "saved": False,
        "problem": None,
        **extra,
    }
    return _page("preferences/centre.html", status, **context)


@router.get("/preferences/style.css")
def style() -> Response:
    return Response(CSS, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


@router.get("/preferences/{token}")
def centre(request: Request, token: str, saved: int = 0) -> HTMLResponse:
    cdp = _cdp(request)
    return _centre(cdp, token, _link(cdp, token), saved=bool(saved))


@router.post("/preferences/{token}")
async def save(request: Request, token: str) -> Response:
    cdp = _cdp(request)
    link, form = await _posted(request, cdp, token)
    with cdp.engine.connect() as conn:
        shown = current_preferences(conn, cdp.engine, link.profile_id)
    try:
        consent, interests, channel = wanted_from_form(form, shown, options_of(cdp))
    except PreferenceError as exc:
        return _centre(cdp, token, link, 400, problem=str(exc))
    rows = preference_events(cdp.engine, link.profile_id, shown, consent, interests, channel)
    if rows:
        await asyncio.wrap_future(cdp.writer.submit(rows))
        await _applied(cdp)
    return RedirectResponse(f"{PATH}{token}?saved=1", status_code=303)


async def _applied(cdp: OpenCDP, seconds: float = 2.0) -> None:
    """Wait (briefly) until processing has applied what was just logged, so the page shown next
    reflects it; the change is safe in the log either way."""

    def wait() -> None:
        newest = cdp.processor.newest_event_id()
        deadline = time.monotonic() + seconds
        while cdp.processor.checkpoint() < newest and time.monotonic() < deadline:
            time.sleep(0.02)

    await run_in_threadpool(wait)


@router.get("/preferences/{token}/surveys/{name}")
def survey_page(request: Request, token: str, name: str) -> HTMLResponse:
    cdp = _cdp(request)
    link = _link(cdp, token)
    try:
        survey = enabled_survey(cdp.engine, name)
    except SurveyNotFound:
        return _page(
            "preferences/message.html", 404, title="Survey not found", message="This survey is closed."
        )
    return _survey(token, link, survey)


def _survey(
    token: str,
    link: PreferenceLink,
    survey: Survey,
    status: int = 200,
    problems: dict[str, str] | None = None,
    given: dict[str, list[str]] | None = None,
) -> HTMLResponse:
    return _page(
        "preferences/survey.html",
        status,
        base=PATH + token,
        csrf=link.csrf_token,
        survey=survey,
        problems=problems or {},
        given=given or {},
    )


@router.post("/preferences/{token}/surveys/{name}")
async def answer(request: Request, token: str, name: str) -> Response:
    cdp = _cdp(request)
    link, form = await _posted(request, cdp, token)
    try:
        survey = enabled_survey(cdp.engine, name)
    except SurveyNotFound:
        return _page(
            "preferences/message.html", 404, title="Survey not found", message="This survey is closed."
        )
    try:
        answers = parse_answers(survey, form)
    except SurveyError as exc:
        return _survey(token, link, survey, 400, dict(exc.problems), form)
    if answers:
        rows = survey_events(cdp.engine, link.profile_id, survey, answers)
        await asyncio.wrap_future(cdp.writer.submit(rows))
        await _applied(cdp)
    return _page(
        "preferences/message.html",
        title="Thank you",
        message="Your answers are saved.",
        back=PATH + token,
    )


@router.get("/preferences/{token}/data")
def download(request: Request, token: str) -> Response:
    """Everything held about the customer (GDPR articles 15 and 20), as the admin API's export."""
    cdp = _cdp(request)
    link = _link(cdp, token)
    data = export_profile(cdp.engine, link.profile_id)
    record(cdp.engine, "customer:preference-centre", "privacy.export", "profile", link.profile_id)
    response = Response(
        FastJSONResponse(data).body,
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="my-data.json"'},
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return secure(response)


@router.get("/preferences/{token}/erase")
def erase_page(request: Request, token: str) -> HTMLResponse:
    cdp = _cdp(request)
    link = _link(cdp, token)
    return _page("preferences/erase.html", base=PATH + token, csrf=link.csrf_token, problem=None)


@router.post("/preferences/{token}/erase")
async def erase(request: Request, token: str) -> Response:
    """Erase the customer everywhere and suppress their identifiers (the admin API's erasure), after
    they typed the confirmation word; every link of theirs ends with it."""
    cdp = _cdp(request)
    link, form = await _posted(request, cdp, token)
    if (form.get("confirm") or [""])[0].strip().upper() != "ERASE":
        return _page(
            "preferences/erase.html",
            400,
            base=PATH + token,
            csrf=link.csrf_token,
            problem="Type ERASE in the box to confirm.",
        )
    with cdp.engine.connect() as conn:
        ident = conn.execute(
            identities.select()
            .where(identities.c.profile_id == link.profile_id)
            .order_by(identities.c.id)
            .limit(1)
        ).first()
    if ident is not None:
        await run_in_threadpool(
            erase_person,
            cdp.engine,
            cdp.processor.rules,
            ident.type,
            ident.value,
            "customer:preference-centre",
        )
    with cdp.engine.begin() as conn:
        revoke_links(conn, {link.profile_id})
    return _page(
        "preferences/message.html",
        title="Your data is erased",
        message="We erased what we held about you and will not collect it again.",
    )
