"""The interstitial page of progressive profiling: one question after a sign-in, which the
customer answers or skips, then on to where they were going (accounts/profiling.py)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request, Response

from opencdp.accounts import profiling, signin
from opencdp.accounts.service import AccountsService
from opencdp.accounts.sessions import AccountSession
from opencdp.accounts.web import (
    PREFIX,
    AccountsRoute,
    check_csrf,
    current_session,
    redirect,
    render,
    safe_next,
    service_of,
    texts_for,
)

router = APIRouter(route_class=AccountsRoute, include_in_schema=False)


def _due(service: AccountsService, session: AccountSession) -> profiling.Question | None:
    settings = service.settings
    return profiling.due(
        service.engine, service.cdp.processor.rules, session.account_id, settings.ask, settings.ask_again_days
    )


def _page(
    request: Request,
    service: AccountsService,
    session: AccountSession,
    question: profiling.Question,
    next_url: str,
    **context: Any,
) -> Response:
    status = context.pop("status", 200)
    full = {"question": question, "next": safe_next(next_url), "error": "", "answer": "", **context}
    return render(request, service, "more.html", full, status, session=session)


@router.get(signin.MORE_PAGE)
def more_form(request: Request, next: str = "") -> Response:
    service = service_of(request)
    session = current_session(request, service)
    if session is None:
        return redirect(PREFIX + "/login?next=" + quote(safe_next(next), safe=""))
    question = _due(service, session)
    if question is None:  # answered meanwhile (elsewhere, or in another tab)
        return redirect(safe_next(next))
    return _page(request, service, session, question, next)


@router.post(signin.MORE_PAGE)
async def more_answer(
    request: Request,
    question: Annotated[str, Form(max_length=40)] = "",
    answer: Annotated[str, Form(max_length=1000)] = "",
    action: Annotated[str, Form(max_length=10)] = "save",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    service = service_of(request)
    session = current_session(request, service)
    if session is None:
        return redirect(PREFIX + "/login?next=" + quote(safe_next(next), safe=""))
    check_csrf(request, csrf_token, session)
    asked = profiling.QUESTIONS.get(question)
    if asked is None or asked.name not in service.settings.ask:
        return redirect(safe_next(next))
    if action == "skip":
        profiling.skip(service.engine, session.account_id, asked)
        return redirect(safe_next(next))
    try:
        value = profiling.answer(asked, answer)
    except profiling.AnswerError as exc:
        error = texts_for(request, service)(str(exc))
        return _page(request, service, session, asked, next, error=error, answer=answer, status=400)
    # a trait from the accounts source, exactly like the name given at registration
    await service.log([service.events().identify(session.account_id, {asked.name: value})])
    return redirect(safe_next(next))
