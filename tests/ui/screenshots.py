"""Screenshots of the dashboard's main pages for docs/ui.md, from a real server with the demo shop.

    .venv/bin/python -m tests.ui.screenshots [OUT_DIR]     # default: docs/screenshots

Needs /usr/bin/chromium (Debian's package) and `pip install playwright`; writes overview.png,
profile.png, segment-builder.png and report.png at 1366x860 (a laptop screen).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from opencdp.segments import store
from opencdp.store.schema import identities, profiles
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
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1366, "height": 860})
            sign_in(page, dashboard.url)
            _shoot(page, dashboard.url + "/", out / "overview.png")
            _shoot(page, f"{dashboard.url}/profiles/{person}", out / "profile.png")
            _shoot(
                page, f"{dashboard.url}/segments/{ids['Engaged Germans']}", out / "segment-builder.png", True
            )
            _shoot(page, f"{dashboard.url}/reports/{report_id}", out / "report.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshots"))
