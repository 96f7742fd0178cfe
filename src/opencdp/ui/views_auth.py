"""Sign-in and sign-out.

The sign-in form is protected against login CSRF (a site making your browser sign in to the
attacker's account) with a double-submit token: a random cookie that the form must echo.
Password guessing is throttled per client address and per account (`SignInThrottle`), and the
password hasher is bounded (`users.HashGate`), so a flood of sign-ins neither guesses far nor
takes the memory and CPU that collection needs.
"""

from __future__ import annotations

import hmac
import math
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from opencdp.access import audit
from opencdp.access.throttle import SignInThrottle
from opencdp.ui import sessions, users
from opencdp.ui.web import (
    Checked,
    CsrfFailed,
    UIRoute,
    engine_of,
    redirect,
    render,
    safe_next,
    ui_settings,
)

router = APIRouter(route_class=UIRoute, include_in_schema=False)
LOGIN_COOKIE = "opencdp_login_csrf"
BUSY_RETRY_SECONDS = 5


def throttle_of(request: Request) -> SignInThrottle:
    throttle: SignInThrottle = request.app.state.sign_in_throttle
    return throttle


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or ui_settings().secure_cookies


def _login_page(
    request: Request, next_url: str, error: str = "", email: str = "", status: int = 200
) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {"login_csrf": token, "next": safe_next(next_url), "error": error, "email": email},
        status,
    )
    response.set_cookie(
        LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request), path="/login"
    )
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    if sessions.load(engine_of(request), request.cookies.get(sessions.COOKIE), ui_settings()):
        return redirect(safe_next(next))
    return _login_page(request, next)


@router.post("/login")
def login(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), csrf_token.encode()):
        raise CsrfFailed(
            "The sign-in page was open too long or came from elsewhere. Reload it and try again."
        )
    account = email.strip().lower()
    address = request.client.host if request.client else "unknown"
    throttle = throttle_of(request)
    wait = throttle.retry_after(address, account)
    if wait:
        minutes = math.ceil(wait / 60)
        response = _login_page(
            request,
            next,
            "Too many failed sign-ins from this address or for this account. "
            f"Try again in {minutes} minute{'s' if minutes > 1 else ''}.",
            email,
            429,
        )
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    engine = engine_of(request)
    try:
        user = users.authenticate(engine, email, password)
    except users.HasherBusy:
        response = _login_page(
            request, next, "Many sign-ins are under way. Try again in a few seconds.", email, 503
        )
        response.headers["Retry-After"] = str(BUSY_RETRY_SECONDS)
        return response
    if user is None:
        throttle.failed(address, account)
        return _login_page(request, next, "Wrong e-mail address or password.", email, 400)
    throttle.succeeded(address, account)
    token = sessions.start(engine, user, ui_settings())
    audit.record(engine, f"user:{user.id}", "ui.sign_in")
    response = redirect(safe_next(next))
    response.set_cookie(
        sessions.COOKIE,
        token,
        max_age=int(ui_settings().lifetime.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, session: Checked) -> Response:
    sessions.end(engine_of(request), request.cookies.get(sessions.COOKIE))
    response = redirect("/login")
    response.delete_cookie(sessions.COOKIE, path="/")
    return response
