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
   was due), first alone (the baseline), then while `--rate` sign-ins/s arrive (open loop:
   sign-in i is due at i / rate, taken by the next free one of `--flood-connections` browsers, its
   latency counted from when it was due). `--flood-kind`: password sign-ins (the sign-in page and
   the password POST: a login), whole OpenID flows as above, or one phase of each (default). The
   issue's bar: the collector's p99 stays under 50 ms while 50 logins/s arrive.

Every answer is checked (status, redirect target, state, the ID token); any other answer is an
error: it is counted by step, the first ones are shown, and the script exits 1. A 503 with
`Retry-After` is not an error but the server shedding load (accounts/admission.py): counted as
"shed", the browser moves on to its next sign-in. The processor is
given time to catch up between phases. CPU columns: the `serve` process / PostgreSQL / this load
generator / everything else (the processor child of `serve` counts as "other").

Usage:
    .venv/bin/python benchmarks/accounts.py [--engine sqlite|postgresql|both] [--only flow|flood]
        [--users 50] [--seconds 10] [--warmup 2] [--rate 50] [--collector-rate 50]
        [--collector-batch 20] [--collector-connections 8] [--flood-connections 64]
        [--flood-kind password|flow|both]
        [--server-env OPENCDP_NAME=VALUE ...] [--markdown]

    # the numbers for BENCHMARKS.md (quiet machine; about a minute per engine)
    .venv/bin/python benchmarks/accounts.py --engine both --markdown
    # a smoke test
    nice -n 19 .venv/bin/python benchmarks/accounts.py --seconds 3 --warmup 1 --users 5 --rate 5

Needs the test extras (`pip install -e ".[test]"`) for aiosmtpd. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from rich.console import Console

from harness.events import make_bodies
from harness.load import Batch, Load, basic_auth
from harness.machine import CpuSnapshot, CpuUse, background_load, cpu_model, measured_code
from harness.mailbox import Mailbox
from harness.report import markdown_table, percentile, rich_table, wide_console
from harness.scratch import (
    HOST,
    Scratch,
    create_source,
    default_postgres_url,
    free_port,
    running_server,
    scratch_database,
    server_env_from,
    wait_processed,
)
from harness.signin import (
    STEPS,
    WHOLE,
    Provider,
    SignIns,
    accounts_env,
    add_client,
    closed_loop,
    due_between,
    fetch_keys,
    open_loop,
    register_customers,
)

COLLECTOR_P99_BAR_S = 0.050

console = wide_console(200)
err_console = Console(stderr=True)


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
    kinds = ["password", "flow"] if args.flood_kind == "both" else [args.flood_kind]
    for seed, (rate, kind) in enumerate([(0.0, ""), *((args.rate, k) for k in kinds)], start=10):
        with_logins = rate > 0
        load = collector_load(provider.port, write_key, args, seed=seed)
        load.begin(delay=0.2)
        measure_from = load.start + args.warmup
        run = None
        if with_logins:
            browsers = args.flood_connections
            run = SignIns(provider, browsers, open_loop(load.start, load.end, rate), kind=kind).begin()
        load.sleep_until(measure_from)
        before = CpuSnapshot.take(pid, db.postgres_db)
        load.sleep_until(load.end)
        cpu = CpuUse.between(before, CpuSnapshot.take(pid, db.postgres_db), load.end - measure_from)
        load.join()
        if run is not None:
            run.join(60)
        collected = load.latencies_due(measure_from, load.end)
        if with_logins:
            met = met and bool(collected) and percentile(collected, 99) < COLLECTOR_P99_BAR_S
        posts = run.latencies(STEPS[2], measure_from, load.end) if run else []
        flows = run.latencies(WHOLE, measure_from, load.end) if run else []
        errors = len(load.errors) + (sum(run.errors.values()) if run else 0)
        rows.append(
            [
                engine,
                f"collector + {rate:g} {FLOOD_KINDS[kind]}/s" if with_logins else "collector alone",
                f"{len(collected):,}",
                *(latency_cells(collected)[i] for i in (0, 2, 3)),
                f"{len(flows):,} of {due_between(load.start, measure_from, load.end, rate):,}" if run else "",
                f"{1000 * percentile(posts, 95):.1f}" if posts else "",
                f"{1000 * percentile(flows, 95):.1f}" if flows else "",
                f"{sum(run.refused.values()):,}" if run else "",
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


FLOOD_KINDS = {"password": "password sign-ins", "flow": "OpenID sign-in flows"}
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
    "whole sign-in p95 ms (from due)",
    "shed (503, retry)",
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
    parser.add_argument("--rate", type=float, default=50.0, help="sign-ins/s during the flood (default 50)")
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
        "--flood-kind",
        choices=["password", "flow", "both"],
        default="both",
        help="what arrives during the flood: password sign-ins (page + POST), whole OpenID flows, or "
        "one phase of each (default)",
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
        row[10] != "0" for row in flood_rows
    )
    if failed:
        err_console.print("[red]errors: the numbers above are not valid[/red]")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
