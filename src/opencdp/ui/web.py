"""What every dashboard view shares: templates, sign-in and role checks, CSRF, security headers,
HTML error pages and the static files.

Views raise `UIProblem`s; `UIRoute` turns them into an HTML page (or JSON under `/ui/api/`), so the
API's JSON error handlers never answer a browser page. The one app-level piece is `page_errors`:
a URL that no route matches is answered with the same HTML page unless it is an API path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Coroutine
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import jinja2
import orjson
import sqlalchemy as sa
from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from opencdp import __version__, logs
from opencdp.ui import display, sessions
from opencdp.ui.config import UISettings
from opencdp.ui.sessions import Session

HERE = Path(__file__).parent
API_PREFIX = "/ui/api/"
log = logs.get("opencdp.ui")
NO_VALUE = display.NO_VALUE
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


# --- Problems a view can raise --------------------------------------------------------------


class UIProblem(Exception):
    status = 400
    title = "Something is not right"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class SignInRequired(UIProblem):
    status = 401
    title = "Please sign in"


class Forbidden(UIProblem):
    status = 403
    title = "Not allowed"


class CsrfFailed(UIProblem):
    status = 403
    title = "This form has expired"


class NotFound(UIProblem):
    status = 404
    title = "Not found"


class ServerError(UIProblem):
    status = 500
    title = "Something went wrong"


class BadRequest(UIProblem):
    status = 400
    title = "That did not work"


# --- Templates ------------------------------------------------------------------------------


def _value(value: Any) -> str:
    """A trait or property value as text; the template escapes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


@lru_cache(maxsize=1)
def _static_files() -> dict[str, tuple[bytes, str, str]]:
    """name → (content, media type, short content hash); read once, served from memory."""
    types = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
    out = {}
    for path in sorted((HERE / "static").iterdir()):
        if path.suffix in types:
            data = path.read_bytes()
            out[path.name] = (data, types[path.suffix], hashlib.sha256(data).hexdigest()[:12])
    return out


def static_url(name: str) -> str:
    return f"/ui/static/{name}?v={_static_files()[name][2]}"


@lru_cache(maxsize=1)
def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # everywhere, whatever the file name: everything shown is user input
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(display.FILTERS)
    env.filters.update(value=_value, q=lambda s: quote(str(s), safe=""))
    env.globals.update(static_url=static_url, version=__version__, NO_VALUE=NO_VALUE)
    return env


def render(request: Request, template: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    session: Session | None = getattr(request.state, "session", None)
    full = {
        "request": request,
        "session": session,
        "user": session.user if session else None,
        "csrf": session.csrf_token if session else "",
        **context,
    }
    return HTMLResponse(templates().get_template(template).render(full), status_code=status)


# --- Dependencies ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def ui_settings() -> UISettings:
    return UISettings.from_env()


def engine_of(request: Request) -> sa.Engine:
    engine: sa.Engine = request.app.state.cdp.engine
    return engine


def current_session(request: Request) -> Session:
    """The signed-in session (else a redirect to the sign-in page)."""
    session = sessions.load(engine_of(request), request.cookies.get(sessions.COOKIE), ui_settings())
    if session is None:
        raise SignInRequired("Your session has ended or you have not signed in yet.")
    request.state.session = session
    return session


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True  # older browsers and non-browser clients; the token still has to match
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def checked_session(request: Request, session: Annotated[Session, Depends(current_session)]) -> Session:
    """For state-changing requests: the session's CSRF token must come back (form field
    `csrf_token` or header `X-CSRF-Token`), from a page of this origin."""
    token = request.headers.get("x-csrf-token")
    if token is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get("csrf_token")
        token = value if isinstance(value, str) else None
    if not session.csrf_matches(token) or not _same_origin(request):
        raise CsrfFailed("The page was open too long or came from elsewhere. Reload it and try again.")
    return session


def editor_session(session: Annotated[Session, Depends(checked_session)]) -> Session:
    """For saving and deleting: admins and marketers only (analysts are read-only)."""
    if not session.user.can_edit:
        raise Forbidden(f"Your role ({session.user.role}) can look and export but not change anything.")
    return session


SignedIn = Annotated[Session, Depends(current_session)]
Checked = Annotated[Session, Depends(checked_session)]
Editor = Annotated[Session, Depends(editor_session)]


def safe_next(target: str | None) -> str:
    """Only paths of this site (no `//host`, no scheme): an open redirect would help phishing."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# --- The route class ------------------------------------------------------------------------


def _problem_response(request: Request, problem: UIProblem) -> Response:
    if request.url.path.startswith(API_PREFIX):
        return JSONResponse({"error": problem.title, "message": problem.message}, status_code=problem.status)
    if isinstance(problem, SignInRequired):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return redirect("/login?next=" + quote(safe_next(target), safe=""))
    return render(request, "error.html", {"title": problem.title, "message": problem.message}, problem.status)


#: Paths whose errors stay JSON: the admin and collection APIs, the dashboard's own API, metrics, schema.
API_PATHS = ("/api", "/v1", "/ui/api", "/metrics", "/openapi.json")
_UNMATCHED = {
    404: ("Not found", "There is no page at this address. It may have moved, or the link is mistyped."),
    405: ("Not found", "This address is not a page to open: it only takes a form sent from the dashboard."),
}


def is_api_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in API_PATHS)


def page_errors(
    api_handler: Callable[[Request, Exception], Coroutine[Any, Any, Response]],
) -> Callable[[Request, Exception], Coroutine[Any, Any, Response]]:
    """The app's handler for HTTP errors no view turned into a page (a URL no route matches, a method
    a page does not take): browsers get the dashboard's error page, whether signed in or not (it
    says nothing about what exists); API paths keep `api_handler`'s JSON."""

    async def handler(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        if status not in _UNMATCHED or is_api_path(request.url.path):
            return await api_handler(request, exc)
        title, message = _UNMATCHED[status]
        response = render(request, "error.html", {"title": title, "message": message}, status)
        if status == 405:
            response.headers["Allow"] = (getattr(exc, "headers", None) or {}).get("Allow", "GET")
        return secure(response)

    return handler


def secure(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cache-Control", "no-store")  # pages show personal data
    return response


class UIRoute(APIRoute):
    """Adds security headers to every dashboard response and renders problems as pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await original(request)
            except UIProblem as problem:
                response = _problem_response(request, problem)
            except StarletteHTTPException:  # FastAPI could not read the form (or the client left)
                unreadable = BadRequest("The form could not be read; send it again.")
                response = _problem_response(request, unreadable)
            except RequestValidationError as exc:
                fields = ", ".join(".".join(str(p) for p in e["loc"][1:]) for e in exc.errors())
                response = _problem_response(request, BadRequest(f"Check these values: {fields}."))
            except Exception:
                log.exception("dashboard request failed", path=request.url.path)
                response = _problem_response(request, ServerError("The error has been logged."))
            return secure(response)

        return handler


def static_response(name: str, if_none_match: str | None) -> Response:
    found = _static_files().get(name)
    if found is None:
        raise NotFound("No such file.")
    data, media_type, digest = found
    headers = {"ETag": f'"{digest}"', "Cache-Control": "public, max-age=86400"}
    if if_none_match == f'"{digest}"':
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media_type, headers=headers)
