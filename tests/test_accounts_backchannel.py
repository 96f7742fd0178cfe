"""OpenID Connect Back-Channel Logout: signing out at one of the brand's sites tells the other
sites of the session, server to server, with a signed logout token (SQLite and PostgreSQL). The
sites are a real HTTP server started here that records what is posted to it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from opencdp.accounts import clients, store
from opencdp.accounts.backchannel import EVENT
from tests.accounts_helpers import Party, Provider, idp, sign_in_at, signed_up

__all__ = ["idp"]


class Sites:
    """The relying parties' back-channel endpoints: every POST recorded by path."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, list[str]]]] = []
        self.arrived = threading.Condition()
        sites = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                with sites.arrived:
                    sites.received.append((self.path, form))
                    sites.arrived.notify_all()
                self.send_response(200)
                self.send_header("Cache-Control", "no-store")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, seconds: float = 10.0) -> list[tuple[str, dict[str, list[str]]]]:
        deadline = time.monotonic() + seconds
        with self.arrived:
            while len(self.received) < count and time.monotonic() < deadline:
                self.arrived.wait(0.1)
            return list(self.received)


@pytest.fixture
def sites() -> Iterator[Sites]:
    running = Sites()
    yield running
    running.server.shutdown()


def test_logout_tells_every_site_of_the_session_and_no_other(idp: Provider, sites: Sites) -> None:
    meta = httpx.get(idp.url + "/.well-known/openid-configuration").json()
    assert meta["backchannel_logout_supported"] is True
    assert meta["backchannel_logout_session_supported"] is True
    browser = idp.browser()
    signed_up(idp, browser, "bcl@example.com")
    shop = Party.of(idp, *idp.client("shop", backchannel_logout_uri=sites.url + "/shop/logout"))
    desk = Party.of(idp, *idp.client("helpdesk", public=True))  # no back channel: not told
    idp.client("blog", backchannel_logout_uri=sites.url + "/blog/logout")  # not in this session
    shop_token = shop.fetch_token(sign_in_at(shop, browser))
    desk_token = desk.fetch_token(sign_in_at(desk, browser))
    sid = shop.id_token_claims(shop_token)["sid"]

    out = browser.get(
        "/accounts/logout",
        params={
            "id_token_hint": desk_token["id_token"],
            "post_logout_redirect_uri": "https://helpdesk.example/bye",
        },
    )
    assert out.status_code == 302
    received = sites.wait_for(1)
    time.sleep(0.3)  # anything else would have arrived by now
    assert [path for path, _ in sites.received] == ["/shop/logout"]
    token = received[0][1]["logout_token"][0]
    keys = KeySet.import_key_set(httpx.get(idp.url + "/accounts/jwks.json").json())
    decoded = jwt.decode(token, keys, algorithms=["RS256"])
    assert decoded.header["typ"] == "logout+jwt"
    account = store.find(idp.cdp.engine, email="bcl@example.com")
    assert account is not None
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": idp.url},
        aud={"essential": True, "value": shop.client.client_id},
        sub={"essential": True, "value": account.id},
        sid={"essential": True, "value": sid},
        iat={"essential": True},
        exp={"essential": True},
        jti={"essential": True},
    ).validate(decoded.claims)
    assert decoded.claims["events"] == {EVENT: {}} and "nonce" not in decoded.claims
    assert decoded.claims["exp"] - decoded.claims["iat"] <= 120
    # and the tokens are dead as before
    assert shop.userinfo(shop_token["access_token"]).status_code == 401


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # registration checks: one engine
def test_a_back_channel_uri_is_checked_and_shown(idp: Provider) -> None:
    with pytest.raises(clients.ClientError, match="back-channel logout URI"):
        idp.client("site", backchannel_logout_uri="http://site.example/logout")
    client, _ = idp.client("site2", backchannel_logout_uri="https://site2.example/logout")
    assert client.describe()["backchannel_logout_uri"] == "https://site2.example/logout"
