"""The end of a sign-in, whatever proved the customer: a session when the first step is enough,
else the second step (`challenges`, the code form of `second_factor_pages`); then, when the brand
asks for more (progressive profiling), one question before going on.

The first step alone never yields a session for an account with a second factor.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from opencdp.accounts import challenges, profiling, second_factor, sessions
from opencdp.accounts.service import AccountsService
from opencdp.accounts.store import Account
from opencdp.accounts.web import PREFIX, redirect, safe_next, secure_cookies

CODE_PAGE = PREFIX + "/login/code"
MORE_PAGE = PREFIX + "/more"


async def first_step_passed(
    request: Request, service: AccountsService, account: Account, next_url: str, method: str
) -> Response:
    """The password (or another first factor) was right: a session, or the code form first."""
    # reads and commits on a thread, not on the event loop the collector shares
    if await run_in_threadpool(second_factor.enabled, service.engine, account.id):
        token = await run_in_threadpool(
            challenges.start, service.engine, account.id, method, safe_next(next_url)
        )
        response = redirect(CODE_PAGE)
        response.set_cookie(
            challenges.COOKIE,
            token,
            max_age=int(challenges.LIFETIME.total_seconds()),
            httponly=True,
            samesite="lax",
            secure=secure_cookies(request, service),
            path=PREFIX,
        )
        return response
    return await start_session(request, service, account, next_url, {"method": method})


async def start_session(
    request: Request,
    service: AccountsService,
    account: Account,
    next_url: str,
    properties: dict[str, Any],
) -> Response:
    """The SSO session, `Signed In` in the log, and the way on: to `next_url`, or by the one
    question this sign-in asks (when one is due)."""
    amr = ("pwd", "otp", "mfa") if properties.get("second_factor") else ("pwd",)
    token = await run_in_threadpool(
        sessions.start, service.engine, account.id, service.session_lifetime, None, amr
    )
    await service.log([service.events().track(account.id, "Signed In", properties)])
    target = safe_next(next_url)
    settings = service.settings
    rules = service.cdp.processor.rules
    due = await run_in_threadpool(
        profiling.due, service.engine, rules, account.id, settings.ask, settings.ask_again_days
    )
    if due:
        target = f"{MORE_PAGE}?next={quote(target, safe='')}"
    response = redirect(target)
    response.set_cookie(
        sessions.COOKIE,
        token,
        max_age=int(service.session_lifetime.total_seconds()),
        httponly=True,
        samesite="lax",  # sent on the top-level navigation from a relying party to /accounts/authorize
        secure=secure_cookies(request, service),
        path=PREFIX,
    )
    return response
