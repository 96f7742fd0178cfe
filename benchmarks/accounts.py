"""Customer accounts benchmark (issue 16): how fast customers sign in through opencdp's OpenID
provider, and whether a sign-in flood starves collection.

A real `opencdp serve` at its defaults, with customer accounts switched on
(OPENCDP_ACCOUNTS_ISSUER = its own loopback URL) and a local SMTP server (aiosmtpd) taking its
e-mails. Set-up, not measured: a confidential client application through the CLI (`opencdp
accounts clients add shop --json`); `--users` customers registered through the hosted page
(`POST /accounts/register`: the server hashes every password with argon2 as it does for anyone)
who follow the verification link from their e-mail; a source for the collector
(`opencdp sources create`).

1. **Sign-in flow** (`--only flow`): `--users` simulated customers at once, in a closed loop for
   `--warmup` + `--seconds`, each doing what a browser and a relying party do, as a new browser
   (no cookies) every time:
   `GET /accounts/authorize` (code flow with PKCE S256, state and nonce) -> 303 to the sign-in
   page -> `GET` it (CSRF token in the form, double-submit cookie) -> `POST /accounts/login`
   (argon2 verify) -> 303 back to the authorization request -> `GET` it with the SSO cookie ->
   302 to the client's redirect URI with the code and our state -> the relying party's
   `POST /accounts/token` (client_secret_basic, the PKCE verifier) -> 200 with an ID token, whose
   signature (the provider's JWKS), issuer, audience, expiry and nonce the client checks. Each
   step has its own percentiles; "whole flow" is the customer's wait from the first request.
2. **Sign-in flood** (`--only flood`): the collector at a fixed rate (`--collector-rate`
   `POST /v1/batch`/s of `--collector-batch` events, as benchmarks/ingest.py builds them, from
   `--collector-connections` keep-alive connections, each batch's latency counted from when it
   was due), first alone (the baseline), then while `--rate` sign-in flows/s
   arrive (open loop: flow i is due at i / rate, taken by the next free one of
   `--flood-connections` browsers, its latency counted from when it was due). The issue's bar: the
   collector's p99 stays under 50 ms while 50 sign-ins/s arrive.

Every answer is checked (status, redirect target, state, the ID token); any other answer is an
error: it is counted by step, the first ones are shown, and the script exits 1. The processor is
given time to catch up between phases. CPU columns: the `serve` process / PostgreSQL / this load
generator / everything else (the processor child of `serve` counts as "other").

Usage:
    .venv/bin/python benchmarks/accounts.py [--engine sqlite|postgresql|both] [--only flow|flood]
        [--users 50] [--seconds 10] [--warmup 2] [--rate 50] [--collector-rate 50]
        [--collector-batch 20] [--collector-connections 8] [--flood-connections 64]
        [--server-env OPENCDP_NAME=VALUE ...] [--markdown]

    # the numbers for BENCHMARKS.md (quiet machine; about a minute per engine)
    .venv/bin/python benchmarks/accounts.py --engine both --markdown
    # a smoke test
    nice -n 19 .venv/bin/python benchmarks/accounts.py --seconds 3 --warmup 1 --users 5 --rate 5

Needs the test extras (`pip install -e ".[test]"`) for aiosmtpd. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import os
import secrets
import sys
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
from rich.console import Console

from harness.browser import Browser, UnexpectedAnswer, hidden_fields
from harness.events import make_bodies
from harness.load import Batch, Load, basic_auth
from harness.machine import CpuSnapshot, CpuUse, background_load, cpu_model, measured_code
from harness.mailbox import Mailbox
from harness.report import markdown_table, percentile, rich_table, wide_console
from harness.scratch import (
    HOST,
    Scratch,
    cli,
    create_source,
    default_postgres_url,
    free_port,
    running_server,
    scratch_database,
    server_env_from,
    wait_processed,
)

PASSWORD = "a long walk by the river"  # passes the accounts' password policy
REDIRECT_URI = "https://shop.example/auth/callback"
SCOPE = "openid email profile"
STEPS = ("authorize", "sign-in page", "sign in (POST)", "authorize -> code", "token")
WHOLE = "whole flow"
COLLECTOR_P99_BAR_S = 0.050
MAX_ERRORS = 200  # a run this broken stops early

console = wide_console(200)
err_console = Console(stderr=True)


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
                    steps = customer.sign_in(email)
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


# --------------------------------------------------------------------------------------------
# The two measurements


def latency_cells(values: list[float]) -> list[str]:
    if not values:
        return ["", "", "", ""]
    return [f"{1000 * percentile(values, q):.1f}" for q in (50, 95, 99)] + [f"{1000 * values[-1]:.1f}"]


def measure_flow(
    engine: str, provider: Provider, db: Scratch, pid: int, args: argparse.Namespace
) -> list[list[str]]:
    start = time.perf_counter() + 0.2
    measure_from, end = start + args.warmup, start + args.warmup + args.seconds
    run = SignIns(provider, args.users, closed_loop(start, end)).begin()
    time.sleep(max(0.0, measure_from - time.perf_counter()))
    before = CpuSnapshot.take(pid, db.postgres_db)
    time.sleep(max(0.0, end - time.perf_counter()))
    cpu = CpuUse.between(before, CpuSnapshot.take(pid, db.postgres_db), end - measure_from)
    run.join(60)
    rows = []
    for step in (*STEPS, WHOLE):
        values = run.latencies(step, measure_from, end)
        rows.append(
            [
                engine,
                f"{args.users}",
                step,
                f"{len(values):,}",
                f"{len(values) / args.seconds:,.1f}",
                *latency_cells(values),
                str(run.errors.get(step, 0)) if step != WHOLE else str(sum(run.errors.values())),
                str(cpu or "") if step == WHOLE else "",
            ]
        )
    report_errors(f"{engine}: sign-in flow", run)
    return rows


def collector_load(port: int, write_key: str, args: argparse.Namespace, seed: int) -> Load:
    count = int(args.collector_rate * (args.warmup + args.seconds)) + args.collector_connections + 10
    auth = basic_auth(write_key)
    batches = [
        Batch(body, args.collector_batch, auth) for body in make_bodies(count, args.collector_batch, seed)
    ]
    return Load(
        port,
        batches,
        args.warmup + args.seconds,
        args.collector_connections,
        rate=args.collector_rate * args.collector_batch,
        from_due=True,
    )


def measure_flood(
    engine: str, provider: Provider, db: Scratch, pid: int, write_key: str, args: argparse.Namespace
) -> tuple[list[list[str]], bool]:
    rows: list[list[str]] = []
    met = True
    for rate in (0.0, args.rate):
        with_logins = rate > 0
        load = collector_load(provider.port, write_key, args, seed=11 if with_logins else 10)
        load.begin(delay=0.2)
        measure_from = load.start + args.warmup
        run = None
        if with_logins:
            browsers = args.flood_connections
            run = SignIns(provider, browsers, open_loop(load.start, load.end, rate)).begin()
        load.sleep_until(measure_from)
        before = CpuSnapshot.take(pid, db.postgres_db)
        load.sleep_until(load.end)
        cpu = CpuUse.between(before, CpuSnapshot.take(pid, db.postgres_db), load.end - measure_from)
        load.join()
        if run is not None:
            run.join(60)
        collected = load.latencies_due(measure_from, load.end)
        if with_logins:
            met = bool(collected) and percentile(collected, 99) < COLLECTOR_P99_BAR_S
        posts = run.latencies(STEPS[2], measure_from, load.end) if run else []
        flows = run.latencies(WHOLE, measure_from, load.end) if run else []
        errors = len(load.errors) + (sum(run.errors.values()) if run else 0)
        rows.append(
            [
                engine,
                f"collector + {rate:g} sign-ins/s" if with_logins else "collector alone",
                f"{len(collected):,}",
                *(latency_cells(collected)[i] for i in (0, 2, 3)),
                f"{len(flows):,} of {due_between(load.start, measure_from, load.end, rate):,}" if run else "",
                f"{1000 * percentile(posts, 95):.1f}" if posts else "",
                f"{1000 * percentile(flows, 95):.1f}" if flows else "",
                str(errors),
                str(cpu or ""),
            ]
        )
        if load.errors:
            err_console.print(f"[red]{engine}: the collector failed: {load.errors[0]}[/red]", markup=True)
        if run is not None:
            report_errors(f"{engine}: sign-ins during the flood", run)
        settle(db)
    return rows, met


def report_errors(label: str, run: SignIns) -> None:
    if run.errors:
        counts = ", ".join(f"{step}: {n}" for step, n in run.errors.most_common())
        err_console.print(
            f"[red]{label}: {sum(run.errors.values())} error(s) ({counts}); the first of each kind:[/red]"
        )
        for message in run.first_errors.values():
            err_console.print(f"  {message}", markup=False)


def settle(db: Scratch) -> None:
    """Let the processor catch up on the events of the last phase before the next one."""
    try:
        wait_processed(db.url, timeout=120)
    except TimeoutError as exc:
        err_console.print(f"[yellow]the processor did not catch up: {exc}[/yellow]")


def run_engine(engine: str, args: argparse.Namespace) -> tuple[list[list[str]], list[list[str]], bool]:
    with (
        scratch_database(
            engine, args.postgres_url, prefix="opencdp-accounts-", server_env=args.server_env
        ) as db,
        Mailbox() as mailbox,
    ):
        port = free_port()
        env = accounts_env(db, port, mailbox)
        client_id, secret = add_client(env)
        write_key = create_source(env)
        with running_server(db, env, port) as server:
            began = time.perf_counter()
            emails = register_customers(port, mailbox, args.users)
            provider = Provider(port, f"http://{HOST}:{port}", client_id, secret, emails, fetch_keys(port))
            settle(db)
            took = time.perf_counter() - began
            print(f"{engine}: {len(emails)} customers registered and verified in {took:.1f} s", flush=True)
            flow_rows = measure_flow(engine, provider, db, server.pid, args) if args.only != "flood" else []
            settle(db)
            flood_rows: list[list[str]] = []
            met = True
            if args.only != "flow":
                flood_rows, met = measure_flood(engine, provider, db, server.pid, write_key, args)
    return flow_rows, flood_rows, met


FLOW_COLUMNS = [
    "engine",
    "users",
    "step",
    "requests",
    "per s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "max ms",
    "errors",
    "CPU cores: server / postgres / client / other",
]
FLOOD_COLUMNS = [
    "engine",
    "load",
    "collector requests",
    "collector p50 ms",
    "collector p99 ms",
    "collector max ms",
    "sign-ins done of due",
    "sign in (POST) p95 ms",
    "whole flow p95 ms (from due)",
    "errors",
    "CPU cores: server / postgres / client / other",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--only", choices=["flow", "flood"], default=None, help="one of the two measurements")
    parser.add_argument(
        "--users", type=int, default=50, help="concurrent customers (and accounts), default 50"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured duration of each phase")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured warm-up before each phase")
    parser.add_argument(
        "--rate", type=float, default=50.0, help="sign-in flows/s during the flood (default 50)"
    )
    parser.add_argument(
        "--collector-rate", type=float, default=50.0, help="POST /v1/batch per second (default 50)"
    )
    parser.add_argument("--collector-batch", type=int, default=20, help="events per batch (default 20)")
    parser.add_argument(
        "--collector-connections",
        type=int,
        default=8,
        help="the collector's keep-alive connections (default 8)",
    )
    parser.add_argument(
        "--flood-connections",
        type=int,
        default=64,
        help="browsers that take the flood's sign-ins as they fall due (default 64)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a server setting away from its default, e.g. OPENCDP_ACCOUNTS_HASH_SLOTS=4 (repeatable)",
    )
    parser.add_argument("--postgres-url", default=default_postgres_url())
    parser.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    args = parser.parse_args(argv)
    if not all(1 <= n <= 1000 for n in (args.users, args.flood_connections, args.collector_connections)):
        parser.error("--users, --flood-connections and --collector-connections in [1, 1000]")
    if args.seconds <= 0 or args.warmup < 0 or args.seconds + args.warmup > 600:
        parser.error("--seconds > 0, --warmup >= 0, together at most 600 s")
    if args.rate <= 0 or args.collector_rate <= 0 or args.collector_batch < 1:
        parser.error("--rate, --collector-rate and --collector-batch must be positive")
    try:
        args.server_env = server_env_from(args.server_env)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = " ".join(f"{k}={v}" for k, v in args.server_env.items()) or "server defaults"
    print(f"{os.cpu_count()} x {cpu_model()}; {measured_code()}; {settings}", flush=True)
    busy = background_load()
    if busy is not None and busy > 0.15:
        err_console.print(f"[yellow]warning: {100 * busy:.0f}% of the CPUs are busy before the run[/yellow]")
    flow_rows: list[list[str]] = []
    flood_rows: list[list[str]] = []
    met = True
    for engine in ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]:
        try:
            flows, floods, engine_met = run_engine(engine, args)
        except Exception as exc:
            err_console.print(f"[red]{engine}: benchmark failed: {type(exc).__name__}: {exc}[/red]")
            return 1
        flow_rows += flows
        flood_rows += floods
        met = met and engine_met
    tables = []
    if flow_rows:
        tables.append(
            (f"Sign-in flow, {args.users} customers at once, {args.seconds:g} s", FLOW_COLUMNS, flow_rows, 3)
        )
    if flood_rows:
        title = (
            f"Collector ({args.collector_rate:g} x {args.collector_batch} events/s) under a sign-in flood "
            f"({args.rate:g}/s), {args.seconds:g} s"
        )
        tables.append((title, FLOOD_COLUMNS, flood_rows, 2))
    for title, columns, rows, left in tables:
        console.print(rich_table(title, columns, rows, left=left))
        if args.markdown:
            print(f"\n{title}\n\n{markdown_table(columns, rows, left=left)}\n")
    if flood_rows:
        verdict = "met" if met else "NOT met"
        print(f"collector p99 < {1000 * COLLECTOR_P99_BAR_S:.0f} ms during the flood: {verdict}")
    failed = any(row[9] != "0" for row in flow_rows if row[2] == WHOLE) or any(
        row[9] != "0" for row in flood_rows
    )
    if failed:
        err_console.print("[red]errors: the numbers above are not valid[/red]")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
