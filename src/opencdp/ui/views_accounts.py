"""Customer login (issue 16): whether the brand's OpenID provider is switched on, and its client
applications — the sites and services customers sign in to — listed, registered and removed.

Everyone signed in may look (nothing secret is shown: no client secret, no SMTP password, no
social login's secret). Registering and removing are for admins only, like the admin API's
admin key: a client decides where customers' codes and tokens are sent. Everything goes through
`opencdp.accounts.clients` like the CLI and the API, and is audited with the same actions.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response

from opencdp.access import audit
from opencdp.accounts import clients
from opencdp.accounts.config import AccountSettings
from opencdp.accounts.keys import list_keys
from opencdp.accounts.service import AccountsService
from opencdp.api.auth import is_storable
from opencdp.ui.sessions import Session
from opencdp.ui.views_users import admin_checked
from opencdp.ui.web import NotFound, SignedIn, UIRoute, engine_of, redirect, render

router = APIRouter(route_class=UIRoute, include_in_schema=False)
Admin = Annotated[Session, Depends(admin_checked)]
PAGE = "/customer-login"
DONE = {"removed": "Client removed: its codes are gone and its tokens no longer work."}
#: as many as the admin API takes (`ClientIn`)
MAX_URIS = 20
#: the column's length (and the admin API's limit)
MAX_URI_LENGTH = 2000
#: which form field a `ClientError` is about, by how its message starts (longest first)
FIELDS = (
    ("post-logout redirect URI", "post_logout_redirect_uris"),
    ("back-channel logout URI", "backchannel_logout_uri"),
    ("redirect URI", "redirect_uris"),
    ("a client needs at least one redirect URI", "redirect_uris"),
    ("a client needs a name", "name"),
    ("a client id", "client_id"),
    ("a client with id", "client_id"),
)
EMPTY = {
    "name": "",
    "redirect_uris": "",
    "post_logout_redirect_uris": "",
    "backchannel_logout_uri": "",
    "client_id": "",
    "public": False,
}


def _settings(request: Request) -> AccountSettings:
    service: AccountsService = request.app.state.accounts
    return service.settings


def _page(
    request: Request,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    created: dict[str, Any] | None = None,
    done: str = "",
    status: int = 200,
) -> Response:
    engine = engine_of(request)
    settings = _settings(request)
    return render(
        request,
        "customer_login.html",
        {
            "nav": "customer-login",
            "accounts": settings,
            "social": [p.name for p in settings.social],
            "clients": clients.list_all(engine),
            "keys": list_keys(engine),
            "values": values or EMPTY,
            "errors": errors or {},
            "created": created,
            "done": done,
            "max_uris": MAX_URIS,
        },
        status,
    )


@router.get(PAGE)
def customer_login(request: Request, session: SignedIn, done: str = "") -> Response:
    return _page(request, done=DONE.get(done, ""))


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _field_of(message: str) -> str:
    return next((field for start, field in FIELDS if message.startswith(start)), "form")


def _check_form(values: dict[str, Any]) -> None:
    """What the admin API's model refuses before `clients.add` sees it: text no database stores
    (NUL), more URIs than it takes, a back-channel URI longer than its column."""
    for field, value in values.items():
        if isinstance(value, str) and not is_storable(value):
            raise clients.ClientError(f"{field.replace('_', ' ')}: text may not contain NUL characters")
    for field, what in (
        ("redirect_uris", "redirect URI"),
        ("post_logout_redirect_uris", "post-logout redirect URI"),
    ):
        if len(_lines(values[field])) > MAX_URIS:
            raise clients.ClientError(f"{what}s: at most {MAX_URIS}, one per line")
    if len(values["backchannel_logout_uri"].strip()) > MAX_URI_LENGTH:
        raise clients.ClientError(f"back-channel logout URI: at most {MAX_URI_LENGTH} characters")


@router.post(PAGE + "/clients")
def add_client(
    request: Request,
    session: Admin,
    name: Annotated[str, Form(max_length=1000)] = "",
    redirect_uris: Annotated[str, Form(max_length=100_000)] = "",
    post_logout_redirect_uris: Annotated[str, Form(max_length=100_000)] = "",
    backchannel_logout_uri: Annotated[str, Form(max_length=10_000)] = "",
    client_id: Annotated[str, Form(max_length=1000)] = "",
    public: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """The answer is the page itself, not a redirect: it shows the new secret, which is kept
    nowhere but in the client's hash (a reload would register another client)."""
    values: dict[str, Any] = {
        "name": name,
        "redirect_uris": redirect_uris,
        "post_logout_redirect_uris": post_logout_redirect_uris,
        "backchannel_logout_uri": backchannel_logout_uri,
        "client_id": client_id,
        "public": bool(public),
    }
    engine = engine_of(request)
    try:
        _check_form(values)
        client, secret = clients.add(
            engine,
            name,
            _lines(redirect_uris),
            public=bool(public),
            post_logout_redirect_uris=_lines(post_logout_redirect_uris),
            client_id=client_id.strip() or None,
            backchannel_logout_uri=backchannel_logout_uri.strip() or None,
        )
    except clients.ClientError as exc:
        message = str(exc)
        return _page(request, values, {_field_of(message): message[0].upper() + message[1:]}, status=400)
    detail = {"name": client.name}
    audit.record(
        engine, f"user:{session.user.id}", "accounts.client.add", "account_client", client.client_id, detail
    )
    return _page(request, created={"client": client, "secret": secret})


@router.post(PAGE + "/clients/{client_id}/remove")
def remove_client(request: Request, session: Admin, client_id: str) -> Response:
    engine = engine_of(request)
    if len(client_id) > 64 or not is_storable(client_id) or not clients.remove(engine, client_id):
        raise NotFound("There is no such client application (it may have been removed already).")
    audit.record(engine, f"user:{session.user.id}", "accounts.client.remove", "account_client", client_id)
    return redirect(f"{PAGE}?done=removed")
