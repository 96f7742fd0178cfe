"""The first run, as a new user tries it: the quickstart's `opencdp demo` on the embedded SQLite
(no database URL, a fresh data folder), then the dashboard in Chromium as a marketing manager with
the task "ordered at least twice in the last 30 days AND country = DE, export it for an e-mail
campaign": the overview has this month's orders, the segment built without code has members, the
reach is shown before the download, and the CSV holds exactly the members who may be e-mailed."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from opencdp.config import Settings
from opencdp.segments import queries, reach
from opencdp.segments.language import parse_criteria
from opencdp.store.database import create_engine
from opencdp.store.schema import identities, profiles, segment_memberships, segments
from tests.serverproc import Server
from tests.ui.browser_env import CHROMIUM, Dashboard, sign_in, watched_page

pytestmark = [
    pytest.mark.server,
    pytest.mark.xdist_group("first-run"),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install -y chromium)",
    ),
]
EMAIL, PASSWORD = "maren@example.com", "the marketing manager's password"
TASK = {
    "and": [
        {"event": "Order Completed", "count": {"op": "gte", "value": 2}, "within_days": 30},
        {"trait": "country", "op": "eq", "value": "DE"},
    ]
}


def _opencdp(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "opencdp", *args],
        env=env, input=stdin, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, f"opencdp {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """What `./scripts/quickstart` does after installing (`opencdp demo` with the defaults into a
    new data folder), a marketer created as the README says, and `opencdp serve`."""
    data_dir = tmp_path_factory.mktemp("first-run")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCDP_")}
    env.update(OPENCDP_DATA_DIR=str(data_dir), OPENCDP_LOG_LEVEL="WARNING")
    summary = _opencdp(env, "demo")
    assert "profiles" in summary
    marketer = ["users", "create", "--email", EMAIL, "--role", "marketer", "--password-stdin"]
    _opencdp(env, *marketer, stdin=PASSWORD)
    url = f"sqlite:///{data_dir / 'opencdp.db'}"
    assert (data_dir / "opencdp.db").exists(), "the demo did not use the embedded default"
    server = Server(env, data_dir / "server.log").start()
    engine = create_engine(Settings(data_dir=data_dir, database_url=url))
    try:
        yield Dashboard(server.url, env, engine)
    finally:
        engine.dispose()
        server.stop()


def _reachable_members(dashboard: Dashboard, segment_id: int) -> set[str]:
    """From the database: current members who consented to e-mail marketing and have an address."""
    with dashboard.engine.connect() as conn:
        members = conn.execute(
            sa.select(profiles.c.id, profiles.c.consent)
            .join(segment_memberships, segment_memberships.c.profile_id == profiles.c.id)
            .where(segment_memberships.c.segment_id == segment_id, segment_memberships.c.exited_at.is_(None))
        ).all()
        with_email = set(
            conn.execute(sa.select(identities.c.profile_id).where(identities.c.type == "email")).scalars()
        )
    return {m.id for m in members if (m.consent or {}).get("email_marketing") is True and m.id in with_email}


def test_the_first_run_story(browser: Any, quickstart: Dashboard, tmp_path: Path) -> None:
    url = quickstart.url
    with watched_page(browser) as page:
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        sign_in(page, url, EMAIL, PASSWORD)

        # the overview has this month's business: the demo ends now, not on a fixed day
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        orders = page.locator("[data-kpi='orders'] .value")
        expect(orders).not_to_have_text("0")
        assert int(orders.inner_text().replace(",", "")) > 0

        # the task's segment, built without code
        page.get_by_role("link", name="Segments", exact=True).click()
        page.get_by_role("link", name="New segment").click()
        page.locator("#segment-name").fill("DE repeat buyers")
        root = page.locator("#builder > .group")
        root.locator(":scope > .adders").get_by_role("button", name="+ Event").click()
        event = root.locator(":scope > .group-body > .cond.event")
        event.get_by_label("Event", exact=True).select_option(label="Order Completed")
        event.get_by_label("Times").fill("2")
        event.get_by_label("When").select_option("last")
        event.get_by_label("Within days").fill("30")
        root.locator(":scope > .adders").get_by_role("button", name="+ Trait").click()
        trait = root.locator(":scope > .group-body > .cond").nth(1)
        trait.get_by_label("Trait name").select_option("country")
        trait.get_by_label("Value", exact=True).fill("DE")

        count = queries.preview(quickstart.engine, TASK, 0)["count"]
        assert count > 0, "the task's segment is empty on a fresh quickstart"
        expect(page.locator("#live-count")).to_have_text(f"{count:,}")
        page.get_by_role("button", name="Save segment").click()
        expect(page.get_by_role("status")).to_have_text("Segment saved.")
        with quickstart.engine.connect() as conn:
            saved = conn.execute(sa.select(segments).where(segments.c.name == "DE repeat buyers")).one()
        assert parse_criteria(saved.criteria) == parse_criteria(TASK)  # defaults may be left out

        # the reach before the download, for an e-mail campaign
        page.locator("#export-purpose").select_option("email_marketing")
        found = reach.reach(quickstart.engine, "DE repeat buyers", "email_marketing")
        assert found.members == count and 0 < found.rows <= found.members
        expect(page.locator("#export-reach")).to_contain_text(
            f"{found.members} members · {found.with_identifier} with an e-mail address · "
            f"{found.consented} consented to email_marketing → {found.rows} rows"
        )
        with page.expect_download() as download:
            page.locator("#export-csv").click()
        target = tmp_path / "members.csv"
        download.value.save_as(target)
        with target.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        exported = {row["profile_id"] for row in rows}
        assert exported == _reachable_members(quickstart, saved.id)
        assert len(exported) == found.rows and all(row["email"] for row in rows)

    # nothing came from anywhere but this server
    origin = urlsplit(url).netloc
    assert requested and {urlsplit(u).netloc for u in requested if u.startswith("http")} == {origin}
