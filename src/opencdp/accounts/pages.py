"""The hosted pages: register, verify e-mail, sign in, forgot and reset password, the account page.

No message tells whether an address has an account: a wrong password and an unknown address get
the same words (and cost the same hash); registering an address that has an account answers
"check your e-mail" like any registration and mails the owner instead; "forgot password" always
answers that a link went out if there is an account.
"""

from __future__ import annotations

import contextlib
import math
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request, Response
from starlette.concurrency import run_in_threadpool

from opencdp.accounts import links, mail, policy, sessions, signin, social_pages, store
from opencdp.accounts.admission import paused
from opencdp.accounts.claims import profile_of
from opencdp.accounts.passwords import HasherBusy
from opencdp.accounts.service import AccountsService
from opencdp.accounts.sessions import AccountSession
from opencdp.accounts.store import Account, AccountError
from opencdp.accounts.web import (
    PREFIX,
    AccountProblem,
    AccountsRoute,
    check_csrf,
    current_session,
    redirect,
    render,
    safe_next,
    service_of,
    texts_for,
)
from opencdp.privacy.consent import list_purposes

router = APIRouter(route_class=AccountsRoute, include_in_schema=False)
Text = Annotated[str, Form(max_length=1000)]


def offered_purposes(service: AccountsService) -> list[dict[str, Any]]:
    """One opt-in checkbox per purpose defined in the project (or those named in
    OPENCDP_ACCOUNTS_PURPOSES), in that order."""
    defined = list_purposes(service.engine)
    if not service.settings.purposes:
        return defined
    by_name = {p["name"]: p for p in defined}
    return [by_name[name] for name in service.settings.purposes if name in by_name]


def _base_url(service: AccountsService) -> str:
    return service.settings.issuer + PREFIX


async def _mail(request: Request, service: AccountsService, to: str, kind: str, link: str) -> None:
    texts = texts_for(request, service)
    # a failure is logged by mail.send; the page must not say whether a mail went to an account
    with contextlib.suppress(mail.MailNotSent):
        async with paused(request.scope):  # the SMTP exchange is waiting, not work
            await mail.send(
                service.settings.smtp,
                service.settings.brand.name,
                to,
                texts(f"{kind}_subject"),
                texts(f"{kind}_body", link=link),
            )


def _link(service: AccountsService, purpose: str, account: Account) -> str:
    token = links.make(
        service.keys,
        service.settings.issuer,
        purpose,
        account.id,
        account.email,
        account.password_changed_at,
        service.settings.link_hours,
    )
    page = "verify" if purpose == links.VERIFY else "reset"
    return f"{_base_url(service)}/{page}?token={quote(token)}"


# --- register -------------------------------------------------------------------------------


def _register_page(request: Request, service: AccountsService, **context: Any) -> Response:
    context.setdefault("error", "")
    context.setdefault("email", "")
    context.setdefault("name", "")
    context.setdefault("chosen", [])
    context["next"] = safe_next(context.get("next"))
    status = context.pop("status", 200)
    return render(
        request, service, "register.html", {"purposes": offered_purposes(service), **context}, status
    )


@router.get(PREFIX + "/register")
def register_form(request: Request, next: str = "") -> Response:
    return _register_page(request, service_of(request), next=next)


@router.post(PREFIX + "/register")
async def register(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Text = "",
    name: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    service = service_of(request)
    check_csrf(request, csrf_token, None)
    form = await request.form()
    offered = [p["name"] for p in offered_purposes(service)]
    chosen = [p for p in form.getlist("consent") if isinstance(p, str) and p in offered]
    texts = texts_for(request, service)
    again = {"email": email, "name": name, "chosen": chosen, "next": next, "status": 400}
    try:
        address = store.normalise_email(email)
        policy.check(password, address)
        async with service.passwords.admitted():
            digest = await run_in_threadpool(service.passwords.hash, password)
    except (AccountError, policy.WeakPassword) as exc:
        return _register_page(request, service, error=str(exc), **again)
    except HasherBusy:
        return _register_page(request, service, error=texts("busy"), **{**again, "status": 503})
    account = await run_in_threadpool(store.create, service.engine, address, digest)
    if account is None:  # the address has an account: tell its owner, tell this page nothing
        existing = store.find(service.engine, email=address)
        if existing is not None:
            await _mail(request, service, address, "exists", f"{_base_url(service)}/forgot")
    else:
        events = service.events()
        traits = {"name": name.strip()} if name.strip() else {}
        rows = [
            events.identify(account.id, traits),
            events.track(account.id, "Signed Up", {"method": "password"}),
            *events.consent(account.id, {p: p in chosen for p in offered}, service.settings.consent_version),
        ]
        await service.log(rows)
        await _mail(request, service, address, "verify", _link(service, links.VERIFY, account))
    note = texts("check_mail", email=address, hours=service.settings.link_hours)
    return render(request, service, "message.html", {"title": texts("register"), "message": note})


@router.get(PREFIX + "/verify")
async def verify(request: Request, token: str = "") -> Response:
    service = service_of(request)
    try:
        claims = links.read(service.keys, service.settings.issuer, links.VERIFY, token)
    except links.BadLink:
        raise AccountProblem("bad_link") from None
    account = store.find(service.engine, account_id=claims.account_id)
    if account is None or account.email != claims.email:
        raise AccountProblem("bad_link")
    if store.mark_verified(service.engine, account.id):
        # only a verified address may link the account to a profile that has it
        await service.log([service.events().identify(account.id, {"email": account.email})])
    texts = texts_for(request, service)
    return render(request, service, "message.html", {"title": texts("sign_in"), "message": texts("verified")})


# --- sign in --------------------------------------------------------------------------------


def _login_page(request: Request, service: AccountsService, next: str, **context: Any) -> Response:
    status = context.pop("status", 200)
    full = {"error": "", "note": "", "email": "", "next": safe_next(next), **context}
    return render(request, service, "login.html", full, status)


@router.get(PREFIX + "/login")
def login_form(request: Request, next: str = "") -> Response:
    service = service_of(request)
    return _login_page(request, service, next)


@router.post(PREFIX + "/login")
async def login(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Text = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    service = service_of(request)
    check_csrf(request, csrf_token, None)
    texts = texts_for(request, service)
    account_key = email.strip().lower()
    address = request.client.host if request.client else "unknown"
    wait = service.throttle.retry_after(address, account_key)
    if wait:
        response = _login_page(
            request,
            service,
            next,
            email=email,
            status=429,
            error=texts("throttled", minutes=math.ceil(wait / 60)),
        )
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    try:
        async with service.passwords.admitted():
            account = await run_in_threadpool(
                store.authenticate, service.engine, service.passwords, email, password
            )
    except HasherBusy:
        response = _login_page(request, service, next, email=email, error=texts("busy"), status=503)
        response.headers["Retry-After"] = "5"
        return response
    if account is None:
        service.throttle.failed(address, account_key)
        return _login_page(request, service, next, email=email, error=texts("wrong_login"), status=400)
    service.throttle.succeeded(address, account_key)
    if not account.verified:  # only said to someone who knows the password
        await _mail(request, service, account.email, "verify", _link(service, links.VERIFY, account))
        return _login_page(request, service, next, email=email, note=texts("verify_first"), status=403)
    return await signin.first_step_passed(request, service, account, next, "password")


# --- forgot and reset -----------------------------------------------------------------------


@router.get(PREFIX + "/forgot")
def forgot_form(request: Request) -> Response:
    return render(request, service_of(request), "forgot.html", {"note": ""})


@router.post(PREFIX + "/forgot")
async def forgot(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    service = service_of(request)
    check_csrf(request, csrf_token, None)
    address = email.strip().lower()
    account = store.find(service.engine, email=address) if address else None
    if account is not None and not account.disabled:
        await _mail(request, service, account.email, "reset", _link(service, links.RESET, account))
    note = texts_for(request, service)("link_sent", email=address)
    return render(request, service, "forgot.html", {"note": note})


def _reset_account(service: AccountsService, token: str) -> Account:
    try:
        claims = links.read(service.keys, service.settings.issuer, links.RESET, token)
    except links.BadLink:
        raise AccountProblem("bad_link") from None
    account = store.find(service.engine, account_id=claims.account_id)
    if (
        account is None
        or account.disabled
        or account.email != claims.email
        or links.changed_stamp(account.password_changed_at) != claims.password_changed
    ):
        raise AccountProblem("bad_link")  # used already (the password changed since), or not ours
    return account


@router.get(PREFIX + "/reset")
def reset_form(request: Request, token: str = "") -> Response:
    service = service_of(request)
    _reset_account(service, token)
    return render(request, service, "reset.html", {"token": token, "error": ""})


@router.post(PREFIX + "/reset")
async def reset(
    request: Request,
    token: Annotated[str, Form(max_length=4000)] = "",
    password: Text = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    service = service_of(request)
    check_csrf(request, csrf_token, None)
    account = _reset_account(service, token)
    texts = texts_for(request, service)
    try:
        policy.check(password, account.email)
        async with service.passwords.admitted():
            digest = await run_in_threadpool(service.passwords.hash, password)
    except policy.WeakPassword as exc:
        return render(request, service, "reset.html", {"token": token, "error": str(exc)}, 400)
    except HasherBusy:
        return render(request, service, "reset.html", {"token": token, "error": texts("busy")}, 503)
    store.set_password(service.engine, account.id, digest)  # ends every session and token
    events = service.events()
    rows = [events.track(account.id, "Password Reset", {"method": "email_link"})]
    if store.mark_verified(service.engine, account.id):  # the link proved the mailbox
        rows.append(events.identify(account.id, {"email": account.email}))
    await service.log(rows)
    response = render(
        request,
        service,
        "message.html",
        {"title": texts("reset_title"), "message": texts("password_changed")},
    )
    response.delete_cookie(sessions.COOKIE, path=PREFIX)
    return response


# --- the account page -----------------------------------------------------------------------


def _account_page(
    request: Request,
    service: AccountsService,
    session: AccountSession,
    note: str = "",
    chosen: list[str] | None = None,
) -> Response:
    if chosen is None:
        profile = profile_of(service.engine, service.cdp.processor.rules, session.account_id)
        consent = (profile or {}).get("consent", {})
        chosen = [name for name, granted in consent.items() if granted is True]
    context = {"purposes": offered_purposes(service), "chosen": chosen, "note": note}
    context.update(social_pages.account_context(service, session.account_id))
    return render(request, service, "account.html", context, session=session)


@router.get(PREFIX + "/account")
def account_page(request: Request) -> Response:
    service = service_of(request)
    session = current_session(request, service)
    if session is None:
        return redirect(PREFIX + "/login?next=" + quote(PREFIX + "/account", safe=""))
    return _account_page(request, service, session)


@router.post(PREFIX + "/account")
async def account_save(request: Request, csrf_token: Annotated[str, Form(max_length=200)] = "") -> Response:
    service = service_of(request)
    session = current_session(request, service)
    if session is None:
        return redirect(PREFIX + "/login?next=" + quote(PREFIX + "/account", safe=""))
    check_csrf(request, csrf_token, session)
    form = await request.form()
    offered = [p["name"] for p in offered_purposes(service)]
    chosen = [p for p in form.getlist("consent") if isinstance(p, str) and p in offered]
    rows = service.events().consent(
        session.account_id, {p: p in chosen for p in offered}, service.settings.consent_version
    )
    await service.log(rows)
    return _account_page(request, service, session, texts_for(request, service)("saved"), chosen)
