"""The hosted preference centre: the pages where a customer sees and changes their consent per
purpose, interests and preferred channel, answers surveys, downloads their data and erases it.
Server-rendered, no script, no CDN; pages are not cached (they show personal data).

Two ways in, one set of views (`_entry`): a link (`/preferences/{token}`, `preference_links`),
whose forms carry the link's CSRF token and whose token is never sent on (`Referrer-Policy:
no-referrer`); or the customer's own sign-in (`/accounts/preferences`), whose profile is the
account's as userinfo finds it and whose forms carry the SSO session's CSRF token."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from opencdp.access.audit import record
from opencdp.accounts import sessions
from opencdp.accounts.admission import paused
from opencdp.accounts.claims import profile_of
from opencdp.accounts.preference_links import PATH, LinkInvalid, PreferenceLink, open_link, revoke_links
from opencdp.accounts.preferences import (
    ACTOR,
    PreferenceError,
    PreferenceOptions,
    current_preferences,
    preference_events,
    survey_events,
    wanted_from_form,
)
from opencdp.accounts.service import AccountsService
from opencdp.accounts.survey_store import SurveyNotFound, enabled_survey, list_surveys
from opencdp.accounts.surveys import Survey, SurveyError, parse_answers
from opencdp.accounts.web import PREFIX
from opencdp.api.responses import FastJSONResponse
from opencdp.privacy.erasure import erase_person
from opencdp.privacy.requests import export_profile
from opencdp.store.schema import identities
from opencdp.system import OpenCDP
from opencdp.ui.web import secure

HERE = Path(__file__).parent
#: The signed-in customer's centre: under /accounts, where the SSO session's cookie is sent.
SIGNED_IN_PATH = PREFIX + "/preferences"


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


@dataclass(frozen=True)
class Opened:
    """Whose centre a request shows, whichever way it was opened: the profile, the token its
    forms must send back, the centre's own URL, and who acts (for the audit log)."""

    profile_id: str
    csrf_token: str
    base: str
    actor: str
    #: the cookie to drop once the person is erased (their session ends with them)
    cookie: tuple[str, str] | None = None

    def csrf_matches(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token.encode(), str(token).encode())


def by_link(request: Request, token: str) -> Opened:
    """Opened from a link (`/preferences/{token}`): the link's profile and CSRF token."""
    try:
        link: PreferenceLink = open_link(_cdp(request).engine, token)
    except LinkInvalid:
        raise Answered(_invalid()) from None
    return Opened(link.profile_id, link.csrf_token, PATH + token, ACTOR)


def by_session(request: Request) -> Opened:
    """Opened by a signed-in customer (`/accounts/preferences`): the profile of their account,
    found as userinfo finds it, and their session's CSRF token."""
    service: AccountsService = request.app.state.accounts
    if not service.settings.enabled:
        raise Answered(_page("preferences/message.html", 404, title="Not found", message="Not found."))
    session = sessions.load(service.engine, request.cookies.get(sessions.COOKIE))
    if session is None:
        target = quote(SIGNED_IN_PATH, safe="")
        raise Answered(RedirectResponse(f"{PREFIX}/login?next={target}", status_code=303))
    profile = profile_of(service.engine, service.cdp.processor.rules, session.account_id)
    if profile is None:  # the sign-up is not processed yet: a moment later it is
        raise Answered(
            _page(
                "preferences/message.html",
                503,
                title="One moment",
                message="Your account is still being set up. Reload this page in a few seconds.",
            )
        )
    actor = f"customer:account:{session.account_id}"
    return Opened(profile["id"], session.csrf_token, SIGNED_IN_PATH, actor, (sessions.COOKIE, PREFIX))


async def _posted(request: Request, opened: Opened) -> dict[str, list[str]]:
    """The submitted form, if it carries the centre's CSRF token."""
    form = await _form(request)
    if not opened.csrf_matches((form.get("csrf") or [""])[0]):
        raise Answered(
            _page(
                "preferences/message.html",
                403,
                title="Please try again",
                message="This form has expired or did not come from this page. Open the page again.",
            )
        )
    return form


async def _form(request: Request) -> dict[str, list[str]]:
    form = await request.form()
    return {key: [str(v) for v in form.getlist(key)] for key in form}


def _centre(cdp: OpenCDP, opened: Opened, status: int = 200, **extra: Any) -> HTMLResponse:
    with cdp.engine.connect() as conn:
        shown = current_preferences(conn, cdp.engine, opened.profile_id)
    context: dict[str, Any] = {
        "base": opened.base,
        "csrf": opened.csrf_token,
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


async def _applied(request: Request, cdp: OpenCDP, seconds: float = 2.0) -> None:
    """Wait (briefly) until processing has applied what was just logged, so the page shown next
    reflects it; the change is safe in the log either way."""

    processor = cdp.processor

    def applied() -> bool:  # under `serve` (SQLite) new events first wait in the log's intake
        return processor.intake_pending() == 0 and processor.checkpoint() >= processor.newest_event_id()

    def wait() -> None:
        deadline = time.monotonic() + seconds
        while not applied() and time.monotonic() < deadline:
            time.sleep(0.02)

    async with paused(request.scope):  # waiting, not work: the next customer's request goes ahead
        await run_in_threadpool(wait)


def _survey_closed() -> HTMLResponse:
    return _page("preferences/message.html", 404, title="Survey not found", message="This survey is closed.")


def _survey(
    opened: Opened,
    survey: Survey,
    status: int = 200,
    problems: dict[str, str] | None = None,
    given: dict[str, list[str]] | None = None,
) -> HTMLResponse:
    return _page(
        "preferences/survey.html",
        status,
        base=opened.base,
        csrf=opened.csrf_token,
        survey=survey,
        problems=problems or {},
        given=given or {},
    )


def _entry(path: str, opened_by: Callable[..., Opened]) -> None:
    """The centre's pages under `path`, each opened by `opened_by` (a FastAPI dependency): one set
    of views whether the customer came by a link or is signed in."""
    opened_dep: Any = Depends(opened_by)

    @router.get(path)
    def centre(request: Request, saved: int = 0, opened: Opened = opened_dep) -> HTMLResponse:
        return _centre(_cdp(request), opened, saved=bool(saved))

    @router.post(path)
    async def save(request: Request, opened: Opened = opened_dep) -> Response:
        cdp = _cdp(request)
        form = await _posted(request, opened)
        with cdp.engine.connect() as conn:
            shown = current_preferences(conn, cdp.engine, opened.profile_id)
        try:
            consent, interests, channel = wanted_from_form(form, shown, options_of(cdp))
        except PreferenceError as exc:
            return _centre(cdp, opened, 400, problem=str(exc))
        rows = preference_events(cdp.engine, opened.profile_id, shown, consent, interests, channel)
        if rows:
            await asyncio.wrap_future(cdp.writer.submit(rows))
            await _applied(request, cdp)
        return RedirectResponse(f"{opened.base}?saved=1", status_code=303)

    @router.get(path + "/surveys/{name}")
    def survey_page(request: Request, name: str, opened: Opened = opened_dep) -> HTMLResponse:
        try:
            survey = enabled_survey(_cdp(request).engine, name)
        except SurveyNotFound:
            return _survey_closed()
        return _survey(opened, survey)

    @router.post(path + "/surveys/{name}")
    async def answer(request: Request, name: str, opened: Opened = opened_dep) -> Response:
        cdp = _cdp(request)
        form = await _posted(request, opened)
        try:
            survey = enabled_survey(cdp.engine, name)
        except SurveyNotFound:
            return _survey_closed()
        try:
            answers = parse_answers(survey, form)
        except SurveyError as exc:
            return _survey(opened, survey, 400, dict(exc.problems), form)
        if answers:
            rows = survey_events(cdp.engine, opened.profile_id, survey, answers)
            await asyncio.wrap_future(cdp.writer.submit(rows))
            await _applied(request, cdp)
        return _page(
            "preferences/message.html", title="Thank you", message="Your answers are saved.", back=opened.base
        )

    @router.get(path + "/data")
    def download(request: Request, opened: Opened = opened_dep) -> Response:
        """Everything held about the customer (GDPR articles 15 and 20), as the admin API's export."""
        cdp = _cdp(request)
        data = export_profile(cdp.engine, opened.profile_id)
        record(cdp.engine, opened.actor, "privacy.export", "profile", opened.profile_id)
        response = Response(
            FastJSONResponse(data).body,
            media_type="application/json",
            headers={"Content-Disposition": 'attachment; filename="my-data.json"'},
        )
        response.headers["Referrer-Policy"] = "no-referrer"
        return secure(response)

    @router.get(path + "/erase")
    def erase_page(opened: Opened = opened_dep) -> HTMLResponse:
        return _page("preferences/erase.html", base=opened.base, csrf=opened.csrf_token, problem=None)

    @router.post(path + "/erase")
    async def erase(request: Request, opened: Opened = opened_dep) -> Response:
        """Erase the customer everywhere and suppress their identifiers (the admin API's erasure),
        after they typed the confirmation word; every link and account session of theirs ends."""
        cdp = _cdp(request)
        form = await _posted(request, opened)
        if (form.get("confirm") or [""])[0].strip().upper() != "ERASE":
            return _page(
                "preferences/erase.html",
                400,
                base=opened.base,
                csrf=opened.csrf_token,
                problem="Type ERASE in the box to confirm.",
            )
        await run_in_threadpool(_erase, cdp, opened)
        response = _page(
            "preferences/message.html",
            title="Your data is erased",
            message="We erased what we held about you and will not collect it again.",
        )
        if opened.cookie is not None:
            response.delete_cookie(opened.cookie[0], path=opened.cookie[1])
        return response


def _erase(cdp: OpenCDP, opened: Opened) -> None:
    with cdp.engine.connect() as conn:
        ident = conn.execute(
            identities.select()
            .where(identities.c.profile_id == opened.profile_id)
            .order_by(identities.c.id)
            .limit(1)
        ).first()
    if ident is not None:
        erase_person(cdp.engine, cdp.processor.rules, ident.type, ident.value, opened.actor)
    with cdp.engine.begin() as conn:
        revoke_links(conn, {opened.profile_id})


_entry(SIGNED_IN_PATH, by_session)
_entry("/preferences/{token}", by_link)
