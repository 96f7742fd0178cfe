"""Social login on the hosted pages: "Continue with <provider>", its callback, and linking and
unlinking logins on the account page (docs/identity.md, "Social login" and "Account linking").

The pending sign-in (state, nonce, PKCE verifier, where to go next, and for a link the account)
travels in a cookie sealed with the installation's key (Fernet: encrypted and authenticated), so
the browser can neither read the verifier nor change a field; it is HttpOnly, lives 10 minutes,
is sent only to `/accounts/social` and is bound to this browser: the callback's `state` must be
the one in it. With `response_mode=form_post` (Apple) the callback is a cross-site POST, which a
SameSite=Lax cookie does not accompany: the POST is answered with a redirect to the same callback
as a GET (a top-level navigation, which does carry it).

A social sign-in writes, through the collector's log writer like the password path: an `identify`
from the source `social:<provider>` (the shared claims as traits, the subject as the identifier
`social:<provider>` in `context.externalIds`), and from `opencdp-accounts` `Signed Up`,
`Signed In` and `Account Linked` / `Account Unlinked`.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Form, Request, Response
from starlette.concurrency import run_in_threadpool

from opencdp.accounts import linking, signin, store
from opencdp.accounts.linking import LinkRefused
from opencdp.accounts.service import AccountsService
from opencdp.accounts.social import (
    PENDING_MAX_AGE,
    PendingLogin,
    RelyingParty,
    SocialIdentity,
    SocialLoginError,
)
from opencdp.accounts.store import Account
from opencdp.accounts.web import (
    PREFIX,
    AccountProblem,
    AccountsRoute,
    check_csrf,
    current_session,
    log,
    redirect,
    render,
    safe_next,
    secure_cookies,
    service_of,
    texts_for,
)
from opencdp.activation.secrets import SecretMissing, seal, unseal

router = APIRouter(route_class=AccountsRoute, include_in_schema=False)
COOKIE = "opencdp_social"
COOKIE_PATH = PREFIX + "/social"
LOGIN, LINK = "login", "link"


def _provider(service: AccountsService, name: str) -> RelyingParty:
    provider = service.settings.social_provider(name)
    if provider is None:
        raise AccountProblem("There is no such way to sign in here.")
    return RelyingParty(provider, service.social_discovery)


def _label(service: AccountsService, name: str) -> str:
    return service.settings.social_labels.get(name, name)


def _message(request: Request, service: AccountsService, message: str, status: int = 400) -> Response:
    title = texts_for(request, service)("error_title" if status >= 400 else "account_title")
    return render(request, service, "message.html", {"title": title, "message": message}, status)


def account_context(service: AccountsService, account_id: str) -> dict[str, Any]:
    """For the account page: the linked logins (each with its label) and the providers to link."""
    linked = {login.provider: login for login in linking.logins_of(service.engine, account_id)}
    password = linking.has_password(service.engine, account_id)
    ways = len(linked) + (1 if password else 0)
    return {
        "social_linked": [
            {"name": name, "label": _label(service, name), "can_unlink": ways > 1} for name in sorted(linked)
        ],
        "social_to_link": [
            {"name": p.name, "label": _label(service, p.name)}
            for p in service.settings.social
            if p.name not in linked
        ],
        "has_password": password,
    }


# --- starting -------------------------------------------------------------------------------


async def _begin(
    request: Request, service: AccountsService, name: str, intent: str, next_url: str, account_id: str = ""
) -> Response:
    rp = _provider(service, name)
    callback = f"{service.settings.issuer}{COOKIE_PATH}/{name}/callback"
    try:
        url, pending = await rp.begin(callback)
    except SocialLoginError as exc:
        log.warning("social sign-in cannot start", provider=name, error=str(exc))
        return _message(
            request,
            service,
            texts_for(request, service)("social_failed", provider=_label(service, name)),
            502,
        )
    state = {
        "pending": pending.to_dict(),
        "intent": intent,
        "next": safe_next(next_url),
        "account": account_id,
    }
    sealed, _ = seal(service.cdp.settings, orjson.dumps(state).decode())
    response = redirect(url)
    response.set_cookie(
        COOKIE,
        sealed or "",
        max_age=PENDING_MAX_AGE,
        httponly=True,
        samesite="lax",  # comes back with the provider's redirect, a top-level navigation
        secure=secure_cookies(request, service),
        path=COOKIE_PATH,
    )
    return response


@router.get(PREFIX + "/social/{name}/start")
async def start(request: Request, name: str, next: str = "") -> Response:
    """The "Continue with <provider>" button: to the provider, and back to `next` signed in."""
    return await _begin(request, service_of(request), name, LOGIN, next)


@router.post(PREFIX + "/social/{name}/link")
async def start_link(
    request: Request, name: str, csrf_token: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    """The account page's "Link <provider>": proof by the signed-in session (and its CSRF token)."""
    service = service_of(request)
    session = current_session(request, service)
    if session is None:
        return redirect(PREFIX + "/login?next=" + PREFIX + "/account")
    check_csrf(request, csrf_token, session)
    return await _begin(request, service, name, LINK, PREFIX + "/account", session.account_id)


# --- the callback ---------------------------------------------------------------------------


def _pending(request: Request, service: AccountsService, name: str) -> dict[str, Any] | None:
    try:
        opened = unseal(service.cdp.settings, request.cookies.get(COOKIE) or None, None)
        state = orjson.loads(opened or "null")
    except (SecretMissing, orjson.JSONDecodeError, ValueError):
        return None
    if not isinstance(state, dict) or not isinstance(state.get("pending"), dict):
        return None
    return state if state["pending"].get("provider") == name else None


@router.api_route(PREFIX + "/social/{name}/callback", methods=["GET", "POST"])
async def callback(request: Request, name: str) -> Response:
    service = service_of(request)
    if request.method == "POST":  # response_mode=form_post: come back as a GET, with the cookie
        form = [(k, v) for k, v in (await request.form()).multi_items() if isinstance(v, str)]
        return redirect(f"{COOKIE_PATH}/{name}/callback?{urlencode(form)}")
    texts = texts_for(request, service)
    rp, label = _provider(service, name), _label(service, name)
    state = _pending(request, service, name)
    if state is None:
        return _message(request, service, texts("social_expired"))
    try:
        identity = await rp.complete(PendingLogin.from_dict(state["pending"]), dict(request.query_params))
    except (SocialLoginError, TypeError, KeyError) as exc:
        log.warning("social sign-in failed", provider=name, error=str(exc))
        response = _message(request, service, texts("social_failed", provider=label))
    else:
        if state["intent"] == LINK:
            response = await _link_signed_in(request, service, identity, str(state["account"]))
        else:
            response = await _sign_in(request, service, identity, str(state["next"]))
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


def _identify(service: AccountsService, identity: SocialIdentity, account_id: str) -> dict[str, Any]:
    """The provider's shared claims as traits and its subject as an identifier, from the source
    `social:<provider>`."""
    return service.social_events(identity.provider.name).message(identity.identify_message(account_id))


async def _signed_in(
    request: Request,
    service: AccountsService,
    account: Account,
    rows: list[dict[str, Any]],
    next_url: str,
    method: str,
) -> Response:
    """Log the events, then finish exactly as a password sign-in does (`signin`): the code step
    first when the account has a second factor (a linked login is no way around it), then the SSO
    session and `Signed In`, and on — to the relying party's authorization request when the
    sign-in began there."""
    await service.log(rows)
    return await signin.first_step_passed(request, service, account, next_url, method)


async def _sign_in(
    request: Request, service: AccountsService, identity: SocialIdentity, next_url: str
) -> Response:
    engine, events, texts = service.engine, service.events(), texts_for(request, service)
    name = identity.provider.name
    source = identity.provider.source
    method = {"method": source}
    for _attempt in range(2):
        login = linking.find_login(engine, name, identity.subject)
        if login is not None:  # a returning customer
            account = store.find(engine, account_id=login.account_id)
            if account is None or account.disabled:
                return _message(request, service, texts("social_failed", provider=_label(service, name)), 403)
            await run_in_threadpool(linking.touch, engine, login)
            rows = [_identify(service, identity, account.id)]
            return await _signed_in(request, service, account, rows, next_url, source)
        email = identity.linkable_email()  # verified, and from a provider trusted for addresses
        existing = store.find(engine, email=email) if email else None
        if existing is not None:
            if existing.disabled or not existing.verified:
                # the account's own address is unproven: whoever registered it may not own it
                return _message(
                    request, service, texts("social_sign_in_first", provider=_label(service, name)), 409
                )
            try:
                linking.link(engine, existing.id, name, identity.subject, linking.VERIFIED_EMAIL)
            except LinkRefused:
                return _message(
                    request, service, texts("social_sign_in_first", provider=_label(service, name)), 409
                )
            rows = [
                _identify(service, identity, existing.id),
                events.track(
                    existing.id, "Account Linked", {"provider": name, "method": linking.VERIFIED_EMAIL}
                ),
            ]
            return await _signed_in(request, service, existing, rows, next_url, source)
        account = await run_in_threadpool(linking.sign_up, engine, name, identity.subject, email)
        if account is not None:
            rows = [
                _identify(service, identity, account.id),
                events.track(account.id, "Signed Up", method),
            ]
            return await _signed_in(request, service, account, rows, next_url, source)
        # made meanwhile by a second callback (or the address was taken meanwhile): look again
    return _message(request, service, texts("social_failed", provider=_label(service, name)), 409)


async def _link_signed_in(
    request: Request, service: AccountsService, identity: SocialIdentity, account_id: str
) -> Response:
    texts, name = texts_for(request, service), identity.provider.name
    label = _label(service, name)
    session = current_session(request, service)
    if session is None or session.account_id != account_id:  # signed out (or in as another) meanwhile
        return _message(request, service, texts("social_expired"))
    login = linking.find_login(service.engine, name, identity.subject)
    if login is not None and login.account_id != account_id:
        return _message(request, service, texts("social_taken", provider=label), 409)
    if login is None:
        try:
            linking.link(service.engine, account_id, name, identity.subject, linking.SESSION)
        except LinkRefused as exc:
            return _message(request, service, str(exc), 409)
        await service.log(
            [
                _identify(service, identity, account_id),
                service.events().track(
                    account_id, "Account Linked", {"provider": name, "method": linking.SESSION}
                ),
            ]
        )
    return redirect(f"{PREFIX}/account")


# --- unlinking ------------------------------------------------------------------------------


@router.post(PREFIX + "/social/{name}/unlink")
async def unlink(
    request: Request, name: str, csrf_token: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    service = service_of(request)
    session = current_session(request, service)
    if session is None:
        return redirect(PREFIX + "/login?next=" + PREFIX + "/account")
    check_csrf(request, csrf_token, session)
    try:
        gone = linking.unlink(service.engine, session.account_id, name)
    except LinkRefused as exc:
        return _message(request, service, str(exc), 409)
    properties = {"provider": name, "linked_by": gone.proof}
    await service.log([service.events().track(session.account_id, "Account Unlinked", properties)])
    return redirect(f"{PREFIX}/account")
