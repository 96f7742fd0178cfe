"""Screenshots of the dashboard's main pages for docs/ui.md, from a real server with the demo shop.

    .venv/bin/python -m tests.ui.screenshots [OUT_DIR]     # default: docs/screenshots

Needs /usr/bin/chromium (Debian's package) and `pip install playwright`; writes overview.png,
profile.png, profiles.png, segment-builder.png, report.png, destinations.png, destination.png and
dead-letters.png at 1366x860 (a laptop screen).
"""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from opencdp.activation import outbox
from opencdp.activation.audiences import create_sync
from opencdp.activation.destinations import DestinationSpec, create
from opencdp.activation.forwarding import create_rule
from opencdp.config import Settings
from opencdp.segments import store
from opencdp.store.schema import deliveries, destinations, identities, profiles
from opencdp.ui import reports
from opencdp.ui.users import get_user
from tests.ui.browser_env import EMAIL, chromium, running_dashboard, sign_in

SEGMENTS = {
    "Engaged Germans": {
        "and": [
            {"trait": "country", "op": "eq", "value": "DE"},
            {
                "or": [
                    {"event": "Order Completed", "within_days": 30, "count": {"op": "gte", "value": 2}},
                    {"computed": "email_opens_30_days", "op": "gte", "value": 1},
                ]
            },
            {
                "not": {
                    "event": "Product Viewed",
                    "where": [{"property": "category", "op": "eq", "value": "kids"}],
                }
            },
        ]
    },
    "Champions": {"computed": "rfm_segment", "op": "eq", "value": "Champions"},
    "Newsletter subscribers": {"trait": "newsletter", "op": "eq", "value": True},
}


def _rich_profile(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(profiles.c.id, profiles.c.event_counts)
            .join(identities, identities.c.profile_id == profiles.c.id)
            .where(identities.c.type == "phone", profiles.c.merged_into.is_(None))
        ).all()
    return str(max(rows, key=lambda r: sum(r.event_counts.values())).id)


def _destinations(engine: sa.Engine, settings: Settings) -> int:
    """Three destinations; the webhook with a forwarding rule, an audience sync, a recent error
    and three dead letters (written as such: nothing is sent to the made-up addresses)."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        hook = create(
            conn,
            settings,
            DestinationSpec(
                name="CRM webhook",
                kind="webhook",
                config={"url": "https://crm.example.com/hooks/opencdp", "batch_size": 50},
                secret="signing key",
                purpose="email_marketing",
            ),
        )
        mail = DestinationSpec(
            name="Order follow-up",
            kind="smtp",
            config={
                "host": "smtp.example.com",
                "from_address": "orders@shop.example",
                "subject": "Thanks",
                "text": "Hi",
            },
            enabled=False,
        )
        create(conn, settings, mail)
        files = DestinationSpec(name="Nightly CRM file", kind="file", config={"folder": "/srv/exports/crm"})
        create(conn, settings, files)
        create_rule(
            conn,
            "Orders over 100",
            hook,
            {"events": ["Order Completed"], "where": [{"property": "revenue", "op": "gte", "value": 100}]},
        )
        create_sync(conn, "Champions", hook)
        rows = [outbox.decision(hook, f"fwd-1-{900 + i}", "event", {"rule": 1}, at=now) for i in range(3)]
        outbox.write(conn, rows)
        error = 'HTTP 422: {"error": "contact has no e-mail address"}'
        conn.execute(
            deliveries.update()
            .where(deliveries.c.key.in_([r["key"] for r in rows]))
            .values(status=outbox.DEAD, attempts=1, last_error=error, finished_at=now)
        )
        conn.execute(
            destinations.update()
            .where(destinations.c.id == hook)
            .values(last_error=error, last_error_at=now, last_success_at=now - timedelta(minutes=3))
        )
    return hook


def _shoot(page: Any, url: str, target: Path, counted: bool = False) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    if counted:  # the builder's live count has arrived
        expect(page.locator("#live-status")).to_contain_text("Counted just now")
    page.screenshot(path=str(target))
    print(f"wrote {target} ({target.stat().st_size // 1024} KB)")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_dashboard(Path(tmp), customers=300, injection=False) as dashboard,
    ):
        engine = dashboard.engine
        ids = {name: store.save(engine, name, criteria, "").id for name, criteria in SEGMENTS.items()}
        marketer = get_user(engine, EMAIL).id
        params = reports.parse_params("orders_by_segment", {"segments": list(SEGMENTS)})
        report_id = reports.save(engine, "Revenue by segment, 90 days", "orders_by_segment", params, marketer)
        person = _rich_profile(engine)
        hook = _destinations(engine, Settings(data_dir=Path(tmp), database_url=str(engine.url)))
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1366, "height": 860})
            sign_in(page, dashboard.url)
            _shoot(page, dashboard.url + "/", out / "overview.png")
            _shoot(page, f"{dashboard.url}/profiles/{person}", out / "profile.png")
            _shoot(page, f"{dashboard.url}/profiles?seen=90&sort=value", out / "profiles.png")
            _shoot(
                page, f"{dashboard.url}/segments/{ids['Engaged Germans']}", out / "segment-builder.png", True
            )
            _shoot(page, f"{dashboard.url}/reports/{report_id}", out / "report.png")
            _shoot(page, f"{dashboard.url}/destinations", out / "destinations.png")
            _shoot(page, f"{dashboard.url}/destinations/{hook}", out / "destination.png")
            _shoot(page, f"{dashboard.url}/deliveries", out / "dead-letters.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshots"))
