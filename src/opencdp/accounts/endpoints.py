"""The provider's protocol endpoints: discovery, JWKS, authorization, token, userinfo and
RP-initiated logout (`end_session_endpoint`), plus the pages' stylesheet in the brand's colours.

The authorization endpoint asks for no consent screen: the clients are the brand's own sites,
registered by its administrators, and the customer signs in to the brand, not to a third party.
Without an SSO session (or with `prompt=login`) it sends the browser to the sign-in page, which
returns to the same authorization request; with one, it answers with a code at once — which is
single sign-on across every registered client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from authlib.oauth2 import OAuth2Error
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from opencdp.accounts import sessions, store
from opencdp.accounts.provider import Principal, ProviderRequest
from opencdp.accounts.service import AccountsService
from opencdp.accounts.web import (
    PREFIX,
    AccountProblem,
    AccountsRoute,
    check_csrf,
    current_session,
    headers,
    redirect,
    render,
    texts_for,
)

pages = APIRouter(route_class=AccountsRoute, include_in_schema=False)
api = APIRouter(include_in_schema=False)
_STYLE = (Path(__file__).parent / "style.css").read_text("utf-8")
#: Discovery, JWKS, token and userinfo may be called from a single-page app on another origin (a
#: public client). No cookie is involved in any of them, so any origin may read the answers.
_CORS = {"Access-Control-Allow-Origin": "*"}
_PREFLIGHT = {
    **_CORS,
    "Access-Control-Allow-Methods": "GET, POST",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
}


def _service(request: Request) -> AccountsService | None:
    service: AccountsService = request.app.state.accounts
    return service if service.settings.enabled else None


def _not_enabled() -> JSONResponse:
    return JSONResponse({"error": "not_found", "error_description": "customer accounts are off"}, 404)


async def provider_request(request: Request, cookie_sid: str | None = None) -> ProviderRequest:
    form: list[tuple[str, str]] = []
    if request.method == "POST" and request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        form = [(k, v) for k, v in (await request.form()).multi_items() if isinstance(v, str)]
    return ProviderRequest(
        request.method,
        str(request.url),
        request.headers,
        list(request.query_params.multi_items()),
        form,
        cookie_sid,
    )


@api.get("/.well-known/openid-configuration")
def discovery(request: Request) -> Response:
    service = _service(request)
    if service is None:
        return _not_enabled()
    return JSONResponse(service.provider.metadata(), headers=_CORS)


@api.get(PREFIX + "/jwks.json")
def jwks(request: Request) -> Response:
    service = _service(request)
    if service is None:
        return _not_enabled()
    return JSONResponse(service.keys.jwks(), headers={**_CORS, "Cache-Control": "public, max-age=300"})


@api.post(PREFIX + "/token")
async def token(request: Request) -> Response:
    service = _service(request)
    if service is None:
        return _not_enabled()
    oauth_request = await provider_request(request)
    response: Response = await run_in_threadpool(service.provider.create_token_response, oauth_request)
    response.headers.update(_CORS)
    return response


@api.options(PREFIX + "/token")
@api.options(PREFIX + "/userinfo")
def preflight() -> Response:
    """CORS preflight of a public client's browser (userinfo sends an Authorization header)."""
    return Response(status_code=204, headers=_PREFLIGHT)


@api.api_route(PREFIX + "/userinfo", methods=["GET", "POST"])
def userinfo(request: Request) -> Response:
    service = _service(request)
    if service is None:
        return _not_enabled()
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    claims = (
        service.provider.userinfo(value.strip()) if scheme.lower() == "bearer" and value.strip() else None
    )
    if claims is None:
        return JSONResponse(
            {
                "error": "invalid_token",
                "error_description": "the access token is unknown, expired or revoked",
            },
            401,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"', **_CORS},
        )
    return JSONResponse(claims, headers={"Cache-Control": "no-store", **_CORS})


@api.get(PREFIX + "/style.css")
def style(request: Request) -> Response:
    service: AccountsService = request.app.state.accounts
    brand = service.settings.brand
    css = f":root {{ --primary: {brand.primary}; --background: {brand.background}; --text: {brand.text}; }}\n"
    return Response(
        css + _STYLE, media_type="text/css; charset=utf-8", headers={"Cache-Control": "public, max-age=300"}
    )


@pages.api_route(PREFIX + "/authorize", methods=["GET", "POST"])
async def authorize(request: Request) -> Response:
    service = _service(request)
    if service is None:
        raise AccountProblem("Customer accounts are not switched on here.")
    oauth_request = await provider_request(request)
    provider = service.provider

    def decide() -> Response | None:
        # the session and account reads (and the session's last-seen write) on this thread too
        session = current_session(request, service)
        principal = None
        if session is not None and (account := store.find(service.engine, account_id=session.account_id)):
            principal = Principal(account, session.sid, session.auth_time, session.amr)
        try:
            grant = provider.get_consent_grant(oauth_request, end_user=principal)
        except OAuth2Error as error:
            if error.redirect_uri:  # the client and its redirect URI are known: tell the client
                response: Response = provider.handle_error_response(oauth_request, error)
                return response
            raise AccountProblem(
                f"This sign-in link is not valid: {error.description or error.error}"
            ) from None
        if grant.prompt == "login":
            return None
        answer: Response = provider.create_authorization_response(
            oauth_request, grant_user=principal, grant=grant
        )
        return answer

    response = await run_in_threadpool(decide)
    if response is not None:
        return response
    # sign in first, then come back to the same request (without prompt=login: asked once)
    params = [(k, v) for k, values in oauth_request.payload.datalist.items() for v in values if k != "prompt"]
    target = f"{PREFIX}/authorize?{urlencode(params)}"
    return redirect(f"{PREFIX}/login?next={quote(target, safe='')}")


@pages.api_route(PREFIX + "/logout", methods=["GET", "POST"])
async def logout(request: Request) -> Response:
    """RP-initiated logout (with `id_token_hint`, `post_logout_redirect_uri`, `state`) and the
    account page's sign-out button. Without a valid `id_token_hint` the customer confirms by a
    form with a CSRF token, so no other site can sign them out."""
    service = _service(request)
    if service is None:
        raise AccountProblem("Customer accounts are not switched on here.")
    cookie = request.cookies.get(sessions.COOKIE)
    session = current_session(request, service)
    oauth_request = await provider_request(request, cookie_sid=session.sid if session else None)
    confirmed = False
    if request.method == "POST" and "csrf_token" in oauth_request.form:
        check_csrf(request, oauth_request.form["csrf_token"], session)
        confirmed = oauth_request.confirmed = True
    provider = service.provider
    try:
        checked = await run_in_threadpool(provider.validate_endpoint_request, "end_session", oauth_request)
    except OAuth2Error as error:
        raise AccountProblem(f"This sign-out link is not valid: {error.description or error.error}") from None
    texts = texts_for(request, service)
    if checked.needs_confirmation and not confirmed and session is not None:
        params: list[tuple[str, Any]] = [
            (k, v)
            for k, v in oauth_request.payload.data.items()
            if k in ("client_id", "post_logout_redirect_uri", "state")
        ]
        return render(request, service, "logout.html", {"params": params}, session=session)
    response = await run_in_threadpool(provider.create_endpoint_response, "end_session", checked)
    if response is None:
        response = render(
            request, service, "message.html", {"title": texts("sign_out"), "message": texts("signed_out")}
        )
    if cookie:
        response.delete_cookie(sessions.COOKIE, path=PREFIX)
    return headers(response, service.settings.brand.logo_url)
