"""The preference centre in headless Chromium, against the shared `opencdp serve` of the demo shop:
a link made with the CLI opens the page; the customer changes consent, interests and channel,
answers a survey, downloads their data; everything lands on the profile from
the source `zero-party`. Any script error or CSP violation fails the test (`watched_page`)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from opencdp.profiles.reader import get_profile
from opencdp.store.schema import identities
from tests.ui.browser_env import Dashboard

pytestmark = pytest.mark.xdist_group("browser")  # the one dashboard server of the browser tests

SURVEY = {
    "name": "browser-quiz",
    "title": "Your style, quickly",
    "questions": [
        {
            "key": "colour",
            "text": "Which colour?",
            "kind": "single",
            "options": ["black", "blue"],
            "required": True,
        },
        {"key": "budget", "text": "Budget", "kind": "scale", "min": 1, "max": 3},
    ],
}


def _cli(dashboard: Dashboard, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "opencdp", *args],
        env=dashboard.env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _customer(dashboard: Dashboard) -> tuple[str, str]:
    """A demo customer with an e-mail that no other browser test uses: (e-mail, profile id)."""
    with dashboard.engine.connect() as conn:
        row = conn.execute(
            sa.select(identities.c.value, identities.c.profile_id)
            .where(identities.c.type == "email")
            .order_by(identities.c.value.desc())
            .limit(1)
        ).one()
    return row.value, row.profile_id


def _wait(check: Any, seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while not (value := check()):
        assert time.monotonic() < deadline, "not applied in time"
        time.sleep(0.1)
    return value


def test_a_customer_uses_the_preference_centre_in_a_browser(
    page: Any, dashboard: Dashboard, tmp_path: Path
) -> None:
    email, pid = _customer(dashboard)
    _cli(dashboard, "surveys", "save", "--file", "-", stdin=json.dumps(SURVEY))
    url = _cli(dashboard, "preferences", "link", f"email:{email}", "--base-url", dashboard.url).strip()

    page.goto(url)
    assert page.title() == "Your preferences"
    sms = page.get_by_role("checkbox", name=re.compile(r"^Sms"))
    offers = page.get_by_role("checkbox", name="Offers", exact=True)
    sms.check()
    offers.check()
    page.get_by_role("radio", name="SMS", exact=True).check()
    page.get_by_role("button", name="Save my preferences").click()
    page.locator("#saved").wait_for()
    assert page.get_by_role("checkbox", name=re.compile(r"^Sms")).is_checked()
    assert page.get_by_role("checkbox", name="Offers", exact=True).is_checked()
    assert page.get_by_role("radio", name="SMS", exact=True).is_checked()

    page.get_by_role("link", name="Your style, quickly").click()
    page.get_by_role("radio", name="blue", exact=True).check()
    page.get_by_role("radio", name="2", exact=True).check()
    page.get_by_role("button", name="Send my answers").click()
    page.get_by_text("Your answers are saved.").wait_for()

    page.get_by_role("link", name="Back to your preferences").click()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download everything we hold about you").click()
    saved = tmp_path / "my-data.json"
    download.value.save_as(saved)
    exported = json.loads(saved.read_text())
    assert exported["profile"]["id"] == pid

    traits = _wait(lambda: (t := get_profile(dashboard.engine, pid)["traits"]).get("budget") and t)
    assert traits["colour"]["value"] == "blue" and traits["budget"]["value"] == 2
    assert traits["preferred_channel"]["value"] == "sms" and "offers" in traits["interests"]["value"]
    assert {traits[k]["source"] for k in ("colour", "budget", "preferred_channel", "interests")} == {
        "zero-party"
    }
