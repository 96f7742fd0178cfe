"""The pages of the second factor: the code step of a sign-in, and set-up and switch-off from the
account page (accounts/second_factor.py has the rules).

Wrong codes are counted per client address and per account in their own throttle: a right
password does not reset it, so knowing the password buys no more guesses at the code.
"""

from __future__ import annotations

import math
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request, Response
from starlette.concurrency import run_in_threadpool

from opencdp.accounts import challenges, second_factor, signin, store
from opencdp.accounts.service import AccountsService
from opencdp.accounts.sessions import AccountSession
from opencdp.accounts.web import (
    PREFIX,
    AccountProblem,
    AccountsRoute,
    check_csrf,
    check_token,
    current_session,
    redirect,
    render,
    service_of,
    texts_for,
)

router = APIRouter(route_class=AccountsRoute, include_in_schema=False)
Code = Annotated[str, Form(max_length=40)]
Token = Annotated[str, Form(max_length=200)]
FACTOR_PAGE = PREFIX + "/second-factor"


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _throttled(request: Request, service: AccountsService, account_id: str) -> float:
    return service.code_throttle.retry_after(_address(request), account_id)


def _too_many(response: Response, wait: float) -> Response:
    response.headers["Retry-After"] = str(math.ceil(wait))
    return response


# --- the code step of a sign-in ---------------------------------------------------------------


def _code_page(
    request: Request, service: AccountsService, challenge: challenges.Challenge, **context: Any
) -> Response:
    status = context.pop("status", 200)
    full = {"error": "", "csrf": challenge.csrf_token, **context}
    return render(request, service, "code.html", full, status)


def _challenge(request: Request, service: AccountsService) -> challenges.Challenge:
    found = challenges.load(service.engine, request.cookies.get(challenges.COOKIE))
    if found is None:
        raise AccountProblem(texts_for(request, service)("code_expired"))
    return found


@router.get(signin.CODE_PAGE)
def code_form(request: Request) -> Response:
    service = service_of(request)
    return _code_page(request, service, _challenge(request, service))


@router.post(signin.CODE_PAGE)
async def code_step(request: Request, code: Code = "", csrf_token: Token = "") -> Response:
    service = service_of(request)
    challenge = _challenge(request, service)
    check_token(request, csrf_token, challenge.csrf_token)
    texts = texts_for(request, service)
    wait = _throttled(request, service, challenge.account_id)
    if wait:
        minutes = math.ceil(wait / 60)
        page = _code_page(
            request, service, challenge, error=texts("code_throttled", minutes=minutes), status=429
        )
        return _too_many(page, wait)
    how = await run_in_threadpool(
        second_factor.check,
        service.engine,
        service.cdp.settings,
        challenge.account_id,
        code,
        service.clock(),
    )
    account = store.find(service.engine, account_id=challenge.account_id)
    if how is None or account is None or account.disabled:
        service.code_throttle.failed(_address(request), challenge.account_id)
        return _code_page(request, service, challenge, error=texts("code_wrong"), status=400)
    if not await run_in_threadpool(challenges.end, service.engine, challenge):  # posted twice
        raise AccountProblem(texts("code_expired"))
    service.code_throttle.succeeded(_address(request), challenge.account_id)
    properties = {"method": challenge.method, "second_factor": how}
    response = await signin.start_session(request, service, account, challenge.next_url, properties)
    response.delete_cookie(challenges.COOKIE, path=PREFIX)
    return response


# --- set-up and switch-off from the account page ----------------------------------------------


def _factor_page(
    request: Request, service: AccountsService, session: AccountSession, **context: Any
) -> Response:
    status = context.pop("status", 200)
    on = second_factor.enabled(service.engine, session.account_id)
    full: dict[str, Any] = {
        "on": on,
        "left": second_factor.recovery_codes_left(service.engine, session.account_id) if on else 0,
        "setup": None,
        "codes": [],
        "error": "",
        "note": "",
        **context,
    }
    return render(request, service, "second_factor.html", full, status, session=session)


def _to_login() -> Response:
    return redirect(PREFIX + "/login?next=" + quote(FACTOR_PAGE, safe=""))


def _issuer_name(service: AccountsService) -> str:
    return service.settings.brand.name


@router.get(FACTOR_PAGE)
def factor_page(request: Request) -> Response:
    service = service_of(request)
    session = current_session(request, service)
    if session is None:
        return _to_login()
    return _factor_page(request, service, session)


@router.post(FACTOR_PAGE + "/setup")
async def factor_setup(request: Request, csrf_token: Token = "") -> Response:
    service = service_of(request)
    session = current_session(request, service)
    if session is None:
        return _to_login()
    check_csrf(request, csrf_token, session)
    if second_factor.enabled(service.engine, session.account_id):
        return redirect(FACTOR_PAGE)
    setup = second_factor.begin(
        service.engine, service.cdp.settings, session.account_id, session.email, _issuer_name(service)
    )
    return _factor_page(request, service, session, setup=setup)


@router.post(FACTOR_PAGE + "/confirm")
async def factor_confirm(request: Request, code: Code = "", csrf_token: Token = "") -> Response:
    service = service_of(request)
    session = current_session(request, service)
    if session is None:
        return _to_login()
    check_csrf(request, csrf_token, session)
    texts = texts_for(request, service)
    setup = second_factor.pending(
        service.engine, service.cdp.settings, session.account_id, session.email, _issuer_name(service)
    )
    if setup is None:
        return redirect(FACTOR_PAGE)
    wait = _throttled(request, service, session.account_id)
    if wait:
        error = texts("code_throttled", minutes=math.ceil(wait / 60))
        return _too_many(_factor_page(request, service, session, setup=setup, error=error, status=429), wait)
    codes = second_factor.confirm(
        service.engine, service.cdp.settings, session.account_id, code, service.clock()
    )
    if codes is None:
        service.code_throttle.failed(_address(request), session.account_id)
        return _factor_page(request, service, session, setup=setup, error=texts("code_wrong"), status=400)
    service.code_throttle.succeeded(_address(request), session.account_id)
    await service.log(
        [service.events().track(session.account_id, "Second Factor Enabled", {"method": "totp"})]
    )
    return _factor_page(request, service, session, codes=codes)


@router.post(FACTOR_PAGE + "/disable")
async def factor_disable(request: Request, code: Code = "", csrf_token: Token = "") -> Response:
    service = service_of(request)
    session = current_session(request, service)
    if session is None:
        return _to_login()
    check_csrf(request, csrf_token, session)
    texts = texts_for(request, service)
    wait = _throttled(request, service, session.account_id)
    if wait:
        error = texts("code_throttled", minutes=math.ceil(wait / 60))
        return _too_many(_factor_page(request, service, session, error=error, status=429), wait)
    how = second_factor.check(service.engine, service.cdp.settings, session.account_id, code, service.clock())
    if how is None:
        service.code_throttle.failed(_address(request), session.account_id)
        return _factor_page(request, service, session, error=texts("code_wrong"), status=400)
    service.code_throttle.succeeded(_address(request), session.account_id)
    second_factor.disable(service.engine, session.account_id)
    await service.log(
        [service.events().track(session.account_id, "Second Factor Disabled", {"proved_by": how})]
    )
    return _factor_page(request, service, session, note=texts("factor_disabled"))
