"""Customer accounts as the brand's sites and their customers meet them: verified customers
registered through the hosted pages (the verification link followed from a local mailbox), and
the OpenID Connect sign-in a browser and a relying party go through — authorization request,
sign-in form with its CSRF token, password, code, token exchange with PKCE, ID token checked —
one at a time (`Customer`) or many at once (`SignIns`, in a closed or an open loop).

Every answer is checked; anything else raises `UnexpectedAnswer`, which `SignIns` counts by step.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from harness.browser import Browser, Refused, UnexpectedAnswer, hidden_fields
from harness.mailbox import Mailbox
from harness.scratch import HOST, Scratch, cli

PASSWORD = "a long walk by the river"  # passes the accounts' password policy
REDIRECT_URI = "https://shop.example/auth/callback"
SCOPE = "openid email profile"
STEPS = ("authorize", "sign-in page", "sign in (POST)", "authorize -> code", "token")
WHOLE = "whole flow"
MAX_ERRORS = 200  # `SignIns` with this many errors stop early


# --------------------------------------------------------------------------------------------
# Set-up: the provider, a client application and verified customers


@dataclass
class Provider:
    port: int
    issuer: str
    client_id: str
    client_secret: str
    emails: list[str]
    keys: KeySet

    @property
    def client_auth(self) -> str:
        return "Basic " + base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()


def accounts_env(db: Scratch, port: int, mailbox: Mailbox) -> dict[str, str]:
    """Customer accounts on, at this server's own URL, mailing through the local SMTP server."""
    return db.with_env(
        OPENCDP_ACCOUNTS_ISSUER=f"http://{HOST}:{port}",
        OPENCDP_ACCOUNTS_SMTP_HOST=HOST,
        OPENCDP_ACCOUNTS_SMTP_PORT=str(mailbox.port),
        OPENCDP_ACCOUNTS_SMTP_SECURITY="none",
        OPENCDP_ACCOUNTS_MAIL_FROM="login@shop.example",
    )


def add_client(env: dict[str, str]) -> tuple[str, str]:
    """`opencdp accounts clients add shop --json`: a confidential client's id and secret."""
    made = orjson.loads(
        cli(env, "accounts", "clients", "add", "shop", "--redirect-uri", REDIRECT_URI, "--json")
    )
    return made["client_id"], made["client_secret"]


def local_path(url: str) -> str:
    """The path and query of a URL of the provider (relative ones are returned as they are)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def register(port: int, mailbox: Mailbox, email: str) -> None:
    """What a customer does: the registration form, then the link in the e-mail."""
    browser = Browser(port)
    try:
        page = browser.get("/accounts/register").expect("registration page", 200)
        fields = hidden_fields(page.body)
        form = {"email": email, "password": PASSWORD, "name": "Alex Doe", **fields}
        browser.post_form("/accounts/register", form).expect("register", 200)
        browser.get(local_path(mailbox.link(email, "/accounts/verify"))).expect("verify e-mail", 200)
    finally:
        browser.close()


def register_customers(port: int, mailbox: Mailbox, count: int) -> list[str]:
    emails = [f"customer-{n}@shop.example" for n in range(count)]
    # a few at a time: the server hashes two at once and refuses more than 16 waiting
    with ThreadPoolExecutor(max_workers=min(4, count)) as pool:
        list(pool.map(lambda email: register(port, mailbox, email), emails))
    return emails


def fetch_keys(port: int) -> KeySet:
    browser = Browser(port)
    try:
        return KeySet.import_key_set(
            orjson.loads(browser.get("/accounts/jwks.json").expect("JWKS", 200).body)
        )
    finally:
        browser.close()


# --------------------------------------------------------------------------------------------
# One sign-in, as a browser and a relying party do it


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class Customer:
    """A browser for the customer and a connection of the relying party's server to the token
    endpoint; `sign_in` returns the seconds each step took."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.browser = Browser(provider.port)
        self.relying_party = Browser(provider.port)

    def reconnect(self) -> None:
        self.close()
        self.browser = Browser(self.provider.port)
        self.relying_party = Browser(self.provider.port)

    def close(self) -> None:
        self.browser.close()
        self.relying_party.close()

    def sign_in(self, email: str) -> dict[str, float]:
        p, browser = self.provider, self.browser
        browser.forget()  # a new browser: no SSO session yet
        verifier, challenge = pkce_pair()
        state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": p.client_id,
                "redirect_uri": REDIRECT_URI,
                "scope": SCOPE,
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        authorize = browser.get(f"/accounts/authorize?{query}").expect(STEPS[0], 303)
        login_url = local_path(authorize.location(STEPS[0]))
        if not login_url.startswith("/accounts/login?"):
            raise UnexpectedAnswer(f"{STEPS[0]}: sent to {login_url!r} instead of the sign-in page")
        page = browser.get(login_url).expect(STEPS[1], 200)
        fields = hidden_fields(page.body)
        if "csrf_token" not in fields or not fields.get("next", "").startswith("/accounts/authorize?"):
            raise UnexpectedAnswer(f"{STEPS[1]}: no CSRF token or no way back in the form: {fields}")
        posted = browser.post_form("/accounts/login", {"email": email, "password": PASSWORD, **fields})
        back = local_path(posted.expect(STEPS[2], 303).location(STEPS[2]))
        if back != fields["next"]:
            raise UnexpectedAnswer(f"{STEPS[2]}: sent to {back!r} instead of the authorization request")
        coded = browser.get(back).expect(STEPS[3], 302)
        callback = coded.location(STEPS[3])
        answer = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
        if (
            not callback.startswith(REDIRECT_URI + "?")
            or answer.get("state") != state
            or "code" not in answer
        ):
            raise UnexpectedAnswer(f"{STEPS[3]}: a callback without our state or a code: {callback!r}")
        form = {
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
        token = self.relying_party.post_form("/accounts/token", form, {"Authorization": p.client_auth})
        tokens = orjson.loads(token.expect(STEPS[4], 200).body)
        self.check_id_token(tokens, nonce)
        answers = (authorize, page, posted, coded, token)
        return {step: answer.seconds for step, answer in zip(STEPS, answers, strict=True)}

    def password_sign_in(self, email: str) -> dict[str, float]:
        """A login and nothing else: the sign-in page, then the password (no OpenID round trip)."""
        browser = self.browser
        browser.forget()
        page = browser.get("/accounts/login").expect(STEPS[1], 200)
        fields = hidden_fields(page.body)
        if "csrf_token" not in fields:
            raise UnexpectedAnswer(f"{STEPS[1]}: no CSRF token in the form: {fields}")
        posted = browser.post_form("/accounts/login", {"email": email, "password": PASSWORD, **fields})
        posted.expect(STEPS[2], 303)
        return {STEPS[1]: page.seconds, STEPS[2]: posted.seconds}

    def check_id_token(self, tokens: dict[str, Any], nonce: str) -> None:
        """As a relying party must: signed by a key of the JWKS, ours, fresh, with our nonce."""
        if not tokens.get("access_token") or not tokens.get("id_token"):
            raise UnexpectedAnswer(f"{STEPS[4]}: no access or ID token in {sorted(tokens)}")
        try:
            claims = jwt.decode(tokens["id_token"], self.provider.keys, algorithms=["RS256"]).claims
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.provider.issuer},
                aud={"essential": True, "value": self.provider.client_id},
                nonce={"essential": True, "value": nonce},
                exp={"essential": True},
            ).validate(claims)
        except (JoseError, ValueError) as exc:
            raise UnexpectedAnswer(f"{STEPS[4]}: the ID token does not verify: {exc}") from None


# --------------------------------------------------------------------------------------------
# Many customers: a closed loop (N at once) or an open loop (flows due at a fixed rate)


@dataclass
class SignIns:
    """Sign-in flows from `browsers` threads. `schedule()` hands each thread the moment its next
    flow is due (None: stop); latencies of a whole flow count from that moment, and a flow's
    samples belong to the window it was due in (however late it finished)."""

    provider: Provider
    browsers: int
    schedule: Callable[[], float | None]
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # step: (due at, s)
    errors: Counter[str] = field(default_factory=Counter)
    first_errors: dict[str, str] = field(default_factory=dict)  # kind ("step: status"): first message
    stop: threading.Event = field(default_factory=threading.Event)
    #: "flow" (the whole OpenID flow) or "password" (sign-in page and password only)
    kind: str = "flow"
    #: requests the server shed with 503 + Retry-After (admission control), by step
    refused: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), name=f"customer-{n}", daemon=True)
            for n in range(self.browsers)
        ]

    def begin(self) -> SignIns:
        for thread in self._threads:
            thread.start()
        return self

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            self.stop.set()
            self._error("threads", "sign-in threads did not finish within the request timeout")

    def _error(self, step: str, message: str) -> None:
        with self._lock:
            self.errors[step] += 1
            kind = message.partition(" instead of")[0] if " instead of" in message else step
            if len(self.first_errors) < 10:
                self.first_errors.setdefault(kind, message)
            if sum(self.errors.values()) >= MAX_ERRORS:
                self.stop.set()

    def _run(self, n: int) -> None:
        customer = Customer(self.provider)
        emails = self.provider.emails
        flows = 0
        try:
            while not self.stop.is_set() and (due := self.schedule()) is not None:
                self.stop.wait(max(0.0, due - time.perf_counter()))
                email = emails[(n + flows * self.browsers) % len(emails)]
                flows += 1
                try:
                    steps = (
                        customer.sign_in(email) if self.kind == "flow" else customer.password_sign_in(email)
                    )
                except Refused as exc:
                    with self._lock:
                        self.refused[str(exc).partition(":")[0]] += 1
                    continue
                except UnexpectedAnswer as exc:
                    self._error(str(exc).partition(":")[0], str(exc))
                    continue
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    self._error("connection", f"{type(exc).__name__}: {exc}")
                    customer.reconnect()
                    continue
                done = time.perf_counter()
                with self._lock:
                    for step, seconds in steps.items():
                        self.samples.setdefault(step, []).append((due, seconds))
                    self.samples.setdefault(WHOLE, []).append((due, done - due))
        finally:
            customer.close()

    def latencies(self, step: str, since: float, until: float) -> list[float]:
        """Sorted seconds of `step` in the flows due within [since, until)."""
        return sorted(s for due, s in self.samples.get(step, []) if since <= due < until)


def closed_loop(start: float, end: float) -> Callable[[], float | None]:
    """Each thread's next flow at once, until `end`."""

    def schedule() -> float | None:
        now = max(time.perf_counter(), start)
        return now if now < end else None

    return schedule


def open_loop(start: float, end: float, rate: float) -> Callable[[], float | None]:
    """Flow i due at start + i / rate, to whichever thread asks first, until `end`."""
    lock = threading.Lock()
    taken = [0]

    def schedule() -> float | None:
        with lock:
            due = start + taken[0] / rate
            taken[0] += 1
        return due if due < end else None

    return schedule


def due_between(start: float, since: float, until: float, rate: float) -> int:
    """How many flows of `open_loop(start, …, rate)` fall due within [since, until)."""
    return sum(1 for i in range(int((until - start) * rate) + 2) if since <= start + i / rate < until)
