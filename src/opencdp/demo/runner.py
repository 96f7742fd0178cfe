"""`opencdp demo`: send the synthetic shop through the real collection API and report what landed."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from opencdp.access.keys import AccessError, create_source, rotate_write_key
from opencdp.demo.shop import TASK_SEGMENT, ShopGenerator
from opencdp.store.dialect import json_bool
from opencdp.system import OpenCDP

SOURCES = ("web", "app", "email")
BATCH_SIZE = 100


def demo_source_keys(cdp: OpenCDP) -> dict[str, str]:
    """A write key per demo source; existing demo sources get a fresh key (the old one is never shown)."""
    keys = {}
    for name in SOURCES:
        full = f"demo-{name}"
        try:
            keys[name] = create_source(cdp.engine, full)[1]
        except AccessError:
            keys[name] = rotate_write_key(cdp.engine, full)
    return keys


@contextmanager
def running_server(cdp: OpenCDP) -> Iterator[str]:
    """The real HTTP server on a free loopback port, in this process."""
    from opencdp.api.app import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(cdp), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the demo server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


def send_shop(url: str, keys: dict[str, str], generator: ShopGenerator, show_progress: bool = True) -> int:
    """Send every generated event in batches of 100; returns how many were acknowledged."""
    events = list(generator.events())
    pending: dict[str, list[dict[str, Any]]] = defaultdict(list)
    sent = 0
    columns = (
        TextColumn("[bold]sending demo events"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with (
        httpx.Client(base_url=url, timeout=60) as http,
        Progress(*columns, disable=not show_progress) as progress,
    ):
        task = progress.add_task("send", total=len(events))

        def flush(source: str) -> None:
            nonlocal sent
            batch = pending.pop(source, [])
            if not batch:
                return
            response = http.post("/v1/batch", json={"batch": batch}, auth=(keys[source], ""))
            if response.status_code != 200:
                raise RuntimeError(
                    f"the collector refused a demo batch: {response.status_code} {response.text}"
                )
            sent += len(batch)
            progress.advance(task, len(batch))

        for event in events:
            pending[event.source].append(event.message)
            if len(pending[event.source]) >= BATCH_SIZE:
                flush(event.source)
        for source in list(pending):
            flush(source)
    return sent


def demo_summary(engine: sa.Engine, now: datetime | None = None) -> dict[str, Any]:
    """What identity resolution made of the log: the numbers the demo prints, with the consent the
    identified customers gave and the members of the "2+ orders in 30 days, in Germany" audience
    (evaluated at `now`, by default the current time, as the dashboard would)."""
    from opencdp.segments.store import checked_query
    from opencdp.store.schema import identities, identity_conflicts, profiles

    with engine.connect() as conn:
        live = sa.select(profiles.c.id).where(profiles.c.merged_into.is_(None))
        identified = sa.select(identities.c.profile_id).where(
            identities.c.type == "user_id", identities.c.profile_id.in_(live)
        )
        total = conn.execute(sa.select(sa.func.count()).select_from(live.subquery())).scalar_one()
        customers = sa.select(profiles.c.consent).where(profiles.c.id.in_(identified.distinct()))
        consents = [r[0] or {} for r in conn.execute(customers)]
        known = len(consents)
        audience = checked_query(conn, TASK_SEGMENT, now=now or datetime.now(UTC))[1].subquery()
        members = conn.execute(sa.select(sa.func.count()).select_from(audience)).scalar_one()
        reachable = conn.execute(
            sa.select(sa.func.count())
            .select_from(audience.join(profiles, profiles.c.id == audience.c.id))
            .where(json_bool(profiles.c.consent, "email_marketing") == sa.true())
        ).scalar_one()
        return {
            "profiles": total,
            "identified": known,
            "anonymous": total - known,
            "merged": conn.execute(
                sa.select(sa.func.count()).select_from(profiles).where(profiles.c.merged_into.is_not(None))
            ).scalar_one(),
            "conflicts": conn.execute(
                sa.select(sa.func.count()).select_from(identity_conflicts)
            ).scalar_one(),
            "consent_recorded": sum(1 for c in consents if c),
            "declined": sum(1 for c in consents if c and not any(c.values())),
            "email_consent": sum(1 for c in consents if c.get("email_marketing") is True),
            "task_members": members,
            "task_email_consent": reachable,
            "example": conn.execute(
                sa.select(identities.c.value)
                .where(identities.c.type == "user_id")
                .order_by(identities.c.value)
                .limit(1)
            ).scalar(),
        }


def planted_summary(stats: Counter[str]) -> str:
    """The generator's planted situations in one line (counts of what was sent)."""
    errors = stats["Form Field Errored"]
    postcode = f" ({stats['postcode errors'] * 100 // errors} % on postcode)" if errors else ""
    return (
        f"planted: {stats['Checkout Started'] - stats['Order Completed']} abandoned checkouts, "
        f"{errors} checkout form errors{postcode} and {stats['Form Abandoned']} forms abandoned, "
        f"{stats['browser customers']} category browsers who never buy, {stats['frequent customers']} "
        f"frequent buyers, {stats['Product Shared']} products shared bringing {stats['referred visitors']} "
        f"visitors and {stats['orders through shares']} orders, {stats['withdrew e-mail consent']} "
        f"consent withdrawals, {stats['anonymous visitors']} anonymous-only visitors, "
        f"{stats['Product Reviewed']} product reviews and {stats['Ticket Created']} support tickets"
    )
