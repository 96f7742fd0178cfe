"""Sign-in and sign-out.

The sign-in form is protected against login CSRF (a site making your browser sign in to the
attacker's account) with a double-submit token: a random cookie that the form must echo.
Repeated wrong passwords for one address are slowed down per process (10 per 15 minutes).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import defaultdict, deque
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from opencdp.access import audit
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
MAX_FAILURES, WINDOW_SECONDS = 10, 15 * 60


class _Throttle:
    """Failed sign-ins per e-mail address in the last WINDOW_SECONDS (in this process)."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures[key]
        while times and times[0] < now - WINDOW_SECONDS:
            times.popleft()
        return times

    def blocked(self, key: str) -> bool:
        with self._lock:
            return len(self._recent(key, time.monotonic())) >= MAX_FAILURES

    def failed(self, key: str) -> None:
        with self._lock:
            self._recent(key, time.monotonic()).append(time.monotonic())

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


throttle = _Throttle()


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
    key = email.strip().lower()
    if throttle.blocked(key):
        return _login_page(request, next, "Too many attempts. Wait a few minutes and try again.", email, 429)
    engine = engine_of(request)
    user = users.authenticate(engine, email, password)
    if user is None:
        throttle.failed(key)
        return _login_page(request, next, "Wrong e-mail address or password.", email, 400)
    throttle.succeeded(key)
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
