"""The dashboard's Customer login page (issue 16), in-process on SQLite and PostgreSQL: the provider's
state without its secrets, the client applications, registering one (its secret shown once, and it
authenticates at the real token endpoint), problems named beside the field with what was typed kept,
removing one; only admins change anything, only with the session's CSRF token; every change is in
the audit log."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from html import unescape

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.accounts import clients
from opencdp.accounts.config import AccountSettings, Smtp
from opencdp.accounts.social import SocialProvider
from opencdp.api.app import create_app
from opencdp.store.schema import audit_log
from opencdp.system import OpenCDP
from opencdp.ui import users
from tests.ui.conftest import EMAILS, csrf_token, sign_in

PAGE = "/customer-login"
SMTP_PASSWORD, SOCIAL_SECRET = "smtp-password-nobody-reads", "social-secret-nobody-reads"
ACCOUNTS = AccountSettings(
    issuer="https://login.shop.example",
    smtp=Smtp(
        host="smtp.shop.example", username="mailer", password=SMTP_PASSWORD, sender="login@shop.example"
    ),
    social=(
        SocialProvider(
            name="google", issuer="https://accounts.google.com", client_id="g-id", client_secret=SOCIAL_SECRET
        ),
    ),
)


@pytest.fixture
def accounts_on(cdp: OpenCDP, ui_users: dict[str, users.User]) -> Iterator[TestClient]:
    """The app with customer accounts switched on, over https (the token endpoint wants it),
    signed in as the admin."""
    with TestClient(create_app(cdp, ACCOUNTS), base_url="https://testserver") as admin:
        assert sign_in(admin, EMAILS["admin"]).status_code == 303
        yield admin


def _form(client: TestClient, **fields: str) -> dict[str, str]:
    base = {
        "name": "Shop",
        "redirect_uris": "https://shop.example/auth/callback\n",
        "post_logout_redirect_uris": "",
        "backchannel_logout_uri": "",
        "client_id": "",
    }
    return {**base, **fields, "csrf_token": csrf_token(client, PAGE)}


def _audit(cdp: OpenCDP) -> list[tuple[str, str, str | None, dict[str, str]]]:
    with cdp.engine.connect() as conn:
        return [
            (r.actor, r.action, r.target_id, r.detail)
            for r in conn.execute(sa.select(audit_log).order_by(audit_log.c.id))
            if r.action.startswith("accounts.client.")
        ]


def _problems(html: str) -> list[str]:
    """The messages of the alert above the form."""
    found = re.search(r'id="form-problems">.*?<ul>(.*?)</ul>', html, re.S)
    return [unescape(m) for m in re.findall(r"<li>(.*?)</li>", found.group(1))] if found else []


def _text(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</', html, re.S)
    assert found, element_id
    return unescape(found.group(1))


def test_everyone_signed_in_sees_the_clients_and_how_to_switch_accounts_on(
    client: TestClient, cdp: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    assert client.get(PAGE, follow_redirects=False).headers["location"] == "/login?next=%2Fcustomer-login"
    shop, secret = clients.add(
        cdp.engine,
        "Shop <b>",
        ["https://shop.example/cb", "https://www.shop.example/cb"],
        post_logout_redirect_uris=["https://shop.example/bye"],
        backchannel_logout_uri="https://shop.example/backchannel",
        client_id="shop",
    )
    clients.add(
        cdp.engine, "App", ["http://localhost:3000/cb"], public=True, client_id="app", scopes=["openid"]
    )
    assert secret
    for role in ("analyst", "marketer"):
        as_role(role)
        page = client.get(PAGE)
        assert page.status_code == 200
        html = page.text
        assert 'href="/customer-login" class="active"' in html
        assert _text(html, "accounts-state") == '<span class="badge">off'
        assert "OPENCDP_ACCOUNTS_ISSUER" in html and "registered ahead" in html
        assert "not configured" in _text(html, "smtp-state")
        shop_row = html.split('id="client-row-shop"')[1].split("</tr>")[0]
        assert "Shop &lt;b&gt;" in shop_row and "<b>" not in shop_row and "confidential" in shop_row
        for uri in ("https://shop.example/cb", "https://www.shop.example/cb", "https://shop.example/bye"):
            assert f"<code>{uri}</code>" in shop_row
        assert "<code>https://shop.example/backchannel</code>" in shop_row
        app_row = html.split('id="client-row-app"')[1].split("</tr>")[0]
        assert "public" in app_row and "http://localhost:3000/cb" in app_row and ">openid<" in app_row
        assert app_row.count(">none<") == 2  # no post-logout URI, no back-channel URI
        # looking only: no form, no remove button, and never a secret or its hash
        assert 'id="client-form"' not in html and "/remove" not in html
        assert f"your role is {role}" in _text(html, "admins-only")
        assert secret not in html and shop.secret_hash not in html
    assert "No signing key yet" in html


def test_admin_registers_clients_that_work_at_the_token_endpoint(
    accounts_on: TestClient, cdp: OpenCDP, ui_users: dict[str, users.User]
) -> None:
    page = accounts_on.get(PAGE).text
    assert _text(page, "accounts-state") == '<span class="badge ok">on'
    assert "https://login.shop.example/.well-known/openid-configuration" in page
    assert "login@shop.example" in _text(page, "smtp-state") and "smtp.shop.example" in page
    assert '<span class="badge">google</span>' in page
    for secret in (SMTP_PASSWORD, SOCIAL_SECRET, "g-id", "mailer"):
        assert secret not in page
    assert "No client applications yet." in page and 'id="client-form"' in page

    fields = {
        "name": "Shop",
        "redirect_uris": "https://shop.example/cb\r\n\r\n  https://shop.example/cb2  \r\n",
        "post_logout_redirect_uris": "https://shop.example/bye",
        "backchannel_logout_uri": "https://shop.example/backchannel",
    }
    added = accounts_on.post(f"{PAGE}/clients", data=_form(accounts_on, **fields))
    assert added.status_code == 200, added.text
    client_id, secret = _text(added.text, "new-client-id"), _text(added.text, "new-client-secret")
    assert client_id.startswith("cl_") and secret.startswith("cs_")
    assert "it is not shown again" in _text(added.text, "secret-once")
    assert added.headers["cache-control"] == "no-store"
    found = clients.get(cdp.engine, client_id)
    assert found is not None and not found.public and found.check_client_secret(secret)
    assert found.redirect_uris == ("https://shop.example/cb", "https://shop.example/cb2")
    assert found.post_logout_redirect_uris == ("https://shop.example/bye",)
    assert found.backchannel_logout_uri == "https://shop.example/backchannel"
    assert found.scopes == clients.SCOPES
    listing = accounts_on.get(PAGE).text
    assert f'id="client-row-{client_id}"' in listing and secret not in listing

    # the secret authenticates at the token endpoint: a made-up code is then the only problem
    exchange = {
        "grant_type": "authorization_code",
        "code": "made-up",
        "redirect_uri": "https://shop.example/cb",
    }
    wrong = accounts_on.post("/accounts/token", data=exchange, auth=(client_id, secret + "x"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    right = accounts_on.post("/accounts/token", data=exchange, auth=(client_id, secret))
    assert right.status_code == 400 and right.json()["error"] == "invalid_grant", right.text

    public = accounts_on.post(
        f"{PAGE}/clients", data=_form(accounts_on, name="App", client_id="mobile-app", public="1")
    )
    assert public.status_code == 200, public.text
    assert _text(public.text, "new-client-id") == "mobile-app" and 'id="new-client-secret"' not in public.text
    assert "PKCE" in _text(public.text, "public-note")
    app = clients.get(cdp.engine, "mobile-app")
    assert app is not None and app.public and app.secret_hash is None
    refused = accounts_on.post(
        "/accounts/token", data={**exchange, "client_id": "mobile-app", "code_verifier": "v" * 43}
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", refused.text

    admin = f"user:{ui_users['admin'].id}"
    assert _audit(cdp) == [
        (admin, "accounts.client.add", client_id, {"name": "Shop"}),
        (admin, "accounts.client.add", "mobile-app", {"name": "App"}),
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_signing_keys_are_listed_read_only(accounts_on: TestClient) -> None:
    jwks = accounts_on.get("/accounts/jwks.json").json()  # the first key is made on first use
    kid = jwks["keys"][0]["kid"]
    page = accounts_on.get(PAGE).text
    row = page.split(f"<code>{kid}</code>")[1].split("</tr>")[0]
    assert "RS256" in row and ">signs<" in row
    assert "opencdp accounts keys rotate|retire" in page
    assert set(re.findall(r'<form method="post" action="([^"]+)"', page)) == {"/logout", f"{PAGE}/clients"}


def test_problems_are_named_beside_the_field_and_what_was_typed_stays(
    client: TestClient, cdp: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    as_role("admin")
    typed = {
        "name": "Typed <name>",
        "redirect_uris": "http://shop.example/cb",
        "post_logout_redirect_uris": "https://shop.example/bye",
        "backchannel_logout_uri": "https://shop.example/bc",
        "client_id": "typed-id",
        "public": "1",
    }
    bad = client.post(f"{PAGE}/clients", data=_form(client, **typed))
    assert bad.status_code == 400
    message = "Redirect URI 'http://shop.example/cb' must be https:// (http:// only for localhost)"
    assert _text(bad.text, "error-redirect_uris") == message
    assert _problems(bad.text) == [message]
    assert 'aria-invalid="true" aria-describedby="error-redirect_uris"' in bad.text
    assert 'value="Typed &lt;name&gt;"' in bad.text and ">http://shop.example/cb</textarea>" in bad.text
    assert (
        ">https://shop.example/bye</textarea>" in bad.text and 'value="https://shop.example/bc"' in bad.text
    )
    assert 'value="typed-id"' in bad.text and 'id="client-public" checked' in bad.text
    clients.add(cdp.engine, "Taken", ["https://taken.example/cb"], client_id="taken")
    many = "\n".join(f"https://s.example/{i}" for i in range(21))
    for fields, field, words in (
        ({"redirect_uris": "  \n "}, "redirect_uris", "at least one redirect URI"),
        ({"redirect_uris": "https://shop.example/cb#x"}, "redirect_uris", "no #fragment"),
        ({"redirect_uris": many}, "redirect_uris", "at most 20"),
        ({"post_logout_redirect_uris": "ftp://shop.example/"}, "post_logout_redirect_uris", "must be https"),
        ({"backchannel_logout_uri": "http://shop.example/bc"}, "backchannel_logout_uri", "must be https"),
        ({"backchannel_logout_uri": "https://s.example/" + "x" * 2000}, "backchannel_logout_uri", "2000"),
        ({"name": "   "}, "name", "needs a name"),
        ({"name": "n" * 201}, "name", "at most 200"),
        ({"name": "nul\x00"}, None, "NUL"),
        ({"client_id": "a b"}, "client_id", "3 to 64 letters"),
        ({"client_id": "taken"}, "client_id", "exists already"),
    ):
        response = client.post(f"{PAGE}/clients", data=_form(client, **fields))
        assert response.status_code == 400, (fields, response.text)
        [problem] = _problems(response.text)
        assert words in problem, (fields, problem)
        if field:
            assert _text(response.text, f"error-{field}") == problem
    assert [c.client_id for c in clients.list_all(cdp.engine)] == ["taken"]
    assert _audit(cdp) == []


def test_only_admins_with_the_csrf_token_change_clients(
    client: TestClient, cdp: OpenCDP, as_role: Callable[[str], TestClient], ui_users: dict[str, users.User]
) -> None:
    clients.add(cdp.engine, "Shop", ["https://shop.example/cb"], client_id="shop")
    remove = f"{PAGE}/clients/shop/remove"
    for role in ("analyst", "marketer"):
        as_role(role)
        token = csrf_token(client, PAGE)
        added = client.post(f"{PAGE}/clients", data=_form(client, client_id="sneaky"))
        assert added.status_code == 403 and "Only admins" in added.text
        removed = client.post(remove, data={"csrf_token": token})
        assert removed.status_code == 403 and "Only admins" in removed.text
    as_role("admin")
    forged = _form(client, client_id="forged")
    for data, headers in (
        ({**forged, "csrf_token": ""}, {}),
        ({**forged, "csrf_token": "not-the-token"}, {}),
        (forged, {"Origin": "https://evil.example"}),
    ):
        refused = client.post(f"{PAGE}/clients", data=data, headers=headers)
        assert refused.status_code == 403 and "This form has expired" in refused.text
    assert client.post(remove, data={}).status_code == 403
    assert [c.client_id for c in clients.list_all(cdp.engine)] == ["shop"]
    assert _audit(cdp) == []

    page = client.get(PAGE).text
    assert f'action="{remove}"' in page and 'data-confirm="Remove the client application Shop (shop)?' in page
    done = client.post(remove, data={"csrf_token": csrf_token(client, PAGE)}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"{PAGE}?done=removed"
    after = client.get(done.headers["location"]).text
    assert "Client removed" in after and 'id="client-row-shop"' not in after
    assert clients.get(cdp.engine, "shop") is None
    again = client.post(remove, data={"csrf_token": csrf_token(client, PAGE)})
    assert again.status_code == 404 and "no such client application" in again.text
    assert _audit(cdp) == [(f"user:{ui_users['admin'].id}", "accounts.client.remove", "shop", {})]
