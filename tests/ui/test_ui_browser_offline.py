"""A first run that convinces: nothing from outside — every request the browser makes on the API
docs and on every main dashboard page goes to the server's own origin (no CDN, no fonts, no
validator) and /docs really renders the operations from the assets the server ships; and the
export form says how many rows an export will have before anything is downloaded."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from opencdp.privacy.consent import define_purpose
from opencdp.segments import reach, store
from opencdp.store.schema import identities, profiles
from tests.ui.browser_env import CHROMIUM, Dashboard, sign_in

pytestmark = [
    pytest.mark.server,
    pytest.mark.xdist_group("browser"),  # the one dashboard server of the browser tests
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install -y chromium)",
    ),
]


def _origin(url: str) -> str:
    parts = urlsplit(url.removeprefix("blob:"))  # a blob: URL made by a page carries its origin
    return f"{parts.scheme}://{parts.netloc}"


def _a_profile(dashboard: Dashboard) -> str:
    with dashboard.engine.connect() as conn:
        return str(
            conn.execute(
                sa.select(profiles.c.id)
                .join(identities, identities.c.profile_id == profiles.c.id)
                .where(identities.c.type == "email", profiles.c.merged_into.is_(None))
                .limit(1)
            ).scalar_one()
        )


def test_docs_and_every_main_page_load_only_from_this_server(page: Any, dashboard: Dashboard) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    own = _origin(dashboard.url)

    page.goto(dashboard.url + "/docs")
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible(timeout=20_000)
    assert operations.count() > 20
    path = page.locator(".opblock-summary-path", has_text="/api/segments/{name}/reach")
    expect(path.first).to_be_visible()
    expect(page.get_by_text("Segment-compatible collection API").first).to_be_visible()
    docs_requests = list(requests)
    assert any(url.endswith("/swagger-ui-bundle.js") for url in docs_requests)
    assert any(url.endswith("/openapi.json") for url in docs_requests)

    sign_in(page, dashboard.url)
    paths = [
        "/",
        "/profiles",
        f"/profiles/{_a_profile(dashboard)}",
        "/segments",
        "/segments/new",
        "/reports",
        "/reports/view?kind=orders_by_segment",
        "/destinations",
        "/journeys",
        "/deliveries",
        "/forms",
        "/customer-login",
    ]
    for path in paths:
        response = page.goto(dashboard.url + path)
        assert response is not None and response.status == 200, path
        page.wait_for_load_state("networkidle")
    visited = {urlsplit(url).path for url in requests}
    assert {"/profiles", "/segments/new", "/deliveries"} <= visited
    outside = [url for url in requests if not url.startswith("data:") and _origin(url) != own]
    assert outside == []


def test_export_form_shows_the_reach_before_downloading(
    page: Any, dashboard: Dashboard, tmp_path: Path
) -> None:
    segment = store.save(dashboard.engine, "Reach check", {"trait": "country", "op": "exists"})
    define_purpose(dashboard.engine, "postal_mail", "Catalogues by post")  # nobody was asked yet
    email = reach.reach(dashboard.engine, segment.name, "email_marketing")
    anyone = reach.reach(dashboard.engine, segment.name, "email_marketing", "any")
    assert 0 < email.rows < email.members
    sign_in(page, dashboard.url)
    page.goto(f"{dashboard.url}/segments/{segment.id}#export")
    line = page.locator("#export-reach")
    expect(line).to_have_text("Choose a purpose to see how many rows the export will have.")

    page.locator("#export-purpose").select_option("email_marketing")
    expect(line).to_have_text(reach.summary(email, lambda n: f"{n:,}"))
    page.locator("#export-channel").select_option("any")
    expect(line).to_have_text(reach.summary(anyone, lambda n: f"{n:,}"))
    page.locator("#export-purpose").select_option("postal_mail")
    expect(line).to_contain_text(
        f"Nothing to export: 0 of {email.members:,} members consented to postal_mail."
    )
    expect(line).to_have_class("reach reach-empty")

    page.locator("#export-purpose").select_option("email_marketing")
    page.locator("#export-channel").select_option("email")
    expect(line).to_have_text(reach.summary(email, lambda n: f"{n:,}"))
    with page.expect_download() as download:
        page.locator("#export-csv").click()
    target = tmp_path / "reach.csv"
    download.value.save_as(target)
    with target.open(newline="") as handle:
        assert len(list(csv.DictReader(handle))) == email.rows
