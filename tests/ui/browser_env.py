"""A real `opencdp serve` with the demo shop and a signed-up marketer, and Debian's Chromium driven
by Playwright (no downloaded browser): shared by the browser tests and `tests/ui/screenshots.py`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from opencdp.config import Settings
from opencdp.store.database import create_engine, open_database
from tests.serverproc import Server
from tests.ui.demo_data import fill_shop

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EMAIL, PASSWORD = "mia@example.com", "a marketer's password"


@dataclass
class Dashboard:
    url: str
    env: dict[str, str]
    engine: sa.Engine


def prepare(data_dir: Path, customers: int = 150, injection: bool = True) -> dict[str, str]:
    """A migrated SQLite database with the demo shop and one marketer (created with the CLI)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{data_dir / 'opencdp.db'}"
    env = dict(os.environ)
    env.update(
        OPENCDP_DATA_DIR=str(data_dir),
        OPENCDP_DATABASE_URL=url,
        OPENCDP_LOG_LEVEL="WARNING",
        OPENCDP_KEY_CACHE_SECONDS="0",
    )
    engine = open_database(Settings(data_dir=data_dir, database_url=url))
    fill_shop(engine, customers=customers, injection=injection)
    engine.dispose()
    create_user(env, EMAIL, PASSWORD, "marketer")
    return env


def create_user(env: dict[str, str], email: str, password: str, role: str) -> None:
    """A dashboard user, made as an operator makes one (the CLI); one that exists already is fine."""
    created = subprocess.run(
        [sys.executable, "-m", "opencdp", "users", "create", "--email", email, "--role", role,
         "--password-stdin"],
        env=env, input=password + "\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if created.returncode != 0 and "exists" not in created.stderr:
        raise AssertionError(f"opencdp users create failed: {created.stderr}")


@contextmanager
def running_dashboard(data_dir: Path, customers: int = 150, injection: bool = True) -> Iterator[Dashboard]:
    env = prepare(data_dir, customers, injection)
    server = Server(env, data_dir / "server.log").start()
    engine = create_engine(Settings(data_dir=data_dir, database_url=env["OPENCDP_DATABASE_URL"]))
    try:
        yield Dashboard(server.url, env, engine)
    finally:
        engine.dispose()
        server.stop()


@contextmanager
def chromium() -> Iterator[Any]:
    """Playwright's Chromium API on the system's Chromium binary."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Any, url: str, email: str = EMAIL, password: str = PASSWORD) -> None:
    page.goto(url + "/login")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(url + "/")


@contextmanager
def watched_page(browser: Any, confirms: list[str] | None = None) -> Iterator[Any]:
    """A page in a fresh browser context; a script error, CSP violation or dialog fails the test.
    With `confirms`, dialogs are the page's own confirmations: accepted, their questions kept there."""
    context = browser.new_context(viewport={"width": 1366, "height": 860}, accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    def on_dialog(dialog: Any) -> None:  # an injected alert() would end up here
        if confirms is not None:
            confirms.append(dialog.message)
            dialog.accept()
            return
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", on_console)
    page.on("dialog", on_dialog)
    try:
        yield page
    finally:
        context.close()
    assert problems == [], problems
