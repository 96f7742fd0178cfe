"""What every hosted page shares: the templates, the brand, CSRF tokens, security headers and
pages for problems (so the API's JSON error handlers never answer a customer's browser).

CSRF: every form carries a token. Signed in, it is the session's own token; signed out (sign-in,
registration, password reset) it is a double-submit token — a random cookie the form must echo,
which a foreign site can neither read nor set. Either way the `Origin`, when sent, must be ours.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Coroutine
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from opencdp import logs
from opencdp.accounts import sessions
from opencdp.accounts.service import AccountsService
from opencdp.accounts.sessions import AccountSession
from opencdp.accounts.texts import Texts, negotiate

HERE = Path(__file__).parent
FORM_COOKIE = "opencdp_account_form"
PREFIX = "/accounts"
log = logs.get("opencdp.accounts")


class AccountProblem(Exception):
    status = 400

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class NotEnabled(AccountProblem):
    status = 404


class CsrfFailed(AccountProblem):
    status = 403


@lru_cache(maxsize=1)
def templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def service_of(request: Request) -> AccountsService:
    service: AccountsService = request.app.state.accounts
    if not service.settings.enabled:
        raise NotEnabled("Customer accounts are not switched on here (OPENCDP_ACCOUNTS_ISSUER).")
    return service


def texts_for(request: Request, service: AccountsService) -> Texts:
    brand = service.settings.brand
    return Texts(
        brand,
        negotiate(brand, request.query_params.get("ui_locales"), request.headers.get("accept-language")),
    )


def current_session(request: Request, service: AccountsService) -> AccountSession | None:
    return sessions.load(service.engine, request.cookies.get(sessions.COOKIE))


def secure_cookies(request: Request, service: AccountsService) -> bool:
    return request.url.scheme == "https" or service.settings.secure_cookies


def render(
    request: Request,
    service: AccountsService,
    template: str,
    context: dict[str, Any],
    status: int = 200,
    session: AccountSession | None = None,
) -> HTMLResponse:
    """A page whose forms carry the session's CSRF token, or else a double-submit token (the
    cookie is set here when the browser has none yet)."""
    fresh = None
    if session is not None:
        token = session.csrf_token
    else:
        token = request.cookies.get(FORM_COOKIE) or ""
        if len(token) < 20:
            token = fresh = secrets.token_urlsafe(24)
    brand = service.settings.brand
    social = [
        {"name": p.name, "label": service.settings.social_labels.get(p.name, p.name)}
        for p in service.settings.social
    ]
    full = {
        "t": texts_for(request, service),
        "brand": brand,
        "csrf": token,
        "session": session,
        "social_logins": social,
        **context,
    }
    response = HTMLResponse(templates().get_template(template).render(full), status_code=status)
    if fresh:
        response.set_cookie(
            FORM_COOKIE,
            fresh,
            httponly=True,
            samesite="strict",
            secure=secure_cookies(request, service),
            path=PREFIX,
        )
    return response


def check_csrf(request: Request, sent: str, session: AccountSession | None) -> None:
    expected = session.csrf_token if session else request.cookies.get(FORM_COOKIE, "")
    check_token(request, sent, expected)


def check_token(request: Request, sent: str, expected: str) -> None:
    """The form's token is the one expected, and the form came from our own origin (if told)."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise CsrfFailed("form_expired")
    if not expected or not sent or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise CsrfFailed("form_expired")


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def safe_next(target: str | None) -> str:
    """Only paths of the accounts pages (the authorization request included): never another site."""
    if not target or not target.startswith(PREFIX + "/") or "\\" in target or target.startswith("//"):
        return PREFIX + "/account"
    return target


def headers(response: Response, logo_url: str) -> Response:
    img = "'self' data:"
    logo = urlsplit(logo_url)
    if logo.scheme == "https" and logo.netloc:
        img += f" https://{logo.netloc}"
    response.headers.setdefault(
        "Content-Security-Policy",
        f"default-src 'none'; style-src 'self'; img-src {img}; form-action 'self' https: http://localhost:* "
        "http://127.0.0.1:*; frame-ancestors 'none'; base-uri 'none'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    # not no-referrer: Chromium then sends `Origin: null` with our own forms
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


class AccountsRoute(APIRoute):
    """Security headers on every answer; problems become a branded page, not JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            service: AccountsService = request.app.state.accounts
            try:
                response = await original(request)
            except AccountProblem as problem:
                response = _problem(request, service, problem.message, problem.status)
            except (StarletteHTTPException, RequestValidationError):
                response = _problem(request, service, "", 400)
            except Exception:
                log.exception("accounts request failed", path=request.url.path)
                response = _problem(request, service, "", 500)
            return headers(response, service.settings.brand.logo_url)

        return handler


def _problem(request: Request, service: AccountsService, message: str, status: int) -> Response:
    texts = texts_for(request, service)
    text = texts(message) if message in ("form_expired", "bad_link") else message
    return render(request, service, "message.html", {"title": texts("error_title"), "message": text}, status)
