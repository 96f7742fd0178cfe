"""The optional TOTP second factor, on SQLite and PostgreSQL: the rules (skew of one step either
side, replay refused, recovery codes once each) with a given time, then the pages — set-up from the
account page, sign-in with a code, wrong and replayed codes refused, switching off with a code, the
code step's own throttle — with the service's clock set, so no test waits for a step to pass."""

from __future__ import annotations

import base64
import html
import re
from typing import Any

import httpx
import sqlalchemy as sa

from opencdp.accounts import second_factor, store
from opencdp.store.schema import account_recovery_codes, account_second_factors, events
from opencdp.system import OpenCDP
from tests.accounts_helpers import Party, Provider, code_at, form_token, idp, login, sign_in_at, signed_up

__all__ = ["idp"]
T0 = 1_800_000_000.0  # a time at the very start of a 30-second step


def test_codes_skew_replay_and_recovery_codes(cdp: OpenCDP) -> None:
    engine, settings = cdp.engine, cdp.settings
    setup = second_factor.begin(engine, settings, "acct_1", "ada@example.com", "Shop")
    assert setup.uri.startswith("otpauth://totp/Shop:ada%40example.com?") and "period=30" in setup.uri
    assert base64.b32decode(setup.text.replace(" ", "")) == setup.secret
    with engine.connect() as conn:  # sealed, not the secret in clear
        stored = conn.execute(sa.select(account_second_factors.c.secret)).scalar_one()
    assert base64.b32encode(setup.secret).decode() not in stored
    assert not second_factor.enabled(engine, "acct_1")
    assert (
        second_factor.check(engine, settings, "acct_1", code_at(setup.secret, T0), T0) is None
    )  # not on yet

    assert second_factor.confirm(engine, settings, "acct_1", "000000", T0) in (None, [])  # wrong
    codes = second_factor.confirm(engine, settings, "acct_1", code_at(setup.secret, T0), T0)
    assert codes is not None and len(codes) == 10 and len(set(codes)) == 10
    assert second_factor.enabled(engine, "acct_1")
    with engine.connect() as conn:  # only hashes of the recovery codes
        hashes = set(conn.execute(sa.select(account_recovery_codes.c.code_hash)).scalars())
    assert not hashes & {c.upper().replace("-", "") for c in codes}

    check = second_factor.check
    assert check(engine, settings, "acct_1", code_at(setup.secret, T0), T0) is None  # replay
    assert check(engine, settings, "acct_1", code_at(setup.secret, T0 - 30), T0) is None  # older step
    assert check(engine, settings, "acct_1", code_at(setup.secret, T0 + 30), T0) == "totp"  # one ahead
    assert check(engine, settings, "acct_1", code_at(setup.secret, T0 + 60), T0) is None  # two ahead
    later = T0 + 150  # step +5: the code of step +4 (one behind) still counts
    assert check(engine, settings, "acct_1", code_at(setup.secret, later - 30), later) == "totp"
    assert check(engine, settings, "acct_1", code_at(setup.secret, later - 30), later) is None
    assert check(engine, settings, "acct_1", "12345", later) is None

    assert check(engine, settings, "acct_1", codes[0], later) == "recovery_code"
    assert check(engine, settings, "acct_1", codes[0], later) is None  # once only
    assert (
        check(engine, settings, "acct_1", f" {codes[1].upper().replace('-', ' ')} ", later) == "recovery_code"
    )
    assert check(engine, settings, "acct_2", codes[2], later) is None  # another account's
    assert second_factor.recovery_codes_left(engine, "acct_1") == 8

    second_factor.disable(engine, "acct_1")
    assert not second_factor.enabled(engine, "acct_1")
    assert check(engine, settings, "acct_1", codes[3], later) is None


def _key(html: str) -> bytes:
    found = re.search(r'id="factor-key">([A-Z2-7 ]+)<', html)
    assert found, html
    return base64.b32decode(found.group(1).replace(" ", ""))


def _recovery_codes(html: str) -> list[str]:
    return re.findall(r"<li><code>([a-z2-7-]{19})</code></li>", html)


def _set_up(browser: httpx.Client, idp: Provider) -> tuple[bytes, list[str]]:
    page = browser.get("/accounts/second-factor")
    assert page.status_code == 200 and "is off" in page.text
    shown = browser.post("/accounts/second-factor/setup", data={"csrf_token": form_token(page.text)})
    assert shown.status_code == 200 and 'href="otpauth://totp/' in shown.text
    link = re.search(r'href="([^"]+)" id="otpauth"', shown.text)
    image = re.search(r'<img src="([^"]+)"[^>]*id="otpauth-qr"', shown.text)
    assert link and image
    qr, uri = html.unescape(image.group(1)), html.unescape(link.group(1))
    assert qr.startswith("data:image/svg+xml") and qr == second_factor.Setup(b"", uri).qr  # of that URI
    secret = _key(shown.text)
    token = form_token(shown.text)
    wrong = browser.post("/accounts/second-factor/confirm", data={"csrf_token": token, "code": "000001"})
    assert wrong.status_code == 400 and _key(wrong.text) == secret  # the same key, shown again
    done = browser.post(
        "/accounts/second-factor/confirm", data={"csrf_token": token, "code": code_at(secret, T0)}
    )
    assert done.status_code == 200, done.text
    codes = _recovery_codes(done.text)
    assert len(codes) == 10
    return secret, codes


def _code_step(idp: Provider, email: str, code: str) -> tuple[httpx.Client, httpx.Response]:
    browser = idp.browser()
    first = login(browser, email)
    assert first.status_code == 303 and first.headers["location"] == "/accounts/login/code"
    assert "opencdp_account" not in browser.cookies  # the password alone: no session
    assert browser.get("/accounts/account").status_code == 303  # …so the account page asks to sign in
    page = browser.get("/accounts/login/code")
    assert page.status_code == 200 and 'autocomplete="one-time-code"' in page.text
    return browser, browser.post(
        "/accounts/login/code", data={"csrf_token": form_token(page.text), "code": code}
    )


def _logged(idp: Provider, account_id: str, name: str) -> list[dict[str, Any]]:
    with idp.cdp.engine.connect() as conn:
        rows = conn.execute(
            sa.select(events.c.payload).where(events.c.user_id == account_id).order_by(events.c.id)
        )
        return [r.payload for r in rows if r.payload.get("event") == name]


def test_set_up_sign_in_with_a_code_and_switch_off(idp: Provider) -> None:
    idp.app.state.accounts.clock = lambda: T0
    browser = idp.browser()
    signed_up(idp, browser, "ada@example.com")
    account = store.find(idp.cdp.engine, email="ada@example.com")
    assert account is not None
    secret, codes = _set_up(browser, idp)
    assert len(_logged(idp, account.id, "Second Factor Enabled")) == 1

    # the code of the confirmation is spent; a wrong one too; the next step's works
    other, used = _code_step(idp, "ada@example.com", code_at(secret, T0))
    assert used.status_code == 400 and "not right" in used.text and "opencdp_account" not in other.cookies
    assert other.post("/accounts/login/code", data={"code": "123456"}).status_code == 403  # no CSRF token
    other, signed_in = _code_step(idp, "ada@example.com", code_at(secret, T0 + 30))
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/accounts/account"
    assert other.get("/accounts/account").status_code == 200
    # relying parties learn how the customer signed in (RFC 8176 `amr`)
    client, secret_of_client = idp.client("shop")
    party = Party.of(idp, client, secret_of_client)
    claims = party.id_token_claims(party.fetch_token(sign_in_at(party, other)))
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    # the challenge ended with the sign-in: posting the form again does nothing
    assert other.get("/accounts/login/code").status_code == 400

    # a recovery code signs in once
    _, recovered = _code_step(idp, "ada@example.com", codes[0])
    assert recovered.status_code == 303
    _, refused = _code_step(idp, "ada@example.com", codes[0])
    assert refused.status_code == 400
    methods = [e["properties"].get("second_factor") for e in _logged(idp, account.id, "Signed In")]
    assert methods[-2:] == ["totp", "recovery_code"]

    # switching off needs a current code
    page = other.get("/accounts/second-factor")
    assert "Recovery codes left: 9" in page.text
    token = form_token(page.text)
    assert other.post("/accounts/second-factor/disable", data={"csrf_token": token}).status_code == 400
    stale = {"csrf_token": token, "code": code_at(secret, T0 + 30)}  # used already
    assert other.post("/accounts/second-factor/disable", data=stale).status_code == 400
    assert second_factor.enabled(idp.cdp.engine, account.id)
    idp.app.state.accounts.clock = lambda: T0 + 60
    off = other.post(
        "/accounts/second-factor/disable", data={"csrf_token": token, "code": code_at(secret, T0 + 60)}
    )
    assert off.status_code == 200 and "is off" in off.text
    assert not second_factor.enabled(idp.cdp.engine, account.id)
    assert len(_logged(idp, account.id, "Second Factor Disabled")) == 1
    assert login(idp.browser(), "ada@example.com").headers["location"] == "/accounts/account"  # no code now


def test_the_code_step_is_throttled_apart_from_the_password(idp: Provider) -> None:
    idp.app.state.accounts.clock = lambda: T0
    browser = idp.browser()
    signed_up(idp, browser, "grace@example.com")
    secret, _ = _set_up(browser, idp)
    for _ in range(5):
        _, wrong = _code_step(idp, "grace@example.com", "000000")
        assert wrong.status_code == 400
    # the right password again (which clears the password throttle) buys no more guesses
    _, throttled = _code_step(idp, "grace@example.com", code_at(secret, T0 + 30))
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    assert "Too many wrong codes" in throttled.text
