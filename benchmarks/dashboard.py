"""Dashboard response times: p50/p95 of each main page on the demo data set (target: p95 < 300 ms).

1. A SQLite database in a temporary directory (or `--keep DIR`, reused when it already holds the
   data) is filled by `opencdp demo --customers N` (default 2,000, the demo's default: the seeded
   shop sent through the real HTTP API and processed into profiles). Three segments and a saved
   report are added, and an admin user is created with `opencdp users create`.
2. `opencdp serve` runs on a free port on 127.0.0.1; one HTTP client signs in like a browser
   (cookie session, CSRF token) and requests every page `--runs` times after 3 warm-up requests,
   one request at a time. The time is the full request as the client sees it (server-side
   rendering included; no browser rendering).
3. A table of p50, p95 and max per page.

The demo's events end at the time of the run (its "now"), so the default "last 30 days" windows
hold a month of the shop's traffic.

Usage:
    .venv/bin/python benchmarks/dashboard.py [--customers 2000] [--runs 40] [--keep DIR]

Only 127.0.0.1 is contacted. Exit status 0 when everything ran (a missed target is reported).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sqlite3
import statistics
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from harness.report import percentile
from harness.scratch import HOST, Scratch, Server, cli, running_server, scratch_database
from opencdp.segments import store
from opencdp.store.database import create_engine
from opencdp.store.schema import identities, profiles, segments
from opencdp.ui import reports
from opencdp.ui.users import get_user

TARGET_MS = 300.0
EMAIL, PASSWORD = "bench@example.com", "benchmark password"
SEGMENTS = {
    "Engaged Germans": {
        "and": [
            {"trait": "country", "op": "eq", "value": "DE"},
            {
                "or": [
                    {"event": "Order Completed", "within_days": 90, "count": {"op": "gte", "value": 2}},
                    {"computed": "email_opens_30_days", "op": "gte", "value": 1},
                ]
            },
        ]
    },
    "Champions": {"computed": "rfm_segment", "op": "eq", "value": "Champions"},
    "Newsletter subscribers": {"trait": "newsletter", "op": "eq", "value": True},
}
console = Console()


def prepare(db: Scratch, customers: int) -> sa.Engine:
    if not (db.workdir / "opencdp.db").exists():
        started = time.perf_counter()
        with console.status(f"opencdp demo --customers {customers} …"):
            console.print(cli(db.env, "demo", "--customers", str(customers)).strip())
        console.print(f"demo data ready in {time.perf_counter() - started:.0f} s")
    engine = create_engine(db.settings())
    with engine.connect() as conn:
        have_user = conn.execute(
            sa.text("SELECT count(*) FROM users WHERE email = :e"), {"e": EMAIL}
        ).scalar()
        saved = {r[0] for r in conn.execute(sa.select(segments.c.name))}
    if not have_user:
        cli(
            db.env,
            "users",
            "create",
            "--email",
            EMAIL,
            "--role",
            "admin",
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
    for name, criteria in SEGMENTS.items():
        if name not in saved:
            store.save(engine, name, criteria, "benchmark")
    if not reports.list_saved(engine):
        params = reports.parse_params("orders_by_segment", {"segments": list(SEGMENTS)})
        reports.save(engine, "Revenue by segment", "orders_by_segment", params, get_user(engine, EMAIL).id)
    return engine


def server_url(server: Server) -> str:
    return f"http://{HOST}:{server.port}"


def sign_in(client: httpx.Client) -> str:
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, "no sign-in form"
    done = client.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": token.group(1)})
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', done.text)
    assert csrf, f"sign-in failed: {done.status_code}"
    return csrf.group(1)


def pages(engine: sa.Engine) -> dict[str, tuple[str, str, dict[str, object] | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(profiles.c.id, profiles.c.event_counts, profiles.c.traits).where(
                profiles.c.merged_into.is_(None)
            )
        ).all()
        rich = max(rows, key=lambda r: sum(r.event_counts.values()))
        email = conn.execute(
            sa.select(identities.c.value).where(
                identities.c.profile_id == rich.id, identities.c.type == "email"
            )
        ).scalar()
        segment_id = conn.execute(
            sa.select(segments.c.id).where(segments.c.name == "Engaged Germans")
        ).scalar()
    report_id = reports.list_saved(engine)[0]["id"]
    last_name = str(rich.traits.get("last_name", "smith")).lower()
    return {
        "overview (30 days)": ("GET", "/", None),
        "overview (90 days)": ("GET", "/?days=90", None),
        "profiles: recent": ("GET", "/profiles", None),
        "profiles: search e-mail (opens the profile)": ("GET", f"/profiles?q={email}", None),
        "profiles: filtered, by value, page 2": ("GET", "/profiles?seen=90&sort=value&page=2", None),
        "profiles: search trait value": ("GET", f"/profiles?q={last_name}", None),
        "profile 360°": ("GET", f"/profiles/{rich.id}", None),
        "segments list": ("GET", "/segments", None),
        "segment builder": ("GET", f"/segments/{segment_id}", None),
        "builder live count (POST)": (
            "POST",
            "/ui/api/segments/preview",
            {"criteria": SEGMENTS["Engaged Germans"]},
        ),
        "report: segment size": ("GET", "/reports/view?kind=segment_size", None),
        "report: events by source": ("GET", "/reports/view?kind=events_by_source", None),
        "report: orders by segment": ("GET", f"/reports/{report_id}", None),
        "report: conversion by segment": ("GET", "/reports/view?kind=conversion_by_segment", None),
    }


def measure(client: httpx.Client, csrf: str, method: str, path: str, body: object, runs: int) -> list[float]:
    times = []
    for i in range(runs + 3):
        started = time.perf_counter()
        if method == "POST":
            response = client.post(path, json=body, headers={"X-CSRF-Token": csrf})
        else:
            response = client.get(path, follow_redirects=True)  # an exact hit redirects to the profile
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{method} {path}: {response.status_code}\n{response.text[:500]}")
        if i >= 3:
            times.append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--keep", type=Path, default=None, help="Data directory to create or reuse")
    args = parser.parse_args()
    with scratch_database("sqlite", prefix="opencdp-bench-dashboard-", keep=args.keep) as db:
        engine = prepare(db, args.customers)
        with engine.connect() as conn:
            counts = {
                t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                for t in ("events", "profiles", "profile_events", "identities")
            }
        targets = pages(engine)
        engine.dispose()
        with (
            running_server(db) as server,
            httpx.Client(
                base_url=f"http://{HOST}:{server.port}", timeout=30, follow_redirects=True
            ) as client,
        ):
            csrf = sign_in(client)
            results = {name: measure(client, csrf, *spec, runs=args.runs) for name, spec in targets.items()}
    table = Table(
        title=f"Dashboard on the demo shop ({args.customers:,} customers), {args.runs} requests per page"
    )
    for column in ("page", "p50 ms", "p95 ms", "max ms", f"p95 < {TARGET_MS:.0f} ms"):
        table.add_column(column, justify="left" if column == "page" else "right")
    for name, times in results.items():
        p95 = percentile(sorted(times), 95)
        table.add_row(
            name,
            f"{statistics.median(times):.1f}",
            f"{p95:.1f}",
            f"{max(times):.1f}",
            "[green]yes[/]" if p95 < TARGET_MS else "[red]no[/]",
        )
    console.print(table)
    console.print(
        "data: "
        + ", ".join(f"{n:,} {t}" for t, n in counts.items())
        + f" · SQLite {sqlite3.sqlite_version} · Python {platform.python_version()} · "
        f"{os.cpu_count()} CPUs · {platform.platform()}"
    )


if __name__ == "__main__":
    main()
