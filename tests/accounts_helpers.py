"""Customer accounts under test: the real app served by uvicorn on a loopback port (in a thread of
the test process, so tests can look into the database), a real SMTP server (aiosmtpd) taking the
e-mails, a browser-like httpx client that keeps cookies, and relying parties that are Authlib's own
OAuth 2 client."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from authlib.integrations.httpx_client import OAuth2Client
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from joserfc import jwt
from joserfc.jwk import KeySet

from opencdp.accounts import clients
from opencdp.accounts.claims import profile_of
from opencdp.accounts.config import AccountSettings, Smtp
from opencdp.api.app import create_app
from opencdp.privacy.consent import seed_default_purposes
from opencdp.system import OpenCDP
from tests.receivers import MailRecorder, start_mail_server
from tests.serverproc import free_port

PASSWORD = "a long walk by the river"
#: One client for the tests' plain requests; `verify=False` only spares loading the CA bundle for
#: every client (~50 ms each): every URL here is plain http on the loopback.
HTTP = httpx.Client(timeout=20, verify=False)
SCOPE = "openid profile email phone"


@dataclass
class Provider:
    url: str
    cdp: OpenCDP
    mailbox: MailRecorder
    app: Any

    def browser(self) -> httpx.Client:
        """A browser: keeps cookies, follows nothing by itself (tests look at every redirect)."""
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=20, verify=False)

    def client(self, name: str, public: bool = False, **kwargs: Any) -> tuple[clients.Client, str | None]:
        return clients.add(
            self.cdp.engine,
            name,
            [f"https://{name}.example/callback"],
            public=public,
            post_logout_redirect_uris=[f"https://{name}.example/bye"],
            **kwargs,
        )

    def mail_link(self, to: str, path: str, timeout: float = 10) -> str:
        """The newest link to `path` in the mails received for `to` (waits for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for mail in reversed(self.mailbox.to(to)):
                found = re.search(rf"(https?://\S+{re.escape(path)}\?token=\S+)", mail.get_content())
                if found:
                    return found.group(1)
            time.sleep(0.02)
        raise AssertionError(f"no mail with a {path} link for {to}: {self.mailbox.mails}")

    def profile(self, account_id: str, until: Any = bool, timeout: float = 10) -> dict[str, Any]:
        """The account's profile once processing made it and `until(profile)` holds."""
        deadline = time.monotonic() + timeout
        while True:
            found = profile_of(self.cdp.engine, self.cdp.processor.rules, account_id)
            if found is not None and until(found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no such profile for {account_id} in time: {found}")
            time.sleep(0.05)


@contextmanager
def running_provider(cdp: OpenCDP, port: int | None = None, **settings: Any) -> Iterator[Provider]:
    """The app on `port` (a free one by default: a test that must know its URL before, such as
    a social login's callback, picks it)."""
    seed_default_purposes(cdp.engine)
    mailbox = MailRecorder()
    mail_server = start_mail_server(mailbox)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    account_settings = AccountSettings(
        issuer=url,
        smtp=Smtp(host="127.0.0.1", port=mail_server.port, security="none", sender="login@shop.example"),
        **settings,
    )
    app = create_app(cdp, account_settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="accounts-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("the test server did not start")
        time.sleep(0.01)
    try:
        yield Provider(url, cdp, mailbox, app)
    finally:
        server.should_exit = True
        thread.join(10)
        mail_server.stop()


@pytest.fixture
def idp(cdp: OpenCDP) -> Iterator[Provider]:
    with running_provider(cdp) as provider:
        yield provider


def code_at(secret: bytes, at: float) -> str:
    """The authenticator app's code at `at` (cryptography's TOTP, as the app computes it)."""
    return TOTP(secret, 6, SHA1(), 30).generate(at).decode()


def form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def register(
    browser: httpx.Client, email: str, password: str = PASSWORD, name: str = "", consent: tuple[str, ...] = ()
) -> httpx.Response:
    page = browser.get("/accounts/register")
    assert page.status_code == 200, page.text
    data: dict[str, Any] = {
        "email": email,
        "password": password,
        "name": name,
        "csrf_token": form_token(page.text),
    }
    data["consent"] = list(consent)
    return browser.post("/accounts/register", data=data)


def login(browser: httpx.Client, email: str, password: str = PASSWORD, next_url: str = "") -> httpx.Response:
    page = browser.get("/accounts/login", params={"next": next_url} if next_url else None)
    assert page.status_code == 200, page.text
    data = {"email": email, "password": password, "csrf_token": form_token(page.text), "next": next_url}
    return browser.post("/accounts/login", data=data)


def signed_up(idp: Provider, browser: httpx.Client, email: str, **kwargs: Any) -> None:
    """Register, follow the verification link from the mail, sign in."""
    assert register(browser, email, **kwargs).status_code == 200
    assert browser.get(idp.mail_link(email, "/accounts/verify")).status_code == 200
    assert login(browser, email).status_code == 303


@dataclass
class Party:
    """A relying party: Authlib's OAuth2Client with what it must remember between redirects."""

    idp: Provider
    client: clients.Client
    oauth: OAuth2Client
    state: str = ""
    nonce: str = ""
    verifier: str = ""

    @classmethod
    def of(cls, idp: Provider, client: clients.Client, secret: str | None) -> Party:
        oauth = OAuth2Client(
            client_id=client.client_id,
            client_secret=secret,
            scope=SCOPE,
            redirect_uri=client.redirect_uris[0],
            code_challenge_method="S256",
            token_endpoint_auth_method="none" if secret is None else "client_secret_basic",
            verify=False,
        )
        return cls(idp, client, oauth)

    def authorization_url(self, **params: Any) -> str:
        self.verifier = secrets.token_urlsafe(48)
        self.nonce = secrets.token_urlsafe(16)
        url, self.state = self.oauth.create_authorization_url(
            f"{self.idp.url}/accounts/authorize", code_verifier=self.verifier, nonce=self.nonce, **params
        )
        return str(url)

    def fetch_token(self, callback: str) -> dict[str, Any]:
        token: dict[str, Any] = self.oauth.fetch_token(
            f"{self.idp.url}/accounts/token",
            authorization_response=callback,
            code_verifier=self.verifier,
            state=self.state,
        )
        return token

    def id_token_claims(self, token: dict[str, Any]) -> dict[str, Any]:
        """The ID token verified as a relying party must: signature by a key of the JWKS, issuer,
        audience, expiry and our nonce."""
        keys = KeySet.import_key_set(HTTP.get(f"{self.idp.url}/accounts/jwks.json").json())
        decoded = jwt.decode(token["id_token"], keys, algorithms=["RS256"])
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": self.idp.url},
            aud={"essential": True, "value": self.client.client_id},
            nonce={"essential": True, "value": self.nonce},
            exp={"essential": True},
        ).validate(decoded.claims)
        return {**decoded.claims, "_kid": decoded.header["kid"]}

    def userinfo(self, access_token: str) -> httpx.Response:
        return httpx.get(
            f"{self.idp.url}/accounts/userinfo", headers={"Authorization": f"Bearer {access_token}"}
        )


def sign_in_at(party: Party, browser: httpx.Client, **params: Any) -> str:
    """The browser's trip from the relying party to the provider and back: the callback URL with
    the code. Signs in on the way when the provider asks."""
    response = browser.get(party.authorization_url(**params))
    if response.status_code == 303 and urlsplit(response.headers["location"]).path == "/accounts/login":
        raise AssertionError("the provider asked for a sign-in")
    assert response.status_code == 302, response.text
    return str(response.headers["location"])


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
